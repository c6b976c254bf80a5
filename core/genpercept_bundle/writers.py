"""Writing maps to disk: 16-bit PNG, OpenEXR, .npy, previews and provenance.

Every file is written to a temporary name in the target folder and renamed
into place, so an interrupted or failed run never leaves a half-written file.
"""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read when OpenCV first touches EXR
import cv2  # noqa: E402
from PIL import Image  # noqa: E402
from PIL.PngImagePlugin import PngInfo  # noqa: E402

from .errors import GenPerceptError  # noqa: E402

FORMATS = ("png16", "exr", "npy")
SUFFIXES = {"png16": ".png", "exr": ".exr", "npy": ".npy"}


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to ``path`` (same suffix); move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    try:
        yield Path(temp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp creates 0600; finished files get the usual permissions
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def write_map(path: Path, values: np.ndarray, format: str) -> Path:
    """Write a float map ([H,W] or [H,W,3], RGB order). png16 expects values in [0,1]."""
    if format not in FORMATS:
        raise GenPerceptError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    values = np.ascontiguousarray(values, dtype=np.float32)
    with atomic_path(path) as temp:
        if format == "npy":
            np.save(temp, values, allow_pickle=False)
            return path
        if format == "png16":
            data = np.round(np.clip(values, 0.0, 1.0) * 65535.0).astype(np.uint16)
        else:
            data = values
        if data.ndim == 3:
            data = data[..., ::-1]  # OpenCV stores BGR
        if not cv2.imwrite(str(temp), np.ascontiguousarray(data)):
            raise GenPerceptError(f"OpenCV could not write {path}")
    return path


def write_png8(path: Path, rgb: np.ndarray, metadata: dict | None = None) -> Path:
    """uint8 [H,W] or [H,W,3] PNG with ``metadata`` as a JSON text chunk ("genpercept")."""
    info = PngInfo()
    if metadata:
        info.add_text("genpercept", json.dumps(metadata))
    with atomic_path(path) as temp:
        Image.fromarray(rgb).save(temp, format="PNG", pnginfo=info)
    return path


def write_json(path: Path, payload: dict) -> Path:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(payload, indent=2))
    return path


def read_map(path: Path) -> np.ndarray:
    """Read a map written by ``write_map`` (or by our ComfyUI nodes) back as float32, RGB order."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise GenPerceptError(f"cannot read {path} as a map (16-bit PNG, EXR or .npy)")
    if data.ndim == 3:
        data = data[..., 2::-1]
    if data.dtype == np.uint16:
        return data.astype(np.float32) / 65535.0
    if data.dtype == np.uint8:
        return data.astype(np.float32) / 255.0
    return data.astype(np.float32)
