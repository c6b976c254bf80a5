"""Relief height fields from depth maps: the grid, resampling, depth compression, smoothing, normal detail.

Numpy only (the Blender add-on runs it inside Blender). Every function takes float maps with row 0 at the
top of the image and returns float32.

Conventions:
- a height field is [rows, columns] in [0, 1], 1 = nearest (the top of the relief), 0 = farthest (the base);
- a grid of ``rows x columns`` vertices spans the map from edge to edge: vertex (i, j) samples the map at
  the centre of cell (i, j) of a rows x columns partition of the image, so the grid keeps the map's aspect;
- slopes ("cell units") are height steps per grid cell, in units of the relief height.
"""

import math

import numpy as np

from .conventions import near_bright
from .errors import GenPerceptError

COMPRESSIONS = ("none", "gamma", "log", "gradient")
COMPRESSION_HELP = {
    "none": "heights follow the depth linearly",
    "gamma": "heights ** (1 + strength): flattens the far part, keeps relief near the top",
    "log": "log(1 + k x) / log(1 + k), k = 10 ** strength: lifts the far part, compresses the near part",
    "gradient": "bas-relief: every slope s becomes log(1 + a s) / a (a from strength), then re-integrated: large "
                "depth jumps shrink, fine detail stays",
}
# Normals steeper than this (z component) are treated as this steep when their slope is integrated
MIN_NORMAL_Z = 0.2


def grid_shape(height: int, width: int, resolution: int) -> tuple[int, int]:
    """Vertices (rows, columns) with ``resolution`` along the longest side of a height x width map, same aspect."""
    if resolution < 2:
        raise GenPerceptError(f"a relief needs at least 2 vertices along its longest side, got {resolution}")
    scale = resolution / max(height, width)
    return max(2, round(height * scale)), max(2, round(width * scale))


