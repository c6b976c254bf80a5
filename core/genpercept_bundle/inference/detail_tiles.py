"""High-resolution detail: a photo much larger than the processing resolution is also predicted in overlapping tiles,
each seen at the processing resolution, and the tiles are merged into the whole photo's prediction.

1. The global pass: the whole photo at the processing resolution (the usual prediction), at the photo's size.
2. A grid of ``factor`` x ``factor`` tiles of the full-resolution photo overlapping by ``overlap`` of a tile, each
   predicted on its own, so the model sees ``factor`` times (less the overlap) more pixels of every part.
3. Each tile aligned to the global map over its area, so the tiles agree where they overlap and keep the photo's
   global layout: depth and disparity by a least-squares scale and shift (both are known only up to one), normals by
   the rotation that best turns the tile's vectors onto the global ones (a crop looks like a photo taken through an
   off-centre lens), mattes and masks as they are (absolute fractions).
4. Blended with weights that fall linearly to zero across every overlap (not at the photo's own edges): no tile edge
   shows in the result.
"""

import math

import numpy as np
import torch

from ..alignment import fit_depth_onto, fit_rotation
from ..conventions import normals_from_raw
from ..errors import GenPerceptError
from ..tasks import get_task
from .predictor import Prediction

DETAIL_OVERLAP = 0.25  # of a tile's side
AFFINE_TASKS = ("depth", "disparity")  # known up to a scale and shift: aligned by least squares


def tile_starts(length: int, tiles: int, overlap: float = DETAIL_OVERLAP) -> tuple[int, list[int]]:
    """A tile side and the start of each of ``tiles`` tiles covering ``length`` pixels, neighbours sharing about
    ``overlap`` of a tile."""
    side = math.ceil(length / (tiles - (tiles - 1) * overlap))
    if tiles == 1:
        return length, [0]
    return side, [round(i * (length - side) / (tiles - 1)) for i in range(tiles)]


def tile_grid(height: int, width: int, factor: int, overlap: float = DETAIL_OVERLAP) -> list[tuple[slice, slice]]:
    """The (rows, columns) of ``factor`` x ``factor`` overlapping tiles covering a ``height`` x ``width`` photo."""
    tile_h, rows = tile_starts(height, factor, overlap)
    tile_w, columns = tile_starts(width, factor, overlap)
    return [(slice(top, top + tile_h), slice(left, left + tile_w)) for top in rows for left in columns]


def tile_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """(h, w) of each tile of a ``factor`` grid over a ``height`` x ``width`` photo."""
    rows, columns = tile_grid(height, width, factor)[0]
    return rows.stop - rows.start, columns.stop - columns.start


def check_detail(height: int, width: int, factor: int, processing_res: int):
    """GenPerceptError unless ``factor`` is a whole number >= 1 whose tiles are at least as large as the processing
    resolution (smaller tiles would only be upscaled: no detail gained, only time lost); 0 = native always fits."""
    if not isinstance(factor, int) or factor < 1:
        raise GenPerceptError(f"the detail factor must be a whole number of at least 1, got {factor!r}")

    def fits(f):
        return f == 1 or processing_res == 0 or max(tile_size(height, width, f)) >= processing_res

    if not fits(factor):
        tile_h, tile_w = tile_size(height, width, factor)
        usable = max(f for f in range(1, factor) if fits(f))
        raise GenPerceptError(
            f"detail {factor} splits this {width}x{height} photo into {tile_w}x{tile_h} tiles, smaller than the "
            f"processing resolution {processing_res}: they would only be upscaled. Use detail {usable} or less for "
            "this photo (or a lower processing resolution)")


def blend_weights(tile: tuple[slice, slice], height: int, width: int) -> np.ndarray:
    """[h,w] float32 weights of one tile: 1 inside, falling linearly to ~0 across the sides it shares with other
    tiles (a quarter of its side), 1 up to the photo's own edges."""
    def ramp(span: slice, length: int) -> np.ndarray:
        size = span.stop - span.start
        fade = max(1, round(size * DETAIL_OVERLAP))
        position = np.arange(size, dtype=np.float32) + 0.5
        rising = np.ones(size, np.float32) if span.start == 0 else np.clip(position / fade, 0, 1)
        falling = np.ones(size, np.float32) if span.stop >= length else np.clip((size - position) / fade, 0, 1)
        return np.minimum(rising, falling)

    rows, columns = tile
    return np.outer(ramp(rows, height), ramp(columns, width)).astype(np.float32) + 1e-6


