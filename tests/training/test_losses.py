"""Training losses, the learning-rate schedule and depth targets."""

import math

import numpy as np
import pytest
import torch

from genpercept_bundle.training.config import TrainConfig, lr_factor
from genpercept_bundle.training.losses import angular_loss, depth_loss, gradient_loss, scale_shift_invariant_mse
from genpercept_bundle.training.targets import normalise_depth


def test_ssi_loss_ignores_scale_and_shift():
    target = torch.rand(2, 1, 8, 8)
    mask = torch.ones_like(target, dtype=torch.bool)
    assert scale_shift_invariant_mse(3 * target - 0.7, target, mask) < 1e-10
    assert scale_shift_invariant_mse(torch.rand(2, 1, 8, 8), target, mask) > 1e-3


def test_gradient_loss_ignores_offsets_and_masked_pixels():
    target = torch.rand(1, 1, 8, 8)
    mask = torch.ones_like(target, dtype=torch.bool)
    assert gradient_loss(target + 0.3, target, mask) < 1e-7
    noisy = target.clone()
    noisy[..., 0, 0] += 1.0
    masked = mask.clone()
    masked[..., 0, 0] = False
    assert gradient_loss(noisy, target, masked) < 1e-7 and gradient_loss(noisy, target, mask) > 0


def test_depth_loss_is_zero_only_at_the_target():
    target = torch.rand(1, 1, 8, 8) * 2 - 1
    mask = torch.ones_like(target, dtype=torch.bool)
    assert depth_loss(target, target, mask) < 1e-10
    assert depth_loss(target + 0.1, target, mask) == pytest.approx(0.01, rel=1e-4)  # MSE only: SSI and gradients vanish


def test_angular_loss_in_radians():
    target = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    prediction = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2) * 5  # 45 degrees, unnormalised
    loss = angular_loss(prediction, target, torch.ones(1, 1, 2, 2, dtype=torch.bool))
    assert float(loss) == pytest.approx(math.pi / 4, abs=1e-3)


def test_learning_rate_schedule():
    config = TrainConfig(steps=1100, warmup=100, final_lr_fraction=0.01)
    assert lr_factor(0, config) == pytest.approx(0.01) and lr_factor(99, config) == pytest.approx(1.0)
    assert lr_factor(600, config) == pytest.approx(0.1) and lr_factor(1100, config) == pytest.approx(0.01)


def test_depth_normalisation_uses_quantiles_and_sky_is_far():
    depth = np.linspace(1, 100, 100).reshape(10, 10).astype(np.float32)
    valid = np.ones_like(depth, bool)
    sky = np.zeros_like(valid)
    sky[0, 0] = True
    mapped = normalise_depth(depth, valid, sky)
    low, high = np.quantile(depth, [0.02, 0.98])
    assert mapped[0, 0] == 1.0 and mapped.min() == -1.0 and mapped.max() == 1.0
    assert mapped[5, 5] == pytest.approx((depth[5, 5] - low) / (high - low) * 2 - 1, abs=1e-6)
