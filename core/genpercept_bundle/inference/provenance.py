"""What a map was made with, written next to every saved map: model files and their digests, settings, versions."""

import hashlib
import platform
from pathlib import Path

from ..models.folders import WEIGHTS_NAME


def weights_sha256(folder: Path) -> str:
    """sha256 of a model folder's weights file(s), the checkpoint identity in provenance."""
    digest = hashlib.sha256()
    files = [folder / WEIGHTS_NAME] if (folder / WEIGHTS_NAME).is_file() else sorted(folder.glob("*.safetensors"))
    for file in files:
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def versions() -> dict:
    import diffusers
    import torch

    from .. import __version__

    return {"genpercept_bundle": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version()}
