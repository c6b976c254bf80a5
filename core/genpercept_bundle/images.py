"""Reading photos into the uint8 RGB arrays the predictor takes.

What every input becomes (documented in the README):
- EXIF orientation is applied, so the maps line up with the photo as viewers show it;
- grey and palette images become RGB; an alpha channel is dropped (the RGB is used as is);
- CMYK is converted to RGB by Pillow;
- 16-bit images are scaled to 8 bit (the models were trained on 8-bit RGB).
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import GenPerceptError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".pnm", ".gif"}
MAX_PIXELS = 16384 * 16384


def load_image(path) -> np.ndarray:
    """Read ``path`` as an RGB uint8 array [H,W,3]; GenPerceptError if it is not a readable image."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise GenPerceptError(f"{path} is {image.width}x{image.height}, larger than this tool handles; downscale it first")
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb8(image, path)
    except GenPerceptError:
        raise
    except FileNotFoundError as exc:
        raise GenPerceptError(f"{path} does not exist") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise GenPerceptError(f"cannot read {path} as an image ({exc}); is it a corrupt or truncated file?") from exc


def to_rgb8(image: Image.Image, name="image") -> np.ndarray:
    """Any Pillow image as RGB uint8 [H,W,3] (see the module doc for what is converted how)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(image, dtype=np.float64)
        scale = 257.0 if image.mode.startswith("I;16") or grey.max() > 255 else 1.0
        grey = np.clip(np.round(grey / scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "La", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    raise GenPerceptError(f"{name} has pixel mode {image.mode!r}, which is not supported; save it as 8-bit RGB")


def list_inputs(patterns, suffixes=IMAGE_SUFFIXES, kind="images") -> list[Path]:
    """Expand files, folders (their files with ``suffixes``, sorted) and glob patterns; GenPerceptError if nothing
    is found. ``kind`` names the files in messages."""
    import glob

    found = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(str(pattern)):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            matches = [p for p in matches if p.is_file() and p.suffix.lower() in suffixes]
            if not matches:
                raise GenPerceptError(f"no {kind} match {pattern!r}")
            found += matches
        else:
            raise GenPerceptError(f"input {pattern!r} does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise GenPerceptError(f"no input {kind} found (folders are searched for " + ", ".join(sorted(suffixes)) + ")")
    return unique
