"""The synthetic generator and the dataset layout."""

import json

import numpy as np
import pytest

from genpercept_bundle import GenPerceptError
from genpercept_bundle.data.dataset import Sample, generate_dataset, read_sample, read_settings, sample_ids, write_sample
from genpercept_bundle.data.synthetic import random_scene, render


@pytest.fixture(scope="module")
def frames():
    return [render(random_scene(seed), height=48, width=64) for seed in range(6)]


def test_render_is_deterministic():
    first, second = render(random_scene(3), 48, 64), render(random_scene(3), 48, 64)
    for key in ("rgb", "depth", "normal", "alpha"):
        assert np.array_equal(first[key], second[key])


def test_ground_truth_is_consistent(frames):
    for frame in frames:
        valid = frame["depth"] > 0
        assert valid.mean() > 0.5 and frame["depth"][valid].min() > 0.05
        lengths = np.linalg.norm(frame["normal"], axis=-1)
        np.testing.assert_allclose(lengths[valid], 1.0, atol=1e-4)
        assert np.all(lengths[~valid] == 0)
        # normals face the camera: +Z toward the viewer, the camera looks down -Z
        k = frame["intrinsics"]
        u, v = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
        rays = np.stack([(u - k["cx"]) / k["fx"], -(v - k["cy"]) / k["fy"], -np.ones_like(u)], axis=-1)
        assert np.all(np.einsum("hwc,hwc->hw", frame["normal"], rays)[valid] <= 1e-6)
        assert frame["alpha"].min() >= 0 and frame["alpha"].max() <= 1


def test_scenes_have_soft_mattes_and_floors_facing_up():
    soft, up = 0, 0
    for seed in range(12):
        frame = render(random_scene(seed), 96, 128)
        soft += ((frame["alpha"] > 0.05) & (frame["alpha"] < 0.95)).sum()
        up += (frame["normal"][..., 1] > 0.99).sum()  # floors / ground
    assert soft > 100 and up > 1000


def test_sample_round_trip(tmp_path, frames):
    frame = frames[0]
    sample = Sample("a", frame["rgb"], frame["depth"], normal=frame["normal"], alpha=frame["alpha"],
                    intrinsics=frame["intrinsics"])
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "genpercept-dataset", "zero_depth": "sky"}))
    write_sample(tmp_path, "train", sample)
    loaded = read_sample(tmp_path, "train", "a")
    assert np.array_equal(loaded.rgb, frame["rgb"])
    np.testing.assert_allclose(loaded.depth, frame["depth"], atol=0.5e-3)
    assert np.array_equal(loaded.sky, frame["depth"] == 0)
    valid = frame["depth"] > 0
    np.testing.assert_allclose(loaded.normal[valid], frame["normal"][valid], atol=1e-4)
    np.testing.assert_allclose(loaded.alpha, frame["alpha"], atol=1e-4)
    assert loaded.intrinsics["fx"] == pytest.approx(frame["intrinsics"]["fx"])


def test_generate_dataset_splits_and_resume(tmp_path):
    root = generate_dataset(tmp_path / "data", {"train": 3, "test": 2}, seed=1, size=(32, 24))
    assert len(sample_ids(root, "train")) == 3 and len(sample_ids(root, "test")) == 2
    assert not set(sample_ids(root, "train")) & set(sample_ids(root, "test"))
    assert read_settings(root)["zero_depth"] == "sky"
    before = (root / "train" / f"{sample_ids(root, 'train')[0]}_rgb.png").stat().st_mtime_ns
    generate_dataset(tmp_path / "data", {"train": 3, "test": 2}, seed=1, size=(32, 24))
    assert (root / "train" / f"{sample_ids(root, 'train')[0]}_rgb.png").stat().st_mtime_ns == before


def test_test_split_keeps_its_seeds_when_the_training_split_grows(tmp_path):
    grown = generate_dataset(tmp_path / "grown", {"train": 2, "test": 2}, seed=1, size=(32, 24))
    generate_dataset(grown, {"train": 4, "test": 2}, seed=1, size=(32, 24))  # the same folder, two more scenes
    other = generate_dataset(tmp_path / "other", {"train": 3, "test": 2}, seed=1, size=(32, 24))
    assert sample_ids(grown, "test") == sample_ids(other, "test") == ["1100000", "1100001"]
    assert sample_ids(grown, "train") == ["1000000", "1000001", "1000002", "1000003"]
    assert (grown / "test" / "1100000_rgb.png").read_bytes() == (other / "test" / "1100000_rgb.png").read_bytes()
    assert read_settings(grown)["first_seeds"] == {"train": 1_000_000, "test": 1_100_000}


def test_resuming_with_other_seeds_or_size_is_refused_and_changes_nothing(tmp_path):
    root = generate_dataset(tmp_path / "data", {"train": 2, "test": 1}, seed=0, size=(32, 24))
    # a folder from before the seed blocks: its test split came right after the training split
    old_layout = {**read_settings(root), "splits": {"train": 2, "test": 1}}
    del old_layout["first_seeds"]
    (root / "dataset.json").write_text(json.dumps(old_layout))
    files = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(GenPerceptError, match="test split starts at seed 100000.*new folder"):
        generate_dataset(root, {"train": 2, "test": 1}, seed=0, size=(32, 24))
    with pytest.raises(GenPerceptError, match="holds 32x24 scenes.*--size 32x24"):
        generate_dataset(root, {"train": 2}, seed=0, size=(64, 48))
    assert sorted(p.name for p in root.rglob("*")) == files
    assert json.loads((root / "dataset.json").read_text()) == old_layout


def test_not_a_dataset(tmp_path):
    with pytest.raises(GenPerceptError, match="no dataset.json"):
        read_settings(tmp_path)


def test_subjects_are_in_view_and_their_distance_shows_in_their_size():
    # A subject's size is metric, so a farther one looks smaller; when its size grew with
    # its distance, the photo could not tell how far it was.
    distances, apparent_sizes = [], []
    for seed in range(40):
        scene = random_scene(seed)
        if not any(shape.hero for shape in scene["shapes"]):
            continue
        frame = render(scene, 96, 128)
        subject = frame["alpha"] > 0.5
        assert subject.mean() > 0.003, f"seed {seed}: the subject is hidden or out of frame"
        distances.append(np.median(frame["depth"][subject]))
        apparent_sizes.append(np.sqrt(subject.sum()) / frame["intrinsics"]["fx"])
    assert len(distances) >= 25
    rank_correlation = np.corrcoef(np.argsort(np.argsort(distances)), np.argsort(np.argsort(apparent_sizes)))[0, 1]
    assert rank_correlation < -0.4
