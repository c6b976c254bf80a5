"""Pre- and post-processing exactly as GenPercept v2's ``run.py`` does it.

- resize: longest side to ``processing_res`` with floor rounding, bilinear with
  antialiasing applied to the *uint8* tensor (what torchvision's ``resize`` does
  on a uint8 tensor), no padding; ``processing_res = 0`` keeps the native size;
- normalise: rgb / 255 * 2 - 1;
- finish: channel mean for scalar tasks, clip to [-1, 1], (x + 1) / 2, bilinear
  antialiased resize back to the input size, clip to [0, 1].

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
    """uint8 [B,3,H,W] -> uint8 [B,3,h,w] (see module doc)."""
    h, w = processing_size(*rgb.shape[-2:], processing_res)
    if (h, w) == tuple(rgb.shape[-2:]):
        return rgb
    return F.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def normalise_rgb(rgb: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [B,3,h,w] -> [-1, 1] in ``dtype``."""
    return (rgb.float() / 255.0 * 2.0 - 1.0).to(dtype)


def finish_prediction(decoded: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Decoded [B,3,h',w'] in about [-1,1] -> float32 [B,C,H,W] in [0,1] at the input ``size``."""
    prediction = decoded.float()
    if channels == 1:
        prediction = prediction.mean(dim=1, keepdim=True)  # [B,1,h',w']
    prediction = (prediction.clip(-1.0, 1.0) + 1.0) / 2.0
    if tuple(prediction.shape[-2:]) != tuple(size):
        prediction = F.interpolate(prediction, size=size, mode="bilinear", align_corners=False, antialias=True)
    return prediction.clamp_(0.0, 1.0)  # in place: at the input size this is the largest tensor


def average_with_mirrored(prediction: torch.Tensor, mirrored: torch.Tensor, task) -> torch.Tensor:
    """Average a finished prediction [B,C,H,W] in [0,1] with the one of the mirrored photo, mirrored back; in place
    in ``prediction`` (the same values as (a + b) / 2), so a large photo holds as few full-size maps as it can."""
    mirror, rows = get_task(task).mirror, max(1, BLOCK_PIXELS // prediction.shape[-1])
    for start in range(0, prediction.shape[-2], rows):  # a block of rows at a time: no full-size mirrored copy
        back = mirror_maps(mirrored[..., start:start + rows, :], mirror, width_axis=-1, channel_axis=1, centre=0.5)
        prediction[..., start:start + rows, :].add_(back)
    return prediction.div_(2.0)
