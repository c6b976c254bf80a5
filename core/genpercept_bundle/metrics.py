"""Evaluation metrics, as in the depth / normal / matting literature (numpy, one image at a time)."""

import cv2
import numpy as np


def align_scale_shift(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Least-squares scale s and shift t minimising |s * prediction + t - target|^2 on ``mask``; returns the aligned map."""
    p, g = prediction[mask].astype(np.float64), target[mask].astype(np.float64)
    design = np.stack([p, np.ones_like(p)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, g, rcond=None)
    return (scale * prediction + shift).astype(np.float64)


def depth_metrics(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
    """AbsRel and delta1 of relative ``prediction`` against metric ``target`` after scale+shift alignment."""
    aligned = align_scale_shift(prediction, target, mask)
    valid_target = target[mask]
    positive_floor = max(float(valid_target.min()) * 1e-2, 1e-3)  # an aligned map can dip below zero
    estimate = np.clip(aligned[mask], positive_floor, None)
    ratio = np.maximum(estimate / valid_target, valid_target / estimate)
    return {"abs_rel": float(np.mean(np.abs(estimate - valid_target) / valid_target)),
            "delta1": float(np.mean(ratio < 1.25))}


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


def _gradient_magnitude(image: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    smooth = cv2.GaussianBlur(image.astype(np.float64), (0, 0), sigma)
    gy, gx = np.gradient(smooth)
    return np.hypot(gx, gy)