def resample(values: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """A map [H,W] or [H,W,C] at rows x columns cell centres: the mean over each cell where the grid is coarser than
    the map (every pixel counts, no aliasing), bilinear where it is finer (no blocky steps)."""
    values = np.asarray(values, np.float32)
    per_column = _resample_axis(values, columns, axis=1)
    return _resample_axis(per_column, rows, axis=0)


def _resample_axis(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    length = values.shape[axis]
    if size == length:
        return values
    moved = np.moveaxis(values, axis, 0)
    if size < length:  # cell means from the running sum, cells with fractional pixel edges included
        running = np.concatenate([np.zeros((1, *moved.shape[1:]), np.float64), np.cumsum(moved, 0, dtype=np.float64)])
        sums = _running_at(running, np.linspace(0.0, length, size + 1))
        result = (sums[1:] - sums[:-1]) / (length / size)
    else:  # bilinear at the cell centres
        centres = np.clip((np.arange(size) + 0.5) * length / size - 0.5, 0, length - 1)
        below = np.minimum(np.floor(centres).astype(int), length - 2) if length > 1 else np.zeros(size, int)
        above = np.minimum(below + 1, length - 1)
        weight = (centres - below).reshape(-1, *([1] * (moved.ndim - 1)))
        result = moved[below] * (1 - weight) + moved[above] * weight
    return np.moveaxis(result.astype(np.float32), 0, axis)


def _running_at(running: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The running sum at fractional positions ``edges`` (linear between whole pixels)."""
    whole = np.minimum(np.floor(edges).astype(int), running.shape[0] - 2)
    fraction = (edges - whole).reshape(-1, *([1] * (running.ndim - 1)))
    return running[whole] * (1 - fraction) + running[whole + 1] * fraction


def normalise(heights: np.ndarray) -> np.ndarray:
    """Heights stretched to exactly [0, 1] (a flat field becomes 0), so the relief height is what was asked."""
    low, high = float(heights.min()), float(heights.max())
    if high - low < 1e-12:
        return np.zeros_like(heights, dtype=np.float32)
    return ((heights - low) / (high - low)).astype(np.float32)


def compress(heights: np.ndarray, method: str, strength: float = 1.0) -> np.ndarray:
    """Depth compression of heights in [0, 1] (COMPRESSION_HELP says what each ``method`` does); returns [0, 1]."""
    return normalise(_compressed(heights, method, strength))


def _compressed(heights: np.ndarray, method: str, strength: float) -> np.ndarray:
    """``compress`` before the stretch to [0, 1], so the frames of a sequence can share one stretch. The bas-relief's
    re-integrated field keeps the mean of ``heights`` (integration loses it), so frames stay level with each
    other."""
    if method not in COMPRESSIONS:
        raise GenPerceptError(f"depth compression must be one of {', '.join(COMPRESSIONS)}, got {method!r}")
    if strength < 0:
        raise GenPerceptError(f"the compression strength must be 0 or more, got {strength}")
    if method == "none" or strength == 0:
        return heights.astype(np.float32)
    if method == "gamma":
        return np.clip(heights, 0, 1) ** (1.0 + strength)
    if method == "log":
        k = 10.0 ** strength
        return np.log1p(k * np.clip(heights, 0, 1)) / math.log1p(k)
    gx, gy = gradients(heights)
    magnitude = np.hypot(gx, gy)
    typical = float(np.median(magnitude[magnitude > 0])) if np.any(magnitude > 0) else 1.0
    a = strength / max(typical, 1e-9)
    scale = np.where(magnitude > 0, np.log1p(a * magnitude) / (a * np.maximum(magnitude, 1e-12)), 1.0)
    return integrate(gx * scale, gy * scale) + float(heights.mean())


def smooth(heights: np.ndarray, radius: float) -> np.ndarray:
    """A Gaussian-like blur (three box passes per axis) of standard deviation ``radius`` cells; edges extend."""
    if radius <= 0:
        return heights.astype(np.float32)
    box = max(1, int(round(math.sqrt(12.0 * radius * radius / 3.0 + 1.0))))  # three boxes of this width ~ sigma
    blurred = heights.astype(np.float64)
    for axis in (0, 1):
        for _ in range(3):
            blurred = _box_blur(blurred, box, axis)
    return blurred.astype(np.float32)


def _box_blur(values: np.ndarray, width: int, axis: int) -> np.ndarray:
    if width <= 1:
        return values
    before, after = (width - 1) // 2, width // 2
    pad = [(0, 0)] * values.ndim
    pad[axis] = (before + 1, after)
    padded = np.pad(values, pad, mode="edge")
    running = np.cumsum(padded, axis=axis)
    n = values.shape[axis]
    upper = np.take(running, np.arange(width, width + n), axis=axis)
    lower = np.take(running, np.arange(0, n), axis=axis)
    return (upper - lower) / width


def gradients(heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward differences along columns (x) and rows (y, downwards); the last column / row is 0 (Neumann)."""
    heights = heights.astype(np.float64)
    gx, gy = np.zeros_like(heights), np.zeros_like(heights)
    gx[:, :-1] = heights[:, 1:] - heights[:, :-1]
    gy[:-1] = heights[1:] - heights[:-1]
    return gx, gy


def integrate(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The height field whose forward differences are closest to (gx, gy) in least squares (a Poisson solve with
    mirrored edges, by FFT), up to a constant: the mean is 0."""
    rows, columns = gx.shape
    divergence = np.array(gx, np.float64)
    divergence[:, 1:] -= gx[:, :-1]
    divergence += gy
    divergence[1:] -= gy[:-1]
    mirrored = np.concatenate([divergence, divergence[:, ::-1]], axis=1)
    mirrored = np.concatenate([mirrored, mirrored[::-1]], axis=0)
    spectrum = np.fft.rfft2(mirrored)
    ky = 2.0 * np.cos(2 * np.pi * np.arange(2 * rows) / (2 * rows)) - 2.0
    kx = 2.0 * np.cos(2 * np.pi * np.arange(spectrum.shape[1]) / (2 * columns)) - 2.0
    laplacian = ky[:, None] + kx[None, :]
    laplacian[0, 0] = 1.0
    spectrum /= laplacian
    spectrum[0, 0] = 0.0
    return np.fft.irfft2(spectrum, s=mirrored.shape)[:rows, :columns].astype(np.float32)


def normal_slopes(normals: np.ndarray, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Height steps per cell (x: along columns, y: down the rows) of a surface with ``normals`` (+X right, +Y up,
    +Z toward the viewer), a grid cell being ``cell_size`` relief heights wide."""
    nz = np.maximum(normals[..., 2], MIN_NORMAL_Z)
    return -normals[..., 0] / nz * cell_size, normals[..., 1] / nz * cell_size


def normal_detail(normals: np.ndarray, cell_size: float, radius: float) -> np.ndarray:
    """The fine shape the normals show and the depth misses: their integrated surface minus its blur of ``radius``
    cells (the coarse shape, which the depth already has), in relief heights."""
    surface = integrate(*normal_slopes(normals, cell_size))
    return (surface - smooth(surface, radius)).astype(np.float32)


def relief_heights(depth: np.ndarray, rows: int, columns: int, invert: bool = False, compression: str = "none",
                   strength: float = 1.0, smoothing: float = 0.0, normals: np.ndarray | None = None,
                   detail: float = 0.0, cell_size: float = 1.0) -> np.ndarray:
    """The relief's heights [rows, columns] in [0, 1] (1 = nearest) from a full-resolution ``depth`` [H,W] (0 = near;
    ``invert``: the map is near = 1 already).

    Order: resample to the grid -> compress (``compression``, ``strength``) -> smooth (``smoothing``: a blur of that
    fraction of the longest side) -> add ``detail`` x the normals' fine shape (``normals`` [H,W,3], a cell being
    ``cell_size`` relief heights wide) -> stretch to [0, 1].
    """
    return sequence_heights([depth], rows, columns, invert, compression, strength, smoothing,
                            None if normals is None else [normals], detail, cell_size)[0]


def sequence_heights(depths, rows: int, columns: int, invert: bool = False, compression: str = "none",
                     strength: float = 1.0, smoothing: float = 0.0, normals=None, detail: float = 0.0,
                     cell_size: float = 1.0) -> np.ndarray:
    """``relief_heights`` of every frame of a sequence [frames, rows, columns], with the stretches to [0, 1] shared
    by all frames (each frame stretched on its own would make a steady scene pump up and down). ``depths`` (and
    ``normals``): iterables of full-resolution maps, read one at a time; only the grids are kept."""
    normals = iter(normals) if detail and normals is not None else None
    grids, normal_grids = [], []
    for depth in depths:
        if depth.ndim != 2:
            raise GenPerceptError(f"a depth map is [H,W], got shape {depth.shape}")
        grids.append(resample(depth if invert else near_bright(depth), rows, columns))
        if normals is not None:
            frame_normals = next(normals)
            if frame_normals.shape[:2] != depth.shape:
                raise GenPerceptError(f"the normal map is {frame_normals.shape[1]}x{frame_normals.shape[0]} but the "
                                      f"depth map is {depth.shape[1]}x{depth.shape[0]}; use maps of the same photo")
            normal_grids.append(resample(frame_normals, rows, columns))
    if not grids:
        raise GenPerceptError("no depth maps: a relief needs at least one")
    heights = normalise(np.stack(grids))
    heights = normalise(np.stack([_compressed(frame, compression, strength) for frame in heights]))
    heights = np.stack([smooth(frame, smoothing * max(rows, columns)) for frame in heights])
    if normal_grids:
        radius = max(2.0, 0.02 * max(rows, columns))
        heights = heights + detail * np.stack([normal_detail(n, cell_size, radius) for n in normal_grids])
    return normalise(heights)


def coverage(matte: np.ndarray, threshold: float) -> float:
    """The fraction of a matte at or above ``threshold`` (how much of the photo a matte cut would keep)."""
    return float(np.mean(matte >= threshold)) if matte.size else 0.0
