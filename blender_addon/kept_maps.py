"""Kept maps: a photo's predicted maps, saved at full resolution and reused until the photo or the model changes.

Each (photo, model) pair has a folder named from the photo's stem and a digest of what identifies both (the
photo's path, size and modification time; the model folder's weight files, their sizes and times, or "embedded").
It holds the map-file contract's files (``<stem>_<task>.exr`` or ``.npy`` + sidecar) and sits beside the
.blend (``<blend>_genpercept_maps/``), or in the add-on's user folder while the file is unsaved. Maps read
once stay in memory for this session, so a rebuild (Adjust Last Operation, a new resolution) reads nothing.

A frame sequence's folder (named from the sequence and a digest of its files and the model) holds its steady depth
maps in ``depth/``, one per frame (``frame_000001_depth.exr``, ...). The folder is written as ``depth.partial/`` and
renamed when every frame is in, so a sequence's maps are all there or not at all; they are read from disk on
every build (a movie's maps would not fit in memory).
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from genpercept_bundle.map_files import map_path, maps_complete, save_maps

from . import maps

_IN_MEMORY: dict[tuple, object] = {}  # (folder, task) -> map; cleared when a file is loaded
PHOTOS_IN_MEMORY = 2  # the maps of this many photos stay in memory (a 12 MP photo's are ~200 MB)


def clear_memory():
    _IN_MEMORY.clear()


def store_root() -> Path:
    """Beside the saved .blend, else the add-on's user folder."""
    import bpy

    if bpy.data.filepath:
        blend = Path(bpy.data.filepath)
        return blend.with_name(f"{blend.stem}_genpercept_maps")
    try:
        return Path(bpy.utils.extension_path_user(__package__, path="maps", create=True))
    except (ValueError, AttributeError):  # not installed as an extension (run from a source folder)
        return Path(bpy.app.tempdir) / "genpercept_maps"


def model_identity(model: str, base: str = "") -> list:
    """What identifies a model's weights: its folders' weight files with their sizes and times."""
    identity = []
    for folder in (model, base):
        if not folder:
            identity.append("embedded" if folder is model else "")
            continue
        files = sorted(Path(folder).rglob("*.safetensors"))
        identity.append([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files] or str(folder))
    return identity


def folder_for(photo: str, model: str = "", base: str = "", root: Path | None = None) -> Path:
    """The kept-maps folder of ``photo`` predicted by ``model``."""
    photo_path = Path(photo).resolve()
    stat = photo_path.stat()
    return _named_folder(photo_path.stem, [str(photo_path), stat.st_size, stat.st_mtime_ns], model, base, root)


def _named_folder(stem: str, source_identity: list, model: str, base: str, root: Path | None) -> Path:
    key = json.dumps([*source_identity, model_identity(model, base)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return (root or store_root()) / f"{stem}_{digest}"


# ---------------------------------------------------------------- frame sequences


def sequence_folder_for(sequence, steadiness: float, model: str = "", base: str = "", root: Path | None = None) -> Path:
    """The kept-maps folder of a ``genpercept_bundle.frame_sequences.FrameSequence`` predicted by ``model`` and made
    steady with ``steadiness``."""
    identity = [*sequence.identity(), ["steadiness", round(steadiness, 3)]]
    return _named_folder(sequence.name or "frames", identity, model, base, root)


def sequence_depth_folder(folder: Path) -> Path:
    return folder / "depth"


def sequence_staging_folder(folder: Path) -> Path:
    """Where a sequence's maps are written until every frame is in."""
    return folder / "depth.partial"


def frame_stem(index: int) -> str:
    """The stem of frame ``index``'s files (counted from 0; named from 1, as Blender numbers frames)."""
    return f"frame_{index + 1:06d}"


def kept_sequence(folder: Path, count: int) -> list[Path] | None:
    """The kept depth files of a sequence's ``count`` frames in order, or None unless all of them are kept."""
    depth_folder = sequence_depth_folder(folder)
    if not depth_folder.is_dir():
        return None
    files = [file_of(depth_folder, frame_stem(index), "depth") for index in range(count)]
    return None if None in files else files


def kept(folder: Path, photo: str, tasks) -> dict:
    """The maps of ``tasks`` kept in ``folder`` (from memory, else read from their files); tasks not kept are
    missing from the result."""
    stem, found = Path(photo).stem, {}
    for task in tasks:
        if (folder, task) in _IN_MEMORY:
            found[task] = _IN_MEMORY[(folder, task)]
        elif maps_complete(folder, stem, [task]):
            path = next(p for p in (map_path(folder, stem, task, f) for f in ("exr", "npy")) if p.is_file())
            found[task] = maps.load_map(str(path), task)
            _remember(folder, task, found[task])
    return found


def _remember(folder: Path, task: str, values):
    _IN_MEMORY.pop((folder, task), None)  # to the end: the most recent
    _IN_MEMORY[(folder, task)] = values
    recent = list(dict.fromkeys(key[0] for key in reversed(_IN_MEMORY)))[:PHOTOS_IN_MEMORY]
    for key in [key for key in _IN_MEMORY if key[0] not in recent]:
        del _IN_MEMORY[key]


def file_of(folder: Path, photo: str, task: str) -> Path | None:
    """The kept file of a task, or None."""
    stem = Path(photo).stem
    return next((p for p in (map_path(folder, stem, task, f) for f in ("exr", "npy")) if p.is_file()), None)


def keep(folder: Path, photo: str, predicted: dict, provenance: dict | None = None):
    """Save predicted maps into ``folder`` (EXR where OpenCV can write it, else .npy) and remember them. Runs on the
    prediction's thread: nothing here touches Blender's data."""
    folder.mkdir(parents=True, exist_ok=True)
    form = kept_format()
    stem = Path(photo).stem
    for task, values in predicted.items():
        meta = {"source": str(photo), **(provenance or {}).get(task, {})}
        save_maps(folder, stem, task, np.asarray(values, np.float32), form, meta, previews=False)
        _remember(folder, task, values)


def kept_format() -> str:
    """EXR where OpenCV can write it, else .npy."""
    return "exr" if _can_write_exr() else "npy"


def _can_write_exr() -> bool:
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True