def merge_tiles(task, global_map: np.ndarray, tiles: list[tuple[tuple[slice, slice], np.ndarray]]) -> np.ndarray:
    """Align each tile's map to ``global_map`` and blend them into one map of the global's shape.

    Maps are a task's ``raw`` values ([H,W] in [0,1], or [H,W,3]; normals as (n + 1) / 2); the result is the same.
    """
    task = get_task(task)
    height, width = global_map.shape[:2]
    vectors = task.unit_vectors
    reference = normals_from_raw(global_map) if vectors else global_map
    total = np.zeros(reference.shape, np.float32)
    weight_sum = np.zeros((height, width), np.float32)
    for (rows, columns), tile_map in tiles:
        weights = blend_weights((rows, columns), height, width)
        area = reference[rows, columns]
        if vectors:
            tile_vectors = normals_from_raw(tile_map)
            aligned = tile_vectors @ fit_rotation(tile_vectors, area, weights).T
        elif task.name in AFFINE_TASKS:
            fitted = fit_depth_onto(tile_map, area, weights=weights)
            aligned = area if fitted is None else fitted
        else:
            aligned = tile_map
        total[rows, columns] += aligned * (weights[..., None] if vectors else weights)
        weight_sum[rows, columns] += weights
    merged = total / (weight_sum[..., None] if vectors else weight_sum)
    if vectors:
        merged /= np.maximum(np.linalg.norm(merged, axis=-1, keepdims=True), 1e-6)
        return ((merged + 1.0) / 2.0).astype(np.float32)
    return np.clip(merged, 0.0, 1.0).astype(np.float32)


def predict_with_detail(predictor, images: torch.Tensor, tasks, factor: int, processing_res=None, flip_average=None,
                        sampling=None, on_progress=None, check_interrupt=None) -> dict:
    """``predictor.predict_tasks`` with ``factor`` x ``factor`` detail tiles merged in (module doc), for uint8 RGB
    ``images`` [B,3,H,W]; the same Predictions, with the detail recorded in their provenance. Uncertainty maps
    (ensembles) are the global pass's."""
    tasks = [get_task(task).name for task in dict.fromkeys(tasks)]
    if "seg" in tasks:
        raise GenPerceptError("seg maps are colour codes that cannot be blended across tiles; predict them with "
                              "detail 1")
    count, (height, width) = images.shape[0], tuple(images.shape[-2:])
    for task in tasks:
        check_detail(height, width, factor, predictor.processing_resolution(task, processing_res))
    grid = tile_grid(height, width, factor)
    steps, done = count * (1 + len(grid)), 0

    def run(view):
        nonlocal done
        result = predictor.predict_tasks(view, tasks, processing_res, 1, None, flip_average, check_interrupt, sampling)
        done += 1
        if on_progress is not None:
            on_progress(done, steps)
        return result

    wholes, merged = [], {task: [] for task in tasks}
    for index in range(count):
        photo = images[index:index + 1]
        wholes.append(run(photo))
        tile_maps = {task: [] for task in tasks}
        for rows, columns in grid:
            for task, prediction in run(photo[..., rows, columns].contiguous()).items():
                tile_maps[task].append(((rows, columns), prediction.raw[0]))
        for task in tasks:
            merged[task].append(merge_tiles(task, wholes[-1][task].raw[0], tile_maps[task]))
        del tile_maps
    detail = {"factor": factor, "tiles": len(grid), "overlap": DETAIL_OVERLAP,
              "merge": "tiles aligned to the global pass (depth: scale and shift, normals: rotation), linear blend"}
    results = {}
    for task in tasks:
        first = wholes[0][task]
        doubts = [whole[task].uncertainty for whole in wholes]
        results[task] = Prediction(task, np.stack(merged.pop(task)), {**first.provenance, "detail": detail},
                                   None if doubts[0] is None else np.concatenate(doubts))
    return results


def seam_ratio(merged: np.ndarray, factor: int, reach: int = 8) -> float:
    """How much tile edges show in a merged map [H,W] or [H,W,C]: the mean step between neighbouring pixel
    rows/columns on the lines where a tile starts or ends, over the mean step on the ``reach`` lines either side of
    each. About 1 when no edge shows; a hard seam gives several times more."""
    height, width = merged.shape[:2]
    values = merged.reshape(height, width, -1).astype(np.float32)
    ratios = []
    for axis, length in ((1, width), (0, height)):
        steps = np.abs(np.diff(values, axis=axis)).mean(axis=(1 - axis, 2))  # one per line between pixels
        lines = {edge for tile in tile_grid(height, width, factor)
                 for edge in (tile[axis].start, tile[axis].stop) if reach < edge < length - reach}
        for line in sorted(lines):
            around = np.r_[steps[line - 1 - reach:line - 1], steps[line:line + reach]].mean()
            ratios.append(steps[line - 1] / max(float(around), 1e-9))
    return float(np.mean(ratios)) if ratios else 1.0
