"""Steady video maps: a frame's map follows the previous one along the optical flow, with the flicker figure."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genpercept_bundle import GenPerceptPredictor
from genpercept_bundle.conventions import normalise_depth_batch
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.evaluation.metrics import depth_flicker
from genpercept_bundle.inference.steady_sequence import looks_like_one_shot, steady_maps

EXAMPLE = Path(__file__).parents[2] / "examples" / "photo.jpg"
FRAMES, STEP, WIDTH = 8, 12, 400  # a camera panning 12 px a frame over the example photo (600 x 400)


def panning_clip():
    photo = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    height, width = photo.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    truth = (2.0 + 1.5 * columns + np.sin(5 * rows) * 0.5).astype(np.float32)  # metres, a smooth scene
    frames = np.stack([photo[:, i * STEP:i * STEP + WIDTH] for i in range(FRAMES)])
    truths = np.stack([truth[:, i * STEP:i * STEP + WIDTH] for i in range(FRAMES)])
    return frames, truths


def flickering_predictions(truths):
    """What a per-frame perceiver gives: each frame relative with its own scale and shift, some frames with a patch
    seen inside out (near and far swapped), some noise."""
    rng = np.random.default_rng(0)
    predictions = []
    for index, truth in enumerate(truths):
        relative = (truth - truth.min()) / (truth.max() - truth.min())
        if index in (3, 4, 6):
            relative[150:250, 150:250] = 1 - relative[150:250, 150:250]
        relative = relative * rng.uniform(0.6, 1.0) + rng.uniform(0, 0.2) + rng.normal(0, 0.01, relative.shape)
        predictions.append(np.clip(relative, 0, 1).astype(np.float32))
    return np.stack(predictions)


def test_a_steady_sequence_flickers_far_less_and_still_follows_the_scene():
    frames, truths = panning_clip()
    predictions = flickering_predictions(truths)
    valid = np.ones(truths.shape, bool)
    steady = steady_maps("depth", predictions, frames)
    before, after = depth_flicker(predictions, truths, valid), depth_flicker(steady, truths, valid)
    assert after < 0.5 * before, (before, after)
    assert np.corrcoef(steady[-1].ravel(), truths[-1].ravel())[0, 1] > 0.9  # still the scene, not a smear
    assert depth_flicker(truths, truths, valid) == pytest.approx(0, abs=1e-9)
    np.testing.assert_array_equal(steady_maps("depth", predictions, frames, strength=0), predictions)


def test_normals_turned_a_little_each_frame_are_held_steady():
    frames, truths = panning_clip()
    gradient_y, gradient_x = np.gradient(truths, axis=(1, 2))
    normals = np.stack([-gradient_x * 50, gradient_y * 50, np.ones_like(truths)], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    rng = np.random.default_rng(1)
    turned = []
    for frame_normals in normals:
        angle = rng.uniform(-0.3, 0.3)
        c, s = np.cos(angle), np.sin(angle)
        turned.append(frame_normals @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32).T)
    turned = np.stack(turned).astype(np.float32)
    steady = steady_maps("normal", turned, frames)
    assert np.allclose(np.linalg.norm(steady, axis=-1), 1, atol=1e-4)

    def swing(sequence):  # mean angle between consecutive frames' normals, beyond the truth's own change
        change = np.degrees(np.arccos(np.clip((sequence[1:] * sequence[:-1]).sum(-1), -1, 1)))
        truth_change = np.degrees(np.arccos(np.clip((normals[1:] * normals[:-1]).sum(-1), -1, 1)))
        return float(np.abs(change - truth_change).mean())
    assert swing(steady) < 0.5 * swing(turned)


def test_the_embedded_model_on_a_panning_clip_is_steadier():
    frames, _ = panning_clip()
    predictor = GenPerceptPredictor.from_pretrained(None, ["depth"], device="cpu")
    raw = predictor.predict(frames, "depth").maps
    steady = steady_maps("depth", raw, frames)

    def disagreement(depth):  # the same scene point in consecutive frames: the map shifted by the pan
        shown = normalise_depth_batch(depth, "sequence")
        return float(np.mean([np.abs(shown[i][:, :-STEP] - shown[i - 1][:, STEP:]).mean() for i in range(1, FRAMES)]))
    assert disagreement(steady) < 0.7 * disagreement(raw)


def test_a_batch_of_unrelated_photos_is_not_taken_for_a_shot():
    frames, _ = panning_clip()
    assert looks_like_one_shot(frames)
    rng = np.random.default_rng(0)
    assert not looks_like_one_shot(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))
    assert not looks_like_one_shot(frames[:1])


def test_bad_sequences_are_refused_with_the_reason():
    frames, truths = panning_clip()
    with pytest.raises(GenPerceptError, match="8 maps for 3 frames"):
        steady_maps("depth", truths, frames[:3])
    with pytest.raises(GenPerceptError, match="below 1"):
        steady_maps("depth", truths, frames, strength=1)
    with pytest.raises(GenPerceptError, match="colour codes"):
        steady_maps("seg", truths, frames)
