"""Training a DPT head on a UNet's up-block features (genpercept train --decoder dpt): the loss goes down, the
result loads as a model beside its VAE and predicts; frozen means frozen."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genpercept_bundle import GenPerceptPredictor
from genpercept_bundle.cli import main
from genpercept_bundle.data.dataset import generate_dataset
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.models.architectures import write_random_checkpoint
from genpercept_bundle.training.config import TrainConfig
from genpercept_bundle.training.dpt_head import train_dpt_head


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), {"train": 6, "test": 2}, seed=5, size=(64, 48))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model folder with a four-up-block depth UNet (what the head reads), a VAE and an embedding."""
    return write_random_checkpoint(tmp_path_factory.mktemp("model") / "model", tasks=["depth"], architecture="tiny4")


def config(**overrides):
    return TrainConfig(**{"steps": 30, "batch_size": 4, "lr": 3e-3, "warmup": 2, "width": 64, "height": 48,
                          "checkpoint_every": 15, **overrides})


def test_a_frozen_unet_head_learns_and_loads_beside_its_vae(data, model, tmp_path):
    folder = shutil.copytree(model, tmp_path / "model")
    head = train_dpt_head(data, "depth", folder / "vae", folder / "unet_depth_v2", folder, config(),
                          fusion=32, log=lambda _: None)
    losses = json.loads((folder / "checkpoint" / "depth_dpt" / "state.json").read_text())["history"]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    unet_before = load_file(model / "unet_depth_v2" / "diffusion_pytorch_model.safetensors")
    unet_after = load_file(folder / "unet_depth_dpt_head_v2" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(unet_before[name], unet_after[name]) for name in unet_after)  # frozen
    assert json.loads((head / "config.json").read_text())["output"] == "unit_range"

    shutil.rmtree(folder / "unet_depth_v2")  # the head's variant is then the depth model
    predictor = GenPerceptPredictor.from_pretrained(folder, ["depth"], device="cpu")
    depth = predictor.predict(np.full((48, 64, 3), 128, np.uint8), "depth", processing_res=0)
    assert predictor.load_task("depth").name.endswith("DPT head") and depth.provenance["head"] == "dpt_head_depth"
    assert depth.maps.shape == (1, 48, 64) and 0 <= depth.maps.min() and depth.maps.max() <= 1


def test_the_cli_trains_a_head_jointly(data, model, tmp_path):
    folder = shutil.copytree(model, tmp_path / "model")
    assert main(["train", str(data), "--task", "depth", "--decoder", "dpt", "--joint", "--head-width", "32",
                 "--vae", str(folder / "vae"), "--init", str(folder / "unet_depth_v2"), "--out", str(folder),
                 "--steps", "4", "--batch-size", "2", "--size", "64x48", "--checkpoint-every", "4"]) == 0
    before = load_file(model / "unet_depth_v2" / "diffusion_pytorch_model.safetensors")
    after = load_file(folder / "unet_depth_dpt_head_v2" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(before[name], after[name]) for name in after)  # fine-tuned with the head


def test_normals_and_missing_init_are_refused(data, model, tmp_path):
    with pytest.raises(GenPerceptError, match="one channel; normal has 3"):
        train_dpt_head(data, "normal", model / "vae", model / "unet_depth_v2", tmp_path, config())
    with pytest.raises(GenPerceptError, match="pass --init"):
        train_dpt_head(data, "depth", model / "vae", None, tmp_path, config())
