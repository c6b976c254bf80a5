"""Metric functions on hand-computed cases."""

import numpy as np
import pytest

from genpercept_bundle.evaluation.scoring import baseline_depth
from genpercept_bundle.evaluation.metrics import align_scale_shift, depth_metrics, mask_metrics, matte_metrics, normal_metrics


def test_alignment_recovers_an_affine_map():
    truth = np.array([[1.0, 2.0], [3.0, 5.0]])
    prediction = (truth - 0.5) / 4.0  # truth = 4 * prediction + 0.5
    mask = np.ones_like(truth, bool)
    np.testing.assert_allclose(align_scale_shift(prediction, truth, mask), truth, atol=1e-12)
    assert depth_metrics(prediction, truth, mask) == {"abs_rel": pytest.approx(0.0, abs=1e-12), "delta1": 1.0}


def test_abs_rel_and_delta1_by_hand():
    truth = np.array([[1.0, 2.0, 4.0, 8.0]])
    mask = np.array([[True, True, True, False]])
    # an affine fit on the three valid pixels can't fix a non-affine error: compute by hand
    prediction = np.array([[1.0, 2.0, 5.0, 0.0]])
    aligned = align_scale_shift(prediction, truth, mask)
    design = np.stack([[1.0, 2.0, 5.0], [1, 1, 1]], axis=1)
    (s, t), *_ = np.linalg.lstsq(design, np.array([1.0, 2.0, 4.0]), rcond=None)
    np.testing.assert_allclose(aligned[0, :3], s * np.array([1, 2, 5.0]) + t)
    expected = np.mean(np.abs(aligned[0, :3] - [1, 2, 4]) / [1, 2, 4])
    assert depth_metrics(prediction, truth, mask)["abs_rel"] == pytest.approx(expected)
    far_off = depth_metrics(np.array([[0.0, 0.0, 1.0, 0.0]]), np.array([[1.0, 1.0, 2.0, 1.0]]), np.ones((1, 4), bool))
    assert far_off == {"abs_rel": pytest.approx(0.0, abs=1e-12), "delta1": 1.0}


def test_delta1_threshold():
    truth = np.array([[1.0, 1.0, 1.0, 1.0]])
    mask = np.ones_like(truth, bool)
    # a constant prediction aligns to the mean (1.0): every ratio is 1
    assert depth_metrics(np.zeros_like(truth), truth, mask)["delta1"] == 1.0


def test_normal_metrics_on_known_angles():
    target = np.array([[[0.0, 0.0, 1.0]] * 4])
    angles = np.radians([0.0, 10.0, 20.0, 40.0])
    prediction = np.stack([np.sin(angles), np.zeros(4), np.cos(angles)], axis=-1)[None]
    scores = normal_metrics(prediction, target, np.ones((1, 4), bool))
    assert scores["mean"] == pytest.approx(17.5) and scores["median"] == pytest.approx(15.0)
    assert scores["within_11.25"] == 50.0 and scores["within_22.5"] == 75.0 and scores["within_30"] == 75.0


def test_matte_metrics_by_hand():
    target = np.zeros((10, 10))
    prediction = np.zeros((10, 10))
    prediction[0, :4] = 0.5
    scores = matte_metrics(prediction, target)
    assert scores["sad"] == pytest.approx(2.0 / 1000) and scores["mse"] == pytest.approx(4 * 0.25 / 100)
    assert scores["grad"] > 0 and matte_metrics(target, target)["grad"] == 0


def test_baselines():
    assert np.all(baseline_depth("constant", 3, 4) == 0.5)
    gradient = baseline_depth("vertical_gradient", 3, 2)
    np.testing.assert_allclose(gradient[:, 0], [1.0, 0.5, 0.0])  # far at the top


def test_mask_metrics_by_hand():
    truth = np.array([[1.0, 1.0], [0.0, 0.0]])
    prediction = np.array([[0.9, 0.2], [0.6, 0.0]])
    metrics = mask_metrics(prediction, truth)
    assert metrics["mae"] == pytest.approx((0.1 + 0.8 + 0.6 + 0.0) / 4)
    assert metrics["iou"] == pytest.approx(1 / 3)  # predicted {(0,0), (1,0)}, true {(0,0), (0,1)}
