"""Evaluation metrics, as in the depth / normal / matting literature (numpy, one image at a time)."""

import cv2
import numpy as np

from ..alignment import fit_scale_shift
from ..tasks import get_task


def align_scale_shift(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``prediction`` after the least-squares scale and shift onto ``target`` on ``mask`` (float64)."""
    scale, shift = fit_scale_shift(prediction, target, mask)
    return scale * prediction.astype(np.float64) + shift


def depth_metrics(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
    """AbsRel and delta1 of relative ``prediction`` against metric ``target`` after scale+shift alignment."""
    aligned = align_scale_shift(prediction, target, mask)
    valid_target = target[mask]
    positive_floor = max(float(valid_target.min()) * 1e-2, 1e-3)  # an aligned map can dip below zero
    estimate = np.clip(aligned[mask], positive_floor, None)
    ratio = np.maximum(estimate / valid_target, valid_target / estimate)
    return {"abs_rel": float(np.mean(np.abs(estimate - valid_target) / valid_target)),
            "delta1": float(np.mean(ratio < 1.25))}


def depth_flicker(predictions: np.ndarray, targets: np.ndarray, masks: np.ndarray) -> float:
    """How much a depth sequence flickers beyond the true change: relative ``predictions`` [T,H,W] get one scale and
    shift onto the metric ``targets`` [T,H,W] for the whole sequence (what a viewer of one steady range sees), then
    the mean over consecutive frames of |change of the prediction - change of the truth| on pixels valid in both
    (``masks``), over the truth's median depth. 0 for a sequence that changes exactly as the scene does."""
    aligned = align_scale_shift(predictions, targets, masks)
    both = masks[1:] & masks[:-1]
    if not both.any():
        raise ValueError("no pixel is valid in two consecutive frames")
    change = np.abs(np.diff(aligned, axis=0) - np.diff(targets.astype(np.float64), axis=0))
    return float(change[both].mean() / np.median(targets[masks]))


def normal_metrics(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
    """Angular error (degrees) statistics of unit normals [H,W,3] on ``mask``."""
    cosine = np.clip(np.sum(prediction[mask] * target[mask], axis=-1), -1.0, 1.0)
    errors = np.degrees(np.arccos(cosine))
    return {"mean": float(errors.mean()), "median": float(np.median(errors)),
            "within_11.25": float(np.mean(errors < 11.25) * 100), "within_22.5": float(np.mean(errors < 22.5) * 100),
            "within_30": float(np.mean(errors < 30) * 100)}


def matte_metrics(prediction: np.ndarray, target: np.ndarray) -> dict:
    """SAD (/1000), MSE and gradient error (Rhemann et al.: Gaussian derivatives, sigma 1.4, /1000)."""
    difference = prediction.astype(np.float64) - target
    return {"sad": float(np.abs(difference).sum() / 1000.0), "mse": float(np.mean(difference**2)),
            "grad": float(np.sum((_gradient_magnitude(prediction) - _gradient_magnitude(target)) ** 2) / 1000.0)}


def mask_metrics(prediction: np.ndarray, target: np.ndarray) -> dict:
    """Dichotomous segmentation: mean absolute error and the IoU of both masks thresholded at 0.5."""
    predicted, truth = prediction >= 0.5, target >= 0.5
    union = np.logical_or(predicted, truth).sum()
    iou = np.logical_and(predicted, truth).sum() / union if union else 1.0
    return {"mae": float(np.mean(np.abs(prediction.astype(np.float64) - target))), "iou": float(iou)}


def _gradient_magnitude(image: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    smooth = cv2.GaussianBlur(image.astype(np.float64), (0, 0), sigma)
    gy, gx = np.gradient(smooth)
    return np.hypot(gx, gy)


# Each task's metrics by its registry name (Task.metrics): (prediction, ground truth) -> {metric: value}, on the
# valid pixels (depth: positive; normals: non-zero vectors).
METRICS = {
    "depth": lambda prediction, truth: depth_metrics(prediction, truth, truth > 0),
    "normal": lambda prediction, truth: normal_metrics(prediction, truth, np.linalg.norm(truth, axis=-1) > 0.5),
    "matte": matte_metrics,
    "mask": mask_metrics,
}


def score(task, prediction: np.ndarray, truth: np.ndarray) -> dict:
    """``task``'s metrics of one map against its ground truth."""
    return METRICS[get_task(task).metrics](prediction, truth)
