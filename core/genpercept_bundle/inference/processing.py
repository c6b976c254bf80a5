"""Pre- and post-processing exactly as each family's reference does it.

GenPercept v2's ``run.py`` (style "genpercept"):
- resize: longest side to ``processing_res`` with floor rounding, bilinear with
  antialiasing applied to the *uint8* tensor (what torchvision's ``resize`` does
  on a uint8 tensor), no padding; ``processing_res = 0`` keeps the native size;
- normalise: rgb / 255 * 2 - 1;
- finish: channel mean for scalar tasks, clip to [-1, 1], (x + 1) / 2, bilinear
  antialiased resize back to the input size, clip to [0, 1].

E2E-FT's Marigold copy does the same. diffusers' Marigold pipelines (style "marigold"): normalise first, resize the
float image (antialiased bilinear, longest side = h * res // max(h, w)), pad right/bottom to a multiple of 8 by
replication; afterwards crop the padding and resize back with plain bilinear interpolation. Lotus (style "lotus"):
normalise first, resize the float image as GenPercept does, no padding; back with nearest-exact.

Flip averaging (ours, not the reference's): the photo and its mirror image are
both predicted and the mirror's map, mirrored back, is averaged in.
"""

import torch
import torch.nn.functional as F

from ..choices import MAX_PROCESSING_RESOLUTION, NATIVE
from ..conventions import BLOCK_PIXELS, mirror_maps
from ..errors import GenPerceptError
from ..tasks import get_task

MAX_PROCESSING_PIXELS = MAX_PROCESSING_RESOLUTION**2


def processing_size(height: int, width: int, processing_res: int) -> tuple[int, int]:
    """(h, w) after resizing the longest side to ``processing_res`` (floor rounding, small images upscaled)."""
    if processing_res < NATIVE:
        raise GenPerceptError(f"processing resolution must be 0 (native) or positive, got {processing_res}")
    if processing_res == NATIVE:
        return height, width
    factor = min(processing_res / width, processing_res / height)
    new_h, new_w = int(height * factor), int(width * factor)
    if min(new_h, new_w) < 8:
        raise GenPerceptError(
            f"a {width}x{height} image at processing resolution {processing_res} becomes {new_w}x{new_h}, "
            "too thin for the model (minimum 8 px per side); crop it or raise the resolution"
        )
    return new_h, new_w


def check_processing_size(height: int, width: int, processing_res: int):
    """GenPerceptError if the model would have to process more than MAX_PROCESSING_PIXELS."""
    processed = processing_size(height, width, processing_res)
    if processed[0] * processed[1] > MAX_PROCESSING_PIXELS:
        raise GenPerceptError(
            f"processing {width}x{height} at {'native size' if processing_res == NATIVE else processing_res} means "
            f"{processed[1]}x{processed[0]} pixels through the model, more than the {MAX_PROCESSING_PIXELS // 1_000_000} MP "
            "this tool allows; use a processing resolution of 4096 or less"
        )


def resize_rgb(rgb: torch.Tensor, processing_res: int) -> torch.Tensor:
    """uint8 (or float) [B,3,H,W] -> the same type [B,3,h,w] (see module doc)."""
    h, w = processing_size(*rgb.shape[-2:], processing_res)
    if (h, w) == tuple(rgb.shape[-2:]):
        return rgb
    return F.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def normalise_rgb(rgb: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [B,3,h,w] -> [-1, 1] in ``dtype``."""
    return (rgb.float() / 255.0 * 2.0 - 1.0).to(dtype)


def prepare_image(rgb: torch.Tensor, processing_res: int, style: str, dtype: torch.dtype):
    """uint8 [B,3,H,W] -> (the model's input [B,3,h,w] in [-1, 1] in ``dtype``, (bottom, right) padding)."""
    if style == "genpercept":
        return normalise_rgb(resize_rgb(rgb, processing_res), dtype), (0, 0)
    if style == "lotus":
        return resize_rgb(rgb.float() / 127.5 - 1.0, processing_res).to(dtype), (0, 0)
    from diffusers.pipelines.marigold.marigold_image_processing import MarigoldImageProcessor as Marigold

    image = rgb.float() / 255.0 * 2.0 - 1.0
    if processing_res != NATIVE:
        image = Marigold.resize_to_max_edge(image, processing_res, "bilinear")
    image, padding = Marigold.pad_image(image, 8)
    return image.to(dtype), padding


def finish_prediction(prediction: torch.Tensor, size: tuple[int, int], padding=(0, 0), style="genpercept", low=0.0):
    """A map [B,C,h,w] in [``low``, 1] at the processing size -> float32 [B,C,H,W] in [``low``, 1] at the input
    ``size``."""
    prediction = prediction.float()
    bottom, right = padding
    prediction = prediction[..., :prediction.shape[-2] - bottom, :prediction.shape[-1] - right]
    if tuple(prediction.shape[-2:]) != tuple(size) and style == "lotus":
        prediction = F.interpolate(prediction, size=size, mode="nearest-exact")
    elif tuple(prediction.shape[-2:]) != tuple(size):
        prediction = F.interpolate(prediction, size=size, mode="bilinear", align_corners=False,
                                   antialias=style != "marigold")
    return prediction.clamp_(low, 1.0)  # in place: at the input size this is the largest tensor


def finish_normals(normals: torch.Tensor, size: tuple[int, int], padding=(0, 0), style="marigold"):
    """Normals as vectors [B,3,h,w] in [-1, 1] at the processing size -> (n + 1) / 2 [B,3,H,W] at the input ``size``:
    resized as vectors, then normalised again (diffusers' Marigold) or clipped (E2E-FT's copy, style "genpercept")."""
    normals = finish_prediction(normals.float(), size, padding, style, low=-1.0)
    if style == "marigold":
        normals = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-6)
    return normals.add_(1.0).div_(2.0)


def average_with_mirrored(prediction: torch.Tensor, mirrored: torch.Tensor, task) -> torch.Tensor:
    """Average a finished prediction [B,C,H,W] in [0,1] with the one of the mirrored photo, mirrored back; in place
    in ``prediction`` (the same values as (a + b) / 2), so a large photo holds as few full-size maps as it can."""
    mirror, rows = get_task(task).mirror, max(1, BLOCK_PIXELS // prediction.shape[-1])
    for start in range(0, prediction.shape[-2], rows):  # a block of rows at a time: no full-size mirrored copy
        back = mirror_maps(mirrored[..., start:start + rows, :], mirror, width_axis=-1, channel_axis=1, centre=0.5)
        prediction[..., start:start + rows, :].add_(back)
    return prediction.div_(2.0)
