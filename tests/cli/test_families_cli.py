"""The genpercept command with models of other families: a Marigold ensemble with its uncertainty map, DMP on its
base, a one-task model's task chosen without --task."""

import json

import numpy as np
import pytest

from genpercept_bundle.cli import main
from genpercept_bundle.map_files import read_map, maps_complete
from genpercept_bundle.models.architectures import write_random_dmp, write_random_pipeline


def run(*args):
    return main([str(a) for a in args])


def test_marigold_ensemble_writes_its_uncertainty_map(tmp_path, photo):
    model = write_random_pipeline(tmp_path / "marigold-depth-v1-1", "marigold", "depth")
    out = tmp_path / "out"
    assert run("predict", photo, "--model", model, "--out", out, "--format", "exr", "--processing-res", 64,
               "--steps", 2, "--ensemble-size", 3, "--seed", 5) == 0
    depth, uncertainty = read_map(out / "photo_depth.exr"), read_map(out / "photo_depth_uncertainty.exr")
    assert depth.shape == uncertainty.shape == (45, 61)
    assert 0 <= depth.min() and depth.max() <= 1 and uncertainty.min() >= 0 and uncertainty.max() > 0
    meta = json.loads((out / "photo_depth.json").read_text())
    assert meta["family"] == "marigold" and meta["ensemble_size"] == 3 and meta["seed"] == 5 and meta["steps"] == 2
    assert "photo_depth_uncertainty.exr" in meta["files"] and "median absolute deviation" in meta["uncertainty_values"]
    assert not (out / "photo_normal.json").exists()  # a depth model: its one task, without --task
    assert maps_complete(out, "photo", ["depth"])


def test_dmp_runs_on_its_base(tmp_path, photo):
    lora, base = write_random_dmp(tmp_path / "normal-scene100-notext", tmp_path / "sd14", "normal")
    out = tmp_path / "out"
    assert run("predict", photo, "--model", lora, "--base", base, "--out", out, "--format", "npy",
               "--processing-res", 64) == 0
    normals = np.load(out / "photo_normal.npy")
    assert normals.shape == (45, 61, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
    meta = json.loads((out / "photo_normal.json").read_text())
    assert meta["family"] == "dmp" and meta["steps"] == 5 and meta["lora"] == "normal-scene100-notext"


def test_dmp_without_base_is_one_line(tmp_path, photo, capsys):
    lora, _ = write_random_dmp(tmp_path / "depth-notext", tmp_path / "sd14", "depth")
    assert run("predict", photo, "--model", lora, "--out", tmp_path / "out") != 0
    assert "pass its base with --base" in capsys.readouterr().err


def test_ensemble_of_a_deterministic_model_is_refused(tmp_path, photo, tiny_model, capsys):
    assert run("predict", photo, "--model", tiny_model, "--out", tmp_path / "out", "--ensemble-size", 4) != 0
    assert "deterministic" in capsys.readouterr().err


def test_threads_reach_the_networks(tmp_path, photo, tiny_model):
    import torch

    before = torch.get_num_threads()
    try:
        assert run("predict", photo, "--model", tiny_model, "--task", "depth", "--out", tmp_path / "out",
                   "--threads", 1, "--processing-res", 64) == 0
        assert json.loads((tmp_path / "out" / "photo_depth.json").read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as refused:  # a usage error: argparse's exit code 2
        run("predict", photo, "--model", tiny_model, "--out", tmp_path / "x", "--threads", 0)
    assert refused.value.code == 2
