"""Reading photos into the uint8 RGB arrays the predictor takes.

What every input becomes (documented in the README):
- EXIF orientation is applied, so the maps line up with the photo as viewers show it;
- grey and palette images become RGB; an alpha channel is dropped (the RGB is used as is);
- CMYK is converted to RGB by Pillow;
- 16-bit images are scaled to 8 bit (the models were trained on 8-bit RGB).
"""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import GenPerceptError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".pnm", ".gif"}
# The largest photo read (its maps are float32 at full size): 100 MP, about 10000x10000. Raise it with
# --max-pixels or GENPERCEPT_MAX_PIXELS; Pillow's own decompression-bomb limit follows it.
MAX_PIXELS = 100_000_000


def max_pixels(requested: int | None = None) -> int:
    """The pixel cap in force: ``requested``, else $GENPERCEPT_MAX_PIXELS, else MAX_PIXELS."""
    import os

    value = requested or os.environ.get("GENPERCEPT_MAX_PIXELS") or MAX_PIXELS
    try:
        value = int(value)
    except ValueError:
        value = 0
    if value < 1:
        raise GenPerceptError(f"the pixel cap must be a positive number of pixels, got {requested or value!r}")
    return value


def check_pixel_count(width: int, height: int, name, cap: int):
    if width * height > cap:
        raise GenPerceptError(f"{name} is {width}x{height}, {width * height:,} pixels, more than the {cap:,} this run "
                              f"reads; downscale it, or raise the cap with --max-pixels {width * height} (memory grows "
                              "with the pixel count)")


def load_image(path, pixel_cap: int | None = None) -> np.ndarray:
    """Read ``path`` as an RGB uint8 array [H,W,3]; GenPerceptError if it is not a readable image or has more
    pixels than ``pixel_cap`` (default: ``max_pixels()``)."""
    path = Path(path)
    cap = max_pixels(pixel_cap)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check below says it better
            image = _open_with_pixel_limit(path, cap)
        with image:
            check_pixel_count(image.width, image.height, path, cap)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy of a large photo that needs no turning
            return to_rgb8(image, path)
    except GenPerceptError:
        raise
    except FileNotFoundError as exc:
        raise GenPerceptError(f"{path} does not exist") from exc
    except Image.DecompressionBombError as exc:
        raise GenPerceptError(f"{path} has more than twice the {cap:,} pixels this run reads ({exc}); downscale it "
                              "or raise the cap with --max-pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise GenPerceptError(f"cannot read {path} as an image ({exc}); is it a corrupt or truncated file?") from exc


def _open_with_pixel_limit(path: Path, cap: int) -> Image.Image:
    """Image.open with Pillow's decompression-bomb limit at ``cap`` (it refuses twice that while reading the
    header); Pillow's global setting is restored for the host application (ComfyUI, Blender)."""
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, cap
    try:
        return Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = previous


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
        return np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
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
