"""`genpercept train` on two processes (accelerate, gloo on the CPU) follows the one-process run, and resumes."""

import json
import subprocess
import sys

import pytest

from genpercept_bundle.data.dataset import generate_dataset
from genpercept_bundle.models.architectures import write_random_checkpoint

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    data = generate_dataset(root / "data", {"train": 8, "test": 2}, seed=5, size=(64, 48))
    base = write_random_checkpoint(root / "base", tasks=[], architecture="small")
    return data, base


def train(data, base, out, steps, processes):
    command = ["train", data, "--task", "depth", "--vae", base / "vae", "--out", out, "--steps", steps,
               "--latent-steps", 6, "--batch-size", 4, "--size", "64x48", "--lr", "1e-3", "--warmup", 2,
               "--checkpoint-every", 4]
    launcher = [sys.executable, "-m", "genpercept_bundle.cli"]
    if processes > 1:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m", "genpercept_bundle.cli"]
    result = subprocess.run(launcher + [str(a) for a in command], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "checkpoint" / "depth" / "state.json").read_text())


def test_two_processes_follow_one_and_resume(setup, tmp_path):
    data, base = setup
    one = train(data, base, tmp_path / "one", 8, processes=1)
    two = train(data, base, tmp_path / "two", 8, processes=2)
    assert (one["processes"], two["processes"]) == (1, 2) and len(two["history"]) == 8
    # the same effective batch: 6 latent-stage and 2 pixel-stage steps agree to floating-point noise
    # (measured: at most 2e-5 relative)
    assert two["history"] == pytest.approx(one["history"], rel=1e-4)
    # a restart continues from the checkpoint on both sides, as one run would
    one, two = train(data, base, tmp_path / "one", 12, processes=1), train(data, base, tmp_path / "two", 12, processes=2)
    assert len(two["history"]) == 12 and two["step"] == 12
    assert two["history"] == pytest.approx(one["history"], rel=1e-4)
    assert (tmp_path / "two" / "unet_depth_v2" / "diffusion_pytorch_model.safetensors").is_file()


def test_the_vae_trainer_refuses_several_processes(setup, tmp_path):
    data, _ = setup
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "genpercept_bundle.cli", "train-vae",
               str(data), "--out", str(tmp_path / "vae"), "--steps", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "train-vae runs in one process" in result.stderr
