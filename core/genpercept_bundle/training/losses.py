"""Training losses in pixel space, as in GenPercept's main-paper configs.

All take predictions and targets as [B,C,H,W] tensors in the decoded [-1, 1]
range and a validity mask [B,1,H,W] (bool).
"""

import torch
import torch.nn.functional as F

from ..tasks import get_task


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.expand_as(values).float()
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def scale_shift_invariant_mse(prediction, target, mask):
    """MSE after the least-squares scale and shift of each prediction onto its target."""
    m = mask.float().flatten(1)
    p, t = prediction.flatten(1), target.flatten(1)
    count = m.sum(1).clamp(min=1.0)
    p_mean, t_mean = (p * m).sum(1) / count, (t * m).sum(1) / count
    p_c, t_c = (p - p_mean[:, None]) * m, (t - t_mean[:, None]) * m
    scale = (p_c * t_c).sum(1) / (p_c * p_c).sum(1).clamp(min=1e-6)
    aligned = scale[:, None] * (p - p_mean[:, None]) + t_mean[:, None]
    return ((aligned - t) ** 2 * m).sum() / m.sum().clamp(min=1.0)


def gradient_loss(prediction, target, mask):
    """L1 of the image gradients of the residual (one scale), where both neighbours are valid."""
    residual = prediction - target
    valid_x = mask[..., :, 1:] & mask[..., :, :-1]
    valid_y = mask[..., 1:, :] & mask[..., :-1, :]
    grad_x = (residual[..., :, 1:] - residual[..., :, :-1]).abs()
    grad_y = (residual[..., 1:, :] - residual[..., :-1, :]).abs()
    total = (grad_x * valid_x).sum() + (grad_y * valid_y).sum()
    return total / (valid_x.sum() + valid_y.sum()).clamp(min=1)


def depth_loss(prediction, target, mask):
    """MSE + 0.5 x scale-shift-invariant MSE + 2 x gradient loss, on maps shifted by +2 (to [1, 3])."""
    prediction, target = prediction + 2.0, target + 2.0
    mse = masked_mean((prediction - target) ** 2, mask)
    return mse + 0.5 * scale_shift_invariant_mse(prediction, target, mask) + 2.0 * gradient_loss(prediction, target, mask)


def angular_loss(prediction, target, mask):
    """Mean angle (radians) between predicted and target normals ([B,3,H,W]); the prediction is normalised."""
    cosine = F.cosine_similarity(prediction, target, dim=1, eps=1e-6).unsqueeze(1)
    return masked_mean(torch.acos(cosine.clamp(-1 + 1e-6, 1 - 1e-6)), mask)


def matte_loss(prediction, target, mask):
    return masked_mean((prediction - target) ** 2, mask)


# Each task's loss by its registry name (Task.loss): (prediction, target, mask) -> scalar
LOSSES = {"depth": depth_loss, "angular": angular_loss, "mse": matte_loss}


def task_loss(task, decoded: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``task``'s loss of the decoded map [B,3,H,W] (scalar tasks: its channel mean, as at inference)."""
    task = get_task(task)
    prediction = decoded.mean(dim=1, keepdim=True) if task.channels == 1 else decoded
    return LOSSES[task.loss](prediction, target, mask)
