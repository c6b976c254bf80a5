"""Augmented copies keep photo and ground truth aligned: crops, mirrors (normal X negated) and colour changes."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from genpercept_bundle.data.augmentation import MIN_CROP, augment_sample
from genpercept_bundle.models.weights import load_model
from genpercept_bundle.data.dataset import Sample, generate_dataset
from genpercept_bundle.training.config import TrainConfig
from genpercept_bundle.training.latents import augmented_latents, encode_latents
from genpercept_bundle.training.targets import TrainingSet

HEIGHT, WIDTH = 48, 64


def labelled_sample() -> Sample:
    """Every map encodes where its pixel came from: depth = 1 + x + 1000 y, alpha = x / W, normal X = (x - W/2) / W;
    the photo is white on even columns, black on odd ones."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    normal = np.stack([(x - WIDTH / 2) / WIDTH, np.zeros_like(x), np.ones_like(x)], axis=-1)
    rgb = np.repeat(((x % 2 == 0) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    return Sample("labelled", rgb, depth=1 + x + 1000 * y, sky=np.zeros((HEIGHT, WIDTH), bool),
                  normal=normal / np.linalg.norm(normal, axis=-1, keepdims=True), alpha=x / WIDTH)


def test_copies_keep_every_map_on_its_pixel():
    original = labelled_sample()
    mirrored_copies = 0
    for seed in range(20):
        copy = augment_sample(original, np.random.default_rng(seed))
        height, width = copy.depth.shape
        assert MIN_CROP * HEIGHT - 1 <= height <= HEIGHT and abs(width / height - WIDTH / HEIGHT) < 0.1
        source_y, source_x = np.divmod(copy.depth - 1, 1000)
        mirrored = source_x[0, 0] > source_x[0, -1]
        mirrored_copies += mirrored
        assert np.all(np.diff(source_x, axis=1) == (-1 if mirrored else 1)) and np.all(np.diff(source_y, axis=0) == 1)
        np.testing.assert_allclose(copy.alpha, source_x / WIDTH, atol=1e-6)
        expected_x = original.normal[source_y.astype(int), source_x.astype(int), 0] * (-1 if mirrored else 1)
        np.testing.assert_allclose(copy.normal[..., 0], expected_x, atol=1e-6)
        brightness = copy.rgb.astype(np.float32).mean(axis=-1)
        white = source_x % 2 == 0
        assert brightness[white].min() > brightness[~white].max()  # colours change, the photo stays on its pixels
    assert 3 <= mirrored_copies <= 17


def test_copies_are_seeded_and_change_colours():
    original = labelled_sample()
    first, again = (augment_sample(original, np.random.default_rng(7)) for _ in range(2))
    assert np.array_equal(first.rgb, again.rgb) and np.array_equal(first.depth, again.depth)
    recoloured = {tuple(augment_sample(original, np.random.default_rng(seed)).rgb[0, :2, 0]) for seed in range(8)}
    assert len(recoloured) > 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), {"train": 4, "test": 1}, seed=9, size=(64, 48))


def test_augmented_latents_are_copies_of_every_scene(data, tiny_model):
    vae = load_model(AutoencoderKL, tiny_model / "vae", torch.float32, "cpu")
    config = TrainConfig(width=64, height=48, augmented_copies=2)
    photos, targets = augmented_latents(data, "depth", vae, config, scenes=4, device="cpu")
    assert photos.shape == targets.shape == (8, 4, 6, 8)
    again, _ = augmented_latents(data, "depth", vae, config, scenes=4, device="cpu")
    assert torch.equal(photos, again)
    assert not torch.allclose(photos[:4], photos[4:])  # two different copies of each scene
    plain = encode_latents(vae, TrainingSet(data, "train", ["depth"], 64, 48).rgb, "cpu")
    assert not torch.allclose(photos[:4], plain, atol=1e-3)
