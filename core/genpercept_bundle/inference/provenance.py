"""What a map was made with, written next to every saved map: model files and their digests, settings, versions."""

import hashlib
import json
import platform
from pathlib import Path

from ..atomic_files import write_json
from ..errors import GenPerceptError
from ..models.folders import WEIGHTS_NAME


def digest_cache_file() -> Path:
    return Path.home() / ".cache" / "genpercept_bundle" / "weights_sha256.json"


def weights_sha256(folder: Path) -> str:
    """sha256 of a model folder's weights file(s), the checkpoint identity in provenance.

    Hashing a released UNet (3.46 GB) takes seconds, so digests are kept in the user cache, keyed by the files'
    paths, sizes and modification times: a repeat run with unchanged files hashes nothing.
    """
    files = [folder / WEIGHTS_NAME] if (folder / WEIGHTS_NAME).is_file() else sorted(folder.glob("*.safetensors"))
    key = json.dumps([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    cache = _read_cache()
    if key not in cache:
        digest = hashlib.sha256()
        for file in files:
            with open(file, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 24), b""):
                    digest.update(block)
        cache[key] = digest.hexdigest()
        try:
            write_json(digest_cache_file(), cache)
        except GenPerceptError:
            pass  # a read-only home: hash again next time
    return cache[key]


def _read_cache() -> dict:
    try:
        cache = json.loads(digest_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def versions() -> dict:
    import diffusers
    import torch

    from .. import __version__

    return {"genpercept_bundle": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version()}
