"""Mixing datasets into one training folder: every scene readable under a distinct id, repeats, refusals."""

import json

import numpy as np
import pytest

from genpercept_bundle import GenPerceptError
from genpercept_bundle.cli import main
from genpercept_bundle.data.dataset import generate_dataset, read_sample, sample_ids
from genpercept_bundle.data.mixing import MixSource, mix_datasets


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    small = generate_dataset(root / "small", {"train": 2}, seed=0, size=(32, 24))
    large = generate_dataset(root / "large", {"train": 5}, seed=1, size=(32, 24))
    return small, large


def test_scenes_of_both_sets_under_distinct_ids_the_small_one_repeated(tmp_path, two_sets):
    small, large = two_sets
    out = mix_datasets(tmp_path / "mix", [MixSource(small, repeat=3), MixSource(large)])
    ids = sample_ids(out, "train")
    assert len(ids) == 2 * 3 + 5 and len(set(ids)) == len(ids)
    original = read_sample(small, "train", sample_ids(small, "train")[1])
    for copy in range(3):
        linked = read_sample(out, "train", f"s0-{copy}-{original.id}")
        assert np.array_equal(linked.rgb, original.rgb) and np.array_equal(linked.depth, original.depth)
    settings = json.loads((out / "dataset.json").read_text())
    assert [(s["repeat"], s["scenes"]) for s in settings["mixed_from"]] == [(3, 6), (1, 5)]


def test_remixing_replaces_the_split(tmp_path, two_sets):
    small, large = two_sets
    mix_datasets(tmp_path / "mix", [MixSource(small, repeat=3), MixSource(large)])
    assert main(["mix-data", str(tmp_path / "mix"), f"{small}:train:x2"]) == 0
    assert len(sample_ids(tmp_path / "mix", "train")) == 4


def test_sets_whose_depth_means_differ_are_refused(tmp_path, two_sets):
    small, large = two_sets
    other = tmp_path / "other"
    (other / "train").mkdir(parents=True)
    for file in (small / "train").iterdir():
        (other / "train" / file.name).write_bytes(file.read_bytes())
    settings = json.loads((small / "dataset.json").read_text())
    (other / "dataset.json").write_text(json.dumps({**settings, "depth_scale": 256}))
    with pytest.raises(GenPerceptError, match="depth_scale"):
        mix_datasets(tmp_path / "mix", [MixSource(small), MixSource(other)])
    with pytest.raises(GenPerceptError, match="no split 'val'"):
        mix_datasets(tmp_path / "mix", [MixSource(small, "val")])


def test_source_syntax():
    assert MixSource.parse("cache/photographic:train:x4") == MixSource(MixSource.parse("cache/photographic").folder,
                                                                        "train", 4)
    assert MixSource.parse("data:test").split == "test"
