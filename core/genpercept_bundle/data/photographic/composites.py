"""Matting composites: a subject rendered on its own (transparent film) laid over its background render.

The way matting sets are made (a foreground with an exact alpha over a photo it was not shot in), but physically
matched: the subject is rendered in the background's world with the background's geometry present and hidden from
the camera only, so its light is the same HDRI and lamps, it is shadowed by the room and picks up colour bounced
off the walls and ground (spill); it casts no shadow on the background.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class Layer:
    """One render: linear RGBA (premultiplied), planar depth (0 = nothing) and camera-space normals."""
    rgba: np.ndarray  # float32 [H,W,4]
    depth: np.ndarray  # float32 [H,W]
    normal: np.ndarray  # float32 [H,W,3]


def composite(subject: Layer, background: Layer) -> dict:
    """The photo (linear RGB) and maps of ``subject`` over ``background``: colour by premultiplied "over", alpha =
    the subject's coverage, depth and normals the subject's wherever its geometry is at the pixel centre."""
    alpha = subject.rgba[..., 3:4]
    rgb = subject.rgba[..., :3] + (1.0 - alpha) * background.rgba[..., :3]
    on_subject = subject.depth > 0
    depth = np.where(on_subject, subject.depth, background.depth)
    normal = np.where(on_subject[..., None], subject.normal, background.normal)
    return {"rgb": rgb.astype(np.float32), "alpha": np.clip(alpha[..., 0], 0, 1).astype(np.float32),
            "depth": depth.astype(np.float32), "normal": normal.astype(np.float32)}


def without_subject(background: Layer) -> dict:
    height, width = background.depth.shape
    return {"rgb": background.rgba[..., :3].astype(np.float32), "alpha": np.zeros((height, width), np.float32),
            "depth": background.depth, "normal": background.normal}
