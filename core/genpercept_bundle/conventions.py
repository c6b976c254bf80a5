"""Output conventions: what each map's numbers mean, and the views front ends show.

All functions take numpy float arrays shaped [..., H, W] (scalar maps) or
[..., H, W, 3] (normals) and work for a single map or a batch. Numpy only, so
the Blender add-on uses them as they are.

- depth:  relative depth in [0, 1], 0 = near, 1 = far (GenPercept's own output).
  ``near_bright`` gives 1 - depth, the "near = bright" polarity ControlNet depth
  models and MiDaS-style maps use.
- normal: camera-space unit vectors, +X right, +Y up, +Z toward the viewer
  (OpenGL). Encoded to colour as (n + 1) / 2; ``directx`` flips the green (Y)
  channel. The raw network output p in [0, 1] relates as n = normalise(2p - 1).
- matte:  alpha in [0, 1], 1 = foreground.
"""

import numpy as np

from .alignment import fit_scale_shift
from .errors import GenPerceptError

NORMAL_CONVENTIONS = ("opengl", "directx")
BLOCK_PIXELS = 1 << 20  # per-pixel conversions of large maps run this many pixels at a time
DEPTH_NORMALISATIONS = ("per_image", "sequence", "none")


def near_bright(depth: np.ndarray) -> np.ndarray:
    """Depth (0 = near) -> the inverted view where near is bright (1) and far is dark (0)."""
    return 1.0 - depth


def normals_from_raw(raw: np.ndarray, black_is_invalid: bool = False) -> np.ndarray:
    """Colours in [0,1]^3 ((n + 1) / 2: network output, PNG normal maps) -> unit normals (see ``unit_normals``).

    With ``black_is_invalid`` (datasets keep black for "no ground truth") black pixels become zero vectors.
    Computed a block of pixels at a time (the same values), so a large map needs no full-size temporaries.
    """
    pixels = raw.reshape(-1, 3)
    normals = np.empty(pixels.shape, np.float32)
    for start in range(0, len(pixels), BLOCK_PIXELS):
        block = pixels[start:start + BLOCK_PIXELS]
        normals[start:start + BLOCK_PIXELS] = unit_normals(block.astype(np.float32) * 2.0 - 1.0)
        if black_is_invalid:
            normals[start:start + BLOCK_PIXELS][block.sum(axis=-1) <= 0] = 0.0
    return normals.reshape(raw.shape)


def unit_normals(vectors: np.ndarray) -> np.ndarray:
    """Vectors [..., 3] scaled to unit length; a degenerate (zero) vector becomes +Z (facing the camera)."""
    length = np.linalg.norm(vectors, axis=-1, keepdims=True)
    facing = np.zeros_like(vectors)
    facing[..., 2] = 1.0
    return np.where(length > 1e-6, vectors / np.maximum(length, 1e-6), facing).astype(np.float32)


def normals_to_rgb(normals: np.ndarray, convention: str = "opengl") -> np.ndarray:
    """Unit normals -> colours in [0,1]: R = X, G = Y (flipped for DirectX), B = Z."""
    if convention not in NORMAL_CONVENTIONS:
        raise ValueError(f"normal convention must be one of {NORMAL_CONVENTIONS}, got {convention!r}")
    encoded = (normals + 1.0) / 2.0
    if convention == "directx":
        encoded = encoded.copy()
        encoded[..., 1] = 1.0 - encoded[..., 1]
    return np.clip(encoded, 0.0, 1.0).astype(np.float32)


def mirror_maps(maps, mirror: str, width_axis: int, channel_axis: int = -1, centre: float = 0.0):
    """The maps of the left-right mirrored photo, from numpy arrays or torch tensors of any layout.

    ``mirror`` is the task's ``Task.mirror``: "map" flips the width axis; "normal" also turns X the other way,
    x -> 2 * centre - x on ``channel_axis`` (``centre`` 0 for unit vectors and [-1, 1] targets, 0.5 for
    colour-encoded [0, 1] maps).
    """
    width_axis %= maps.ndim
    flipped = np.flip(maps, width_axis).copy() if isinstance(maps, np.ndarray) else maps.flip(width_axis)
    if mirror == "normal":
        x = (slice(None),) * (channel_axis % maps.ndim) + (0,)
        flipped[x] = 2 * centre - flipped[x]
    return flipped


DEPTH_COLORMAPS = ("turbo", "inferno", "magma", "viridis", "plasma", "cividis", "grey")


def colorize_depth(depth: np.ndarray, colormap: str = "turbo") -> np.ndarray:
    """Depth [..., H, W] in [0,1] -> uint8 RGB [..., H, W, 3] in a colour map (DEPTH_COLORMAPS), near = the map's
    bright or warm end; "grey" is near = white."""
    import cv2

    if colormap not in DEPTH_COLORMAPS:
        raise GenPerceptError(f"unknown depth colour map {colormap!r}: choose one of {', '.join(DEPTH_COLORMAPS)}")
    grey = np.round(np.clip(near_bright(depth), 0.0, 1.0) * 255.0).astype(np.uint8)
    if colormap == "grey":
        return np.repeat(grey[..., None], 3, axis=-1)
    code = getattr(cv2, f"COLORMAP_{colormap.upper()}")
    return cv2.applyColorMap(grey.reshape(-1, grey.shape[-1]), code).reshape(*grey.shape, 3)[..., ::-1].copy()


def normalise_depth_batch(depth: np.ndarray, mode: str) -> np.ndarray:
    """Stretch a batch of depth maps [B,H,W] to [0, 1] for display or conditioning.

    - ``none``: the model's own values (already relative, in [0, 1]);
    - ``per_image``: min-max of each map (full contrast, but frames of a video flicker);
    - ``sequence``: each frame aligned to the previous one by a least-squares scale and
      shift, then one min-max over the whole batch, so a video keeps a steady depth scale.
    """
    if mode not in DEPTH_NORMALISATIONS:
        raise ValueError(f"depth normalisation must be one of {DEPTH_NORMALISATIONS}, got {mode!r}")
    depth = depth.astype(np.float32)
    if mode == "none":
        return depth
    if mode == "per_image":
        low = depth.min(axis=(1, 2), keepdims=True)
        high = depth.max(axis=(1, 2), keepdims=True)
        return (depth - low) / np.maximum(high - low, 1e-6)
    aligned = [depth[0]]
    for frame in depth[1:]:
        scale, shift = fit_scale_shift(frame, aligned[-1])
        aligned.append((scale * frame + shift).astype(np.float32) if scale > 0 else frame)
    stacked = np.stack(aligned)
    return (stacked - stacked.min()) / max(float(stacked.max() - stacked.min()), 1e-6)
