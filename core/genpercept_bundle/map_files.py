"""The map-file contract: names, encodings, sidecar JSON and previews of saved maps, and finding them again.

One photo's maps sit side by side, named from the photo's stem (the CLI) or from a prefix and frame
number (ComfyUI: ``<prefix>_<frame:05d>``)::

    <stem>_<task>.png|exr|npy     the map (FORMATS)
    <stem>_<task>.json            sidecar: source, provenance, what the file's values mean, the files written
    <stem>_depth_preview.png      8-bit previews (turbo-coloured depth, colour-encoded normals, grey maps)
    <stem>_depth_controlnet.png   depth as near = bright, what ControlNet depth models take
    <stem>_<task>_uncertainty.*   with an ensemble (Marigold...): how much its members disagreed, >= 0

Encodings: ``npy`` and ``exr`` store float32 in the documented convention (see conventions.py);
``png16`` stores round(value x 65535), normals colour-encoded as (n + 1) / 2 (green flipped for
DirectX). ``--raw`` files store the network's [0, 1] output as it is.

Numpy only at import: OpenCV and Pillow are imported when a PNG or EXR is written or read, and a
host without them (Blender) passes its own pixel reader to ``read_map``.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .atomic_files import atomic_path, write_json
from .conventions import (BLOCK_PIXELS, NORMAL_CONVENTIONS, colorize_depth, near_bright, normals_from_raw, normals_to_rgb,
                          unit_normals)
from .errors import GenPerceptError, OutputError
from .tasks import DEFAULT_TASKS, get_task

FORMATS = ("png16", "exr", "npy")
SUFFIXES = {"png16": ".png", "exr": ".exr", "npy": ".npy"}
FIND_ORDER = (".exr", ".npy", ".png")  # which file wins when one photo has maps in several formats
# zlib level of the 8-bit previews: PIL's default 6 took 2.6 of the 6.8 s of writing a 4096 x 3072 photo's maps, 1 takes
# 1.5 s for files 1.7x larger. (The 16-bit maps keep OpenCV's default, run-length coding: faster than any zlib level.)
PREVIEW_PNG_COMPRESSION = 1


def _cv2():
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read when OpenCV first touches EXR
    import cv2

    return cv2


def map_path(folder: Path, stem: str, task: str, format: str) -> Path:
    if format not in FORMATS:
        raise GenPerceptError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    return Path(folder) / f"{stem}_{get_task(task).name}{SUFFIXES[format]}"


def uncertainty_path(folder: Path, stem: str, task: str, format: str) -> Path:
    return Path(folder) / f"{stem}_{get_task(task).name}_uncertainty{SUFFIXES[format]}"


def file_values(task: str, format: str, convention: str = "opengl", raw: bool = False) -> str:
    """What the numbers in a map file mean, as the sidecar says it."""
    task = get_task(task)
    if raw:
        return "raw network output in [0,1]"
    if task.unit_vectors:
        if format == "png16":
            up = "down (DirectX)" if convention == "directx" else "up (OpenGL)"
            return f"(n + 1) / 2 per channel, R = +X right, G = +Y {up}, B = +Z toward viewer"
        return "unit normals [H,W,3], camera space: +X right, +Y up, +Z toward the viewer"
    return task.meaning


def file_encoding(task: str, format: str, convention: str = "opengl"):
    """The per-pixel conversion from maps in the documented convention to what a ``format`` file stores: normals
    are colour-encoded in PNG; None where values are stored as they are."""
    if convention not in NORMAL_CONVENTIONS:
        raise GenPerceptError(f"normal convention must be one of {', '.join(NORMAL_CONVENTIONS)}, got {convention!r}")
    if get_task(task).unit_vectors and format == "png16":
        return lambda normals: normals_to_rgb(normals, convention)
    return None


def save_maps(folder: Path, stem: str, task: str, maps: np.ndarray, format: str, metadata: dict,
              convention: str = "opengl", raw: np.ndarray | None = None, previews: bool = True,
              uncertainty: np.ndarray | None = None) -> list[Path]:
    """Write one image's map of ``task`` in the documented convention (or ``raw``, the network's output, instead),
    its ``uncertainty`` map when there is one, its previews (always of ``maps``) and its sidecar; ``metadata``
    (source, provenance...) goes into the sidecar and the previews. Returns the files written, the sidecar last."""
    task = get_task(task).name
    path = map_path(folder, stem, task, format)
    meta = {**metadata, "file_values": file_values(task, format, convention, raw is not None)}
    if uncertainty is not None:
        meta["uncertainty_values"] = ("spread of the ensemble's members: median absolute deviation in map units "
                                      "(depth, disparity) or mean angle to the merged normal / pi (normals); 0 = agree")
    # the map in a second thread while the previews are drawn here: both codecs release the GIL. If either fails
    # (a full disk), what the other wrote goes too: no map is left half-saved.
    shown = []
    with ThreadPoolExecutor(1) as writer:
        map_file = writer.submit(write_map, path, maps if raw is None else raw, format,
                                 file_encoding(task, format, convention) if raw is None else None)
        try:
            shown = write_previews(folder, stem, task, maps, convention, meta) if previews else []
            written = [map_file.result()]
        except BaseException:
            if map_file.exception() is None:  # waits for the map; it was written
                shown.append(map_file.result())
            for leftover in shown:
                Path(leftover).unlink(missing_ok=True)
            raise
    if uncertainty is not None:
        written.append(write_map(uncertainty_path(folder, stem, task, format),
                                 np.clip(uncertainty, 0.0, 1.0) if format == "png16" else uncertainty, format))
    written += shown
    meta["files"] = [p.name for p in written]
    written.append(write_json(Path(folder) / f"{stem}_{task}.json", meta))
    return written


def save_prediction(folder: Path, stem: str, source: str, prediction, format: str, convention: str = "opengl",
                    raw: bool = False, previews: bool = True, index: int = 0) -> list[Path]:
    """``save_maps`` for item ``index`` of a predictor's ``Prediction`` of the photo ``source``: what ``genpercept
    predict`` and ``genpercept batch`` write for every image."""
    uncertainty = None if prediction.uncertainty is None else prediction.uncertainty[index]
    return save_maps(folder, stem, prediction.task, prediction.maps[index], format,
                     {"source": str(source), **prediction.provenance}, convention,
                     raw=prediction.raw[index] if raw else None, previews=previews, uncertainty=uncertainty)


def maps_complete(folder: Path, stem: str, tasks) -> bool:
    """Whether every task's maps of ``stem`` are saved: its sidecar (written last) and every file it lists exist."""
    for task in tasks:
        sidecar = Path(folder) / f"{stem}_{get_task(task).name}.json"
        try:
            files = json.loads(sidecar.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not all((Path(folder) / name).is_file() for name in files):
            return False
    return True


def check_unique_stems(named):
    """GenPerceptError if two of ``named`` ((stem, what it is) pairs) would write the same output names."""
    seen = {}
    for stem, what in named:
        if stem in seen:
            raise GenPerceptError(f"{seen[stem]} and {what} would write the same output names ({stem}_*); rename one "
                                  "or write them into separate output folders")
        seen[stem] = what


def write_previews(folder: Path, stem: str, task: str, maps: np.ndarray, convention: str = "opengl",
                   metadata: dict | None = None) -> list[Path]:
    """8-bit preview PNGs of a map in the documented convention (see the module doc for their names)."""
    folder, task = Path(folder), get_task(task)
    if task.preview == "depth":
        return [write_png8(folder / f"{stem}_depth_preview.png", colorize_depth(maps), metadata),
                write_png8(folder / f"{stem}_depth_controlnet.png", to_uint8(near_bright(maps)), metadata)]
    if task.preview == "normal":
        colours = by_blocks(maps, lambda v: _levels8(normals_to_rgb(v, convention)), np.uint8)
        return [write_png8(folder / f"{stem}_{task.name}_preview.png", colours, metadata)]
    return [write_png8(folder / f"{stem}_{task.name}_preview.png", to_uint8(maps), metadata)]


def by_blocks(values: np.ndarray, convert, dtype) -> np.ndarray:
    """``convert`` (pixel by pixel) of a map [H,W] or [H,W,C], a block of rows at a time, into a new array of
    ``dtype``: the same values as converting it whole, without full-size temporaries for a large map."""
    out = np.empty(values.shape, dtype)
    rows = max(1, BLOCK_PIXELS // max(1, values.shape[1] if values.ndim > 1 else 1))
    for start in range(0, values.shape[0], rows):
        out[start:start + rows] = convert(values[start:start + rows])
    return out


def _levels8(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 255.0)


def _levels16(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 65535.0)


def to_uint8(values: np.ndarray) -> np.ndarray:
    return by_blocks(values, _levels8, np.uint8)


def to_uint16(values: np.ndarray) -> np.ndarray:
    return by_blocks(values, _levels16, np.uint16)


def write_map(path: Path, values: np.ndarray, format: str, encode=None) -> Path:
    """Write a float map ([H,W] or [H,W,3], RGB order). png16 expects values in [0,1]. ``encode``: a per-pixel
    conversion to apply first (``file_encoding``), done block by block with the quantisation."""
    if format not in FORMATS:
        raise GenPerceptError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")

    def as_stored(block):
        block = block.astype(np.float32, copy=False)
        return encode(block) if encode else block

    if format == "png16":  # quantised, and in OpenCV's BGR order, block by block
        pixels = by_blocks(values, lambda v: _bgr(_levels16(as_stored(v))), np.uint16)
        return write_image(path, pixels, bgr=True)
    values = by_blocks(values, as_stored, np.float32) if encode else np.ascontiguousarray(values, dtype=np.float32)
    if format == "exr":
        return write_image(path, values)
    with atomic_path(path) as temp:
        np.save(temp, values, allow_pickle=False)
    return path


def _bgr(block: np.ndarray) -> np.ndarray:
    return block[..., ::-1] if block.ndim == 3 else block


def write_image(path: Path, data: np.ndarray, bgr: bool = False) -> Path:
    """An image file of uint8 / uint16 / float32 pixels, [H,W] or [H,W,3] in RGB order (``bgr``: already in
    OpenCV's BGR order); the suffix picks the codec."""
    cv2 = _cv2()
    if not bgr:
        data = _bgr(data)
    with atomic_path(path) as temp:
        if not cv2.imwrite(str(temp), np.ascontiguousarray(data)):
            raise OutputError(f"OpenCV could not write {path}; is the folder writable and the suffix an image format?")
    return path


def write_png8(path: Path, rgb: np.ndarray, metadata: dict | None = None) -> Path:
    """uint8 [H,W] or [H,W,3] PNG with ``metadata`` as a JSON text chunk ("genpercept")."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if metadata:
        info.add_text("genpercept", json.dumps(metadata))
    with atomic_path(path) as temp:
        Image.fromarray(rgb).save(temp, format="PNG", pnginfo=info, compress_level=PREVIEW_PNG_COMPRESSION)
    return path


def read_pixels(path: Path) -> np.ndarray:
    """An image file's pixels as float32 in RGB(A) order: 8/16-bit integers scaled to [0, 1], floats as stored."""
    data = _cv2().imread(str(path), _cv2().IMREAD_UNCHANGED)
    if data is None:
        raise GenPerceptError(f"cannot read {path} as a map (16-bit PNG, EXR or .npy)")
    if data.ndim == 3:
        data = data[..., 2::-1]
    if data.dtype == np.uint16:
        return data.astype(np.float32) / 65535.0
    if data.dtype == np.uint8:
        return data.astype(np.float32) / 255.0
    return data.astype(np.float32)


def read_map(path: Path, task: str | None = None, pixels=read_pixels) -> np.ndarray:
    """A map file back as float32, [H,W] or [H,W,3] RGB order.

    With ``task`` the values come back in its documented convention: one channel for scalar maps, unit normals
    (colour-decoded from image formats, the green flip of a DirectX sidecar undone), checked to be finite.
    ``pixels(path)``: how image files are read (Blender passes its own image loader).
    """
    path = Path(path)
    if not path.is_file():
        raise GenPerceptError(f"map file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False).astype(np.float32)
        except ValueError as exc:
            raise GenPerceptError(f"{path} is not a plain .npy array ({exc})") from exc
    else:
        data = pixels(path)
    if task is None:
        return data
    task = get_task(task)
    if task.channels == 1 and data.ndim == 3:
        data = data[..., 0]
    elif task.channels == 3:
        if data.ndim != 3 or data.shape[-1] < 3:
            raise GenPerceptError(f"{path.name} should be a 3-channel {task.name} map, got shape {data.shape}")
        data = data[..., :3]
    if not np.isfinite(data).all():
        raise GenPerceptError(f"{path.name} contains NaN or infinite values")
    if task.unit_vectors:
        return _normals_from_file(path, data)
    return data


def _normals_from_file(path: Path, data: np.ndarray) -> np.ndarray:
    if path.suffix.lower() in (".exr", ".npy"):  # unit vectors as stored
        return unit_normals(data)
    if _sidecar_convention(path) == "directx":
        data = data.copy()
        data[..., 1] = 1.0 - data[..., 1]
    return normals_from_raw(data)


def _sidecar_convention(path: Path) -> str:
    sidecar = path.with_suffix(".json")
    try:
        return "directx" if "down (DirectX)" in json.loads(sidecar.read_text()).get("file_values", "") else "opengl"
    except (OSError, ValueError, AttributeError):
        return "opengl"


def find_maps(photo: Path, tasks=DEFAULT_TASKS) -> dict[str, Path]:
    """The maps saved for ``photo`` beside it (<stem>_<task>.exr, .npy, then .png), by task."""
    photo = Path(photo)
    found = {}
    for task in tasks:
        name = get_task(task).name
        match = next((p for suffix in FIND_ORDER if (p := photo.with_name(f"{photo.stem}_{name}{suffix}")).is_file()),
                     None)
        if match:
            found[name] = match
    return found
