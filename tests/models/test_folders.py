"""Loading model folders in the released layout: strict, safetensors-only, with errors a user can act on."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from genpercept_bundle import GenPerceptError, GenPerceptPredictor
from genpercept_bundle.models.architectures import write_random_checkpoint
from genpercept_bundle.models.folders import WEIGHTS_NAME, open_model_folder


def copy_model(tiny_model, tmp_path):
    return shutil.copytree(tiny_model, tmp_path / "model", symlinks=True)


def test_released_layout_loads_with_every_task(tiny_model):
    predictor = GenPerceptPredictor.from_pretrained(tiny_model, tasks=["depth", "normal", "matting"], device="cpu")
    assert set(predictor.tasks) == {"depth", "normal", "matte"}
    # fp16 VAE as released, upcast to the fp32 default
    assert load_file(tiny_model / "vae" / WEIGHTS_NAME)["encoder.conv_in.weight"].dtype == torch.float16
    assert next(predictor.vae.parameters()).dtype == torch.float32
    assert [predictor.processing_resolution(task) for task in predictor.tasks] == [768, 768, 768]


def test_single_task_repo_layout(tmp_path):
    """guangkaixu/genpercept-depth: unet_depth_v2/ + vae/ + model_index.json only."""
    model = write_random_checkpoint(tmp_path / "genpercept-depth", tasks=["depth"])
    predictor = GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")
    assert predictor.tasks == ["depth"]
    with pytest.raises(GenPerceptError, match="no normal UNet: expected a folder unet_normal_v2"):
        predictor.load_task("normal")


def test_sharded_weights_load(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path)
    state = load_file(model / "unet_depth_v2" / WEIGHTS_NAME)
    names = sorted(state)
    halves = {"part-1.safetensors": names[: len(names) // 2], "part-2.safetensors": names[len(names) // 2:]}
    for file, keys in halves.items():
        save_file({k: state[k] for k in keys}, model / "unet_depth_v2" / file)
    (model / "unet_depth_v2" / WEIGHTS_NAME).unlink()
    index = {"weight_map": {k: file for file, keys in halves.items() for k in keys}}
    (model / "unet_depth_v2" / f"{WEIGHTS_NAME}.index.json").write_text(json.dumps(index))
    unet = GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu").load_task("depth").unet
    assert torch.equal(unet.conv_in.weight, state["conv_in.weight"])


def test_pickle_weights_are_refused(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path)
    unet_dir = model / "unet_depth_v2"
    (unet_dir / WEIGHTS_NAME).unlink()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(type("Evil", (), {"__reduce__": lambda self: (marker.touch, ())})())
    (unet_dir / "diffusion_pytorch_model.bin").write_bytes(payload)
    with pytest.raises(GenPerceptError, match="only pickle weights .* never loaded"):
        GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")
    assert not marker.exists()


def test_pickle_file_as_model_is_refused(tmp_path):
    ckpt = tmp_path / "genpercept.ckpt"
    torch.save({"a": torch.zeros(1)}, ckpt)
    with pytest.raises(GenPerceptError, match="pickle checkpoint, which is never loaded"):
        open_model_folder(ckpt)


def test_renamed_pickle_is_not_a_safetensors_file(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path)
    torch.save({"a": torch.zeros(1)}, model / "unet_depth_v2" / WEIGHTS_NAME)
    with pytest.raises(GenPerceptError, match="not a valid safetensors file"):
        GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")


def test_strict_loading_names_the_mismatch(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path)
    state = load_file(model / "unet_depth_v2" / WEIGHTS_NAME)
    del state["conv_out.weight"]  # what a DPT-head UNet looks like
    save_file(state, model / "unet_depth_v2" / WEIGHTS_NAME)
    with pytest.raises(GenPerceptError, match="do not match its config.json: .*conv_out.weight"):
        GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")


def test_eight_channel_unet_is_explained(tmp_path, tiny_model):
    model = copy_model(tiny_model, tmp_path)
    config_file = model / "unet_depth_v2" / "config.json"
    config = json.loads(config_file.read_text())
    config["in_channels"] = 8
    config_file.write_text(json.dumps(config))
    with pytest.raises(GenPerceptError, match="8 input and 4 output channels; this model family.s UNets take 4 and give 4"):
        GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")


def test_wrong_layout_names_what_is_expected(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(GenPerceptError, match="expected unet_<task>_v2/ and vae/ subfolders .* or a diffusers pipeline folder"):
        open_model_folder(tmp_path)
    with pytest.raises(GenPerceptError, match="neither an existing folder nor"):
        open_model_folder("./no/such/folder/here")


def test_hub_id_offline_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GENPERCEPT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from genpercept_bundle.tasks import get_task

    with pytest.raises(GenPerceptError) as error:
        open_model_folder("guangkaixu/genpercept-models", [get_task("depth")])
    message = str(error.value)
    assert str(tmp_path / "models" / "guangkaixu--genpercept-models") in message
    assert "unet_depth_v2/config.json + unet_depth_v2/diffusion_pytorch_model.safetensors" in message
    assert "vae/config.json + vae/diffusion_pytorch_model.safetensors" in message
    assert "unet_normal_v2" not in message  # only what the requested task needs


def test_hub_id_uses_files_already_in_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GENPERCEPT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_random_checkpoint(tmp_path / "models" / "guangkaixu--genpercept-depth", tasks=["depth"])
    predictor = GenPerceptPredictor.from_pretrained("guangkaixu/genpercept-depth", tasks=["depth"], device="cpu")
    assert predictor.model.source == "guangkaixu/genpercept-depth"


def test_float16_needs_a_gpu(tiny_model):
    with pytest.raises(GenPerceptError, match="float16 needs a GPU"):
        GenPerceptPredictor.from_pretrained(tiny_model, tasks=["depth"], device="cpu", dtype="float16")
