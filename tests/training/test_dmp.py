"""Training a DMP LoRA (genpercept train --method dmp): the v-prediction loss of the interpolation goes down, the
checkpoint is written in DMP's released key format and runs through the DMP method on its base."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genpercept_bundle import GenPerceptPredictor
from genpercept_bundle.cli import main
from genpercept_bundle.data.dataset import generate_dataset
from genpercept_bundle.models.architectures import write_random_dmp


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), {"train": 6, "test": 2}, seed=5, size=(64, 48))


def test_a_trained_lora_is_a_dmp_checkpoint(data, tmp_path):
    _, base = write_random_dmp(tmp_path / "unused", tmp_path / "sd14", "depth")
    out = tmp_path / "depth-ours-notext"
    assert main(["train", str(data), "--method", "dmp", "--task", "depth", "--base", str(base), "--out", str(out),
                 "--steps", "40", "--batch-size", "4", "--lr", "3e-3", "--warmup", "2", "--size", "64x48",
                 "--checkpoint-every", "20"]) == 0
    losses = json.loads((out / "checkpoint" / "depth_dmp" / "state.json").read_text())["history"]
    assert np.mean(losses[-8:]) < 0.9 * np.mean(losses[:8])
    weights = load_file(out / "pytorch_lora_weights.safetensors")
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight" in weights
    assert all(w.shape[0] == 4 for k, w in weights.items() if k.endswith("down.weight"))  # rank 4
    assert {k.split(".processor.")[1].split("_lora")[0] for k in weights} == {"to_q", "to_k", "to_v", "to_out"}

    trained = GenPerceptPredictor.from_pretrained(out, None, device="cpu", base=base)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    depth = trained.predict(rgb, "depth", processing_res=0).maps
    untrained_folder = tmp_path / "depth-zero-notext"
    untrained_folder.mkdir()
    from safetensors.torch import save_file

    save_file({k: torch.zeros_like(v) for k, v in weights.items()}, untrained_folder / "pytorch_lora_weights.safetensors")
    plain = GenPerceptPredictor.from_pretrained(untrained_folder, None, device="cpu", base=base)
    assert np.abs(depth - plain.predict(rgb, "depth", processing_res=0).maps).max() > 1e-3  # the LoRA acts


def test_dmp_training_needs_its_base(data, tmp_path, capsys):
    assert main(["train", str(data), "--method", "dmp", "--task", "depth", "--out", str(tmp_path / "x")]) != 0
    assert "pass --base" in capsys.readouterr().err
