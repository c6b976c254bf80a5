"""Output conventions: what each map's numbers mean, and the views front ends show.

All functions take numpy float arrays shaped [..., H, W] (scalar maps) or
[..., H, W, 3] (normals) and work for a single map or a batch.

- depth:  relative depth in [0, 1], 0 = near, 1 = far (GenPercept's own output).
  ``near_bright`` gives 1 - depth, the "near = bright" polarity ControlNet depth
  models and MiDaS-style maps use.
- normal: camera-space unit vectors, +X right, +Y up, +Z toward the viewer
  (OpenGL). Encoded to colour as (n + 1) / 2; ``directx`` flips the green (Y)
  channel. The raw network output p in [0, 1] relates as n = normalise(2p - 1).
- matte:  alpha in [0, 1], 1 = foreground.
"""

import numpy as np

NORMAL_CONVENTIONS = ("opengl", "directx")


def near_bright(depth: np.ndarray) -> np.ndarray:
    """Depth (0 = near) -> the inverted view where near is bright (1) and far is dark (0)."""
    return 1.0 - depth


def normals_from_raw(raw: np.ndarray) -> np.ndarray:
    """Network output in [0,1]^3 -> unit normals; a degenerate (zero) vector becomes +Z (facing the camera)."""
    vectors = raw.astype(np.float32) * 2.0 - 1.0
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


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Depth [H,W] in [0,1] -> uint8 RGB [H,W,3] preview with the turbo colour map, near = warm."""
    import cv2

    grey = np.round(np.clip(near_bright(depth), 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_TURBO)[..., ::-1].copy()


DEPTH_NORMALISATIONS = ("none", "per_image", "sequence")


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
        design = np.stack([frame.ravel(), np.ones(frame.size, np.float32)], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, aligned[-1].ravel(), rcond=None)
        aligned.append(scale * frame + shift if scale > 0 else frame)
    stacked = np.stack(aligned)
    return (stacked - stacked.min()) / max(float(stacked.max() - stacked.min()), 1e-6)
