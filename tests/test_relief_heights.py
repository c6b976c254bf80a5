"""Relief height fields: grid shape, resampling, depth compression, smoothing, detail from normals."""

import numpy as np
import pytest

from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.relief_heights import (COMPRESSIONS, compress, coverage, gradients, grid_shape, integrate,
                                              normal_detail, relief_heights, resample, sequence_heights,
                                              smooth)


def test_grid_keeps_the_aspect_with_the_resolution_along_the_longest_side():
    assert grid_shape(3000, 4000, 2048) == (1536, 2048)
    assert grid_shape(4000, 3000, 512) == (512, 384)
    with pytest.raises(GenPerceptError, match="at least 2 vertices"):
        grid_shape(10, 10, 1)


def test_shrinking_averages_every_pixel_of_a_cell():
    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(resample(values, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    # a fractional cell edge: 3 pixels into 2 cells of 1.5 pixels
    np.testing.assert_allclose(resample(np.array([[0.0, 3.0, 6.0]], np.float32), 1, 2), [[1.0, 5.0]])
    assert resample(np.ones((30, 40, 3), np.float32), 3, 4).shape == (3, 4, 3)


def test_enlarging_is_bilinear_so_a_ramp_has_no_steps():
    ramp = np.linspace(0, 1, 50, dtype=np.float32)[None].repeat(10, 0)  # 50 distinct values
    enlarged = resample(ramp, 40, 400)
    assert len(np.unique(enlarged[20])) > 350  # no blocky steps: almost every vertex its own height
    assert np.all(np.diff(enlarged[20]) >= 0)


def test_integrate_recovers_a_field_from_its_gradients():
    y, x = np.mgrid[0:40, 0:60] / 40.0
    field = np.sin(3 * x) * np.cos(2 * y) + 0.3 * x
    recovered = integrate(*gradients(field))
    np.testing.assert_allclose(recovered - recovered.mean(), field - field.mean(), atol=1e-4)


@pytest.mark.parametrize("method", COMPRESSIONS)
def test_compressions_keep_order_and_range(method):
    ramp = np.linspace(0, 1, 101, dtype=np.float32)[None].repeat(5, 0)
    out = compress(ramp, method, 1.0)
    assert out.min() == pytest.approx(0) and out.max() == pytest.approx(1)
    assert np.all(np.diff(out[2]) >= -1e-5)  # near stays nearer than far


def test_gamma_and_log_bend_the_ramp_opposite_ways():
    ramp = np.linspace(0, 1, 101, dtype=np.float32)[None]
    assert compress(ramp, "gamma", 1.0)[0, 50] < 0.3  # the far half flattened
    assert compress(ramp, "log", 1.0)[0, 50] > 0.7  # the far half lifted


def test_gradient_compression_shrinks_a_step_more_than_the_detail_beside_it():
    y, x = np.mgrid[0:64, 0:128]
    heights = 0.02 * np.sin(x / 3.0) + np.where(x >= 64, 1.0, 0.0)
    out = compress(heights.astype(np.float32), "gradient", 4.0)
    step = out[:, 66].mean() - out[:, 61].mean()
    ripple = np.ptp(out[32, 10:40])
    assert ripple / step > 5 * (np.ptp(heights[32, 10:40]) / 1.0)  # the ripple is much larger relative to the step


def test_smoothing_blurs_noise_and_keeps_the_mean():
    noise = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    blurred = smooth(noise, 3.0)
    assert blurred.std() < 0.3 * noise.std()
    assert blurred.mean() == pytest.approx(noise.mean(), abs=1e-3)
    np.testing.assert_array_equal(smooth(noise, 0.0), noise)


def test_normal_detail_adds_the_bumps_the_normals_show():
    y, x = np.mgrid[0:96, 0:96].astype(np.float32)
    bumps = 0.5 * np.sin(x / 2.0)  # heights in relief units per cell
    slope_x = 0.5 * np.cos(x / 2.0) / 2.0
    normals = np.stack([-slope_x, np.zeros_like(x), np.ones_like(x)], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    detail = normal_detail(normals, cell_size=1.0, radius=6.0)
    inner = (slice(10, -10), slice(10, -10))
    assert np.corrcoef(detail[inner].ravel(), bumps[inner].ravel())[0, 1] > 0.95


def test_relief_heights_from_a_full_resolution_depth_map():
    depth = np.tile(np.linspace(0, 1, 4000, dtype=np.float32), (3000, 1))  # near on the left
    heights = relief_heights(depth, *grid_shape(3000, 4000, 256))
    assert heights.shape == (192, 256)
    assert heights[:, 0].mean() == pytest.approx(1.0, abs=1e-3) and heights[:, -1].mean() == pytest.approx(0.0, abs=1e-3)
    assert len(np.unique(heights[0])) == 256
    flat = np.ones((20, 30, 3), np.float32) * [0, 0, 1]
    with pytest.raises(GenPerceptError, match="same photo"):
        relief_heights(depth[:40, :40], 10, 10, normals=flat, detail=1.0)


def test_coverage():
    matte = np.zeros((10, 10), np.float32)
    matte[:2] = 1
    assert coverage(matte, 0.5) == pytest.approx(0.2)


@pytest.mark.parametrize("method", COMPRESSIONS)
def test_a_sequence_shares_one_scale_and_a_single_frame_is_a_relief(method):
    """Frame 2 is frame 1 at half the depth range: stretched on its own it would match frame 1 (the relief would
    pump); in the sequence it stays lower. One frame alone is exactly ``relief_heights``."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:30, 0:40] / 40.0
    first = (0.1 + 0.8 * x + 0.01 * rng.standard_normal((30, 40))).astype(np.float32)
    second = (0.5 + 0.5 * (first - 0.5)).astype(np.float32)
    frames = sequence_heights(iter([first, second]), 15, 20, compression=method, strength=1.0, smoothing=0.01)
    assert frames.shape == (2, 15, 20) and frames.min() == 0.0 and frames.max() == 1.0
    assert np.ptp(frames[1]) < 0.8 * np.ptp(frames[0])
    np.testing.assert_allclose(sequence_heights([first], 15, 20, compression=method, smoothing=0.01)[0],
                               relief_heights(first, 15, 20, compression=method, smoothing=0.01), atol=1e-6)


def test_a_sequence_needs_depth_maps():
    with pytest.raises(GenPerceptError, match="no depth maps"):
        sequence_heights(iter([]), 4, 4)
