"""The task registry: every behaviour a task has comes from its entry; `dis` works end to end from it."""

import json

import numpy as np
import pytest

from genpercept_bundle import GenPerceptError
from genpercept_bundle.cli import main
from genpercept_bundle.data.dataset import generate_dataset, sample_ids
from genpercept_bundle.map_files import read_map, to_uint16, write_image
from genpercept_bundle.models.architectures import write_random_checkpoint
from genpercept_bundle.tasks import TASKS, get_task, task_with_truth
from genpercept_bundle.training.config import TrainConfig
from genpercept_bundle.training.unet import train_unet


def test_every_entry_is_complete():
    for task in TASKS.values():
        assert task.channels in (1, 3) and task.mirror in ("map", "normal", None)
        if task.truth is not None:  # trainable and scored: all of the behaviour is named
            assert task.target and task.loss and task.metrics
    assert get_task("Normals").name == "normal" and get_task("alpha").name == "matte"


@pytest.mark.parametrize("name", ["disparity", "seg"])
def test_tasks_without_ground_truth_are_refused_for_training_and_evaluation(name):
    for purpose in ("train", "evaluate"):
        with pytest.raises(GenPerceptError, match=f"cannot {purpose} {name}: .* ground truth: depth, normal, matte, dis"):
            task_with_truth(name, purpose)


@pytest.fixture(scope="module")
def mask_data(tmp_path_factory):
    """A small dataset whose scenes also have object masks (<id>_mask.png: the hero subject's alpha > 0.5)."""
    data = generate_dataset(tmp_path_factory.mktemp("data"), {"train": 4, "test": 2}, seed=3, size=(64, 48))
    for split in ("train", "test"):
        for sample_id in sample_ids(data, split):
            alpha = read_map(data / split / f"{sample_id}_alpha.png")
            write_image(data / split / f"{sample_id}_mask.png", to_uint16((alpha > 0.5).astype(np.float32)))
    return data


def test_dis_predicts_saves_evaluates_and_trains(mask_data, tmp_path):
    model = write_random_checkpoint(tmp_path / "model", tasks=["dis"])
    photo = next((mask_data / "test").glob("*_rgb.png"))
    out = tmp_path / "out"
    assert main(["predict", str(photo), "--model", str(model), "--task", "dis", "--processing-res", "64",
                 "--format", "npy", "--out", str(out)]) == 0
    mask = read_map(out / f"{photo.stem}_dis.npy", "dis")
    assert mask.shape == (48, 64) and 0 <= mask.min() <= mask.max() <= 1
    assert (out / f"{photo.stem}_dis_preview.png").is_file()

    report = tmp_path / "scores.json"
    assert main(["eval", str(mask_data), "--model", str(model), "--task", "dis", "--processing-res", "64",
                 "--json", str(report)]) == 0
    scores = json.loads(report.read_text())["results"]["dis"]
    assert scores["samples"] == 2 and 0 <= scores["mae"] <= 1 and 0 <= scores["iou"] <= 1

    config = TrainConfig(steps=3, batch_size=2, lr=1e-3, warmup=1, width=64, height=48, checkpoint_every=3)
    trained = train_unet(mask_data, "dis", model / "vae", tmp_path / "run", config, architecture="tiny",
                         embedding_model=model, log=lambda _: None)
    assert trained.name == "unet_dis_v2" and (trained / "diffusion_pytorch_model.safetensors").is_file()


def test_evaluating_a_task_without_ground_truth_is_a_usage_error(mask_data, tmp_path, capsys):
    assert main(["eval", str(mask_data), "--task", "disparity"]) == 2
    assert "cannot evaluate disparity" in capsys.readouterr().err
