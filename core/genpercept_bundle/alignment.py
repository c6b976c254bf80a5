"""Fitting one map onto another: the scale and shift of relative depth, the rotation of a normal map.

Relative depth is known up to a scale and shift, and normals predicted from a crop or a neighbouring video frame are
turned by the small rotation between the two views; evaluation, detail tiles and steady video all remove that first.
Numpy only.
"""

import math

import numpy as np

MIN_SPREAD = 1e-4  # a map flatter than this (std, in 0..1 units) has no scale to fit


def fit_scale_shift(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None,
                    weights: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares scale s and shift t minimising sum w |s * prediction + t - target|^2 over ``mask`` (or all
    pixels), in float64; a flat prediction gets scale 0 and the target's mean."""
    w = np.ones(prediction.shape, np.float64) if weights is None else weights.astype(np.float64)
    if mask is not None:
        w = w * mask
    p, g = prediction.astype(np.float64), target.astype(np.float64)
    total = w.sum()
    if total <= 0:
        return 1.0, 0.0
    mean_p, mean_g = (w * p).sum() / total, (w * g).sum() / total
    spread = (w * (p - mean_p) ** 2).sum() / total
    if spread <= 1e-18:
        return 0.0, float(mean_g)
    scale = (w * (p - mean_p) * (g - mean_g)).sum() / total / spread
    return float(scale), float(mean_g - scale * mean_p)


def fit_depth_onto(prediction: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None,
                   weights: np.ndarray | None = None) -> np.ndarray | None:
    """``prediction`` scaled and shifted onto ``reference``, or None when that would not be a depth map of the same
    scene: the prediction is flat, or the fit turns it upside down (near and far swapped)."""
    w = np.ones(prediction.shape, np.float64) if weights is None else weights
    if mask is not None:
        w = w * mask
    if w.sum() <= 0:
        return None
    mean = float((w * prediction).sum() / w.sum())
    if float((w * (prediction - mean) ** 2).sum() / w.sum()) < MIN_SPREAD**2:
        return None
    scale, shift = fit_scale_shift(prediction, reference, weights=w)
    if not math.isfinite(scale) or scale <= 0:
        return None
    return (prediction * scale + shift).astype(np.float32)


def fit_rotation(vectors: np.ndarray, reference: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The rotation R (3x3) that best turns unit vectors ``vectors`` [..., 3] onto ``reference`` [..., 3] (weighted
    Kabsch): rotated = vectors @ R.T."""
    w = np.ones(vectors.shape[:-1]) if weights is None else weights
    covariance = np.einsum("n,ni,nj->ij", w.reshape(-1).astype(np.float64), reference.reshape(-1, 3).astype(np.float64),
                           vectors.reshape(-1, 3).astype(np.float64))
    u, _, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    return (u @ np.diag([1.0, 1.0, sign]) @ vt).astype(np.float32)
