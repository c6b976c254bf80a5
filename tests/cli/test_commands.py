"""The genpercept command: files in, maps out, clear one-line errors, nothing half-written."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genpercept_bundle.choices import MODEL_DEFAULT, NATIVE, processing_resolution_choice
from genpercept_bundle.cli import build_parser, main
from genpercept_bundle.map_files import read_map


def run(*args):
    return main([str(a) for a in args])


def test_npy_outputs_have_documented_shapes(tiny_model, photo, tmp_path):
    out = tmp_path / "out"
    assert run("predict", photo, "--model", tiny_model, "--out", out, "--format", "npy", "--processing-res", 64) == 0
    depth, normal, matte = (np.load(out / f"photo_{t}.npy") for t in ("depth", "normal", "matte"))
    assert depth.shape == (45, 61) and matte.shape == (45, 61) and normal.shape == (45, 61, 3)
    assert depth.dtype == np.float32 and 0 <= depth.min() and depth.max() <= 1
    np.testing.assert_allclose(np.linalg.norm(normal, axis=-1), 1.0, atol=1e-5)
    meta = json.loads((out / "photo_depth.json").read_text())
    assert meta["processing_res"] == 64 and meta["dtype"] == "float32" and len(meta["unet_sha256"]) == 64
    assert meta["meaning"] == "relative depth, 0 = near, 1 = far"
    for name in ("photo_depth_preview.png", "photo_depth_controlnet.png", "photo_normal_preview.png", "photo_matte_preview.png"):
        assert Image.open(out / name).size == (61, 45)
    controlnet = np.asarray(Image.open(out / "photo_depth_controlnet.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(controlnet, 1 - depth, atol=1 / 255)  # near = bright
    assert "genpercept" in Image.open(out / "photo_depth_preview.png").text


@pytest.mark.parametrize("format", ["png16", "exr"])
def test_png16_and_exr_round_trip(tiny_model, photo, tmp_path, format):
    out = tmp_path / format
    assert run("predict", photo, "--model", tiny_model, "--out", out, "--format", format, "--processing-res", 64,
               "--task", "depth", "normal") == 0
    assert run("predict", photo, "--model", tiny_model, "--out", out / "npy", "--format", "npy", "--processing-res", 64,
               "--task", "depth", "normal") == 0
    suffix = ".png" if format == "png16" else ".exr"
    depth = read_map(out / f"photo_depth{suffix}")
    normal = read_map(out / f"photo_normal{suffix}")
    reference_depth = np.load(out / "npy" / "photo_depth.npy")
    reference_normal = np.load(out / "npy" / "photo_normal.npy")
    tolerance = 1 / 65535 if format == "png16" else 0
    np.testing.assert_allclose(depth, reference_depth, atol=tolerance + 1e-7)
    if format == "png16":  # colour-encoded, OpenGL: R = X, G = Y, B = Z
        np.testing.assert_allclose(normal * 2 - 1, reference_normal, atol=3 / 65535)
    else:
        np.testing.assert_allclose(normal, reference_normal, atol=1e-7)


def test_directx_flips_green_only(tiny_model, photo, tmp_path):
    for convention in ("opengl", "directx"):
        assert run("predict", photo, "--model", tiny_model, "--out", tmp_path / convention, "--task", "normal",
                   "--processing-res", 64, "--normal-convention", convention) == 0
    gl, dx = read_map(tmp_path / "opengl" / "photo_normal.png"), read_map(tmp_path / "directx" / "photo_normal.png")
    np.testing.assert_allclose(dx[..., 1], 1 - gl[..., 1], atol=2 / 65535)
    np.testing.assert_array_equal(dx[..., [0, 2]], gl[..., [0, 2]])


def test_raw_writes_network_output(tiny_model, photo, tmp_path):
    assert run("predict", photo, "--model", tiny_model, "--out", tmp_path, "--task", "normal", "--format", "npy",
               "--processing-res", 64, "--raw") == 0
    raw = np.load(tmp_path / "photo_normal.npy")
    assert raw.min() >= 0 and raw.max() <= 1
    assert not np.allclose(np.linalg.norm(raw * 2 - 1, axis=-1), 1.0, atol=1e-3)  # not renormalised


def test_flip_average_option_reaches_the_predictor(tiny_model, photo, tmp_path):
    for choice in ("auto", "on"):
        assert run("predict", photo, "--model", tiny_model, "--out", tmp_path / choice, "--task", "depth",
                   "--format", "npy", "--processing-res", 64, "--flip-average", choice) == 0
    meta = {c: json.loads((tmp_path / c / "photo_depth.json").read_text()) for c in ("auto", "on")}
    assert meta["auto"]["flip_average"] is False and meta["on"]["flip_average"] is True  # released layout: off
    assert not np.array_equal(np.load(tmp_path / "auto" / "photo_depth.npy"), np.load(tmp_path / "on" / "photo_depth.npy"))


def test_folder_and_glob_inputs(tiny_model, photo, tmp_path):
    shutil.copy(photo, tmp_path / "second.jpg")
    out = tmp_path / "out"
    assert run("predict", tmp_path, "--model", tiny_model, "--out", out, "--task", "matte", "--processing-res", 32,
               "--no-preview") == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo_matte.json", "photo_matte.png", "second_matte.json", "second_matte.png"]


def test_bad_image_among_good_ones(tiny_model, photo, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    assert run("predict", photo, bad, "--model", tiny_model, "--out", out, "--task", "depth", "--processing-res", 32) == 1
    err = capsys.readouterr().err
    assert "cannot read" in err and "broken.jpg" in err and "1 of 2 images could not be read" in err
    assert (out / "photo_depth.png").is_file() and not list(out.glob("broken*"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize("case,pattern", [
    ("missing_input", "does not exist"),
    ("pickle_model", "pickle checkpoint, which is never loaded"),
    ("wrong_layout", "is not a model folder"),
    ("no_embedding", "no empty-text embedding"),
    ("same_stem", "would write the same output names"),
    ("bad_task", "unknown task 'albedo'"),
])
def test_bad_input_exits_nonzero_with_one_line(tiny_model, photo, tmp_path, capsys, case, pattern):
    model, inputs, task = tiny_model, [photo], "depth"
    if case == "missing_input":
        inputs = [tmp_path / "nope.png"]
    elif case == "pickle_model":
        model = tmp_path / "model.bin"
        model.write_bytes(b"\x80\x04K\x01.")
    elif case == "wrong_layout":
        model = tmp_path
    elif case == "no_embedding":
        model = shutil.copytree(tiny_model, tmp_path / "m")
        (model / "empty_text_embed.safetensors").unlink()
    elif case == "same_stem":
        (tmp_path / "other").mkdir()
        inputs = [photo, shutil.copy(photo, tmp_path / "other" / photo.name)]
    elif case == "bad_task":
        task = "albedo"
    out = tmp_path / "out"
    assert run("predict", *inputs, "--model", model, "--out", out, "--task", task) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genpercept: error:") and pattern in err[0]
    assert not out.exists()


def test_console_script_runs_in_a_subprocess(tiny_model, photo, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "genpercept")
    result = subprocess.run([exe, "predict", photo, "--model", tiny_model, "--out", tmp_path / "o", "--task", "depth",
                             "--processing-res", "32"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "photo_depth.png").is_file()
    bad = subprocess.run([exe, "predict", tmp_path / "none.png", "--model", tiny_model], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_train_command_passes_the_schedule_options_through(tmp_path, capsys):
    from genpercept_bundle.models.architectures import write_random_checkpoint
    from genpercept_bundle.data.dataset import generate_dataset

    data = generate_dataset(tmp_path / "data", {"train": 4, "test": 1}, seed=3, size=(64, 48))
    model = write_random_checkpoint(tmp_path / "model", tasks=[], architecture="small")
    assert run("train", data, "--task", "matte", "--vae", model / "vae", "--out", model, "--steps", 3, "--lr", 1e-3,
               "--warmup", 1, "--size", "64x48", "--final-lr-fraction", 0.05, "--ema-decay", 0.99, "--scenes", 2,
               "--latent-steps", 2, "--augmented-copies", 1) == 0
    state = json.loads((model / "checkpoint" / "matte" / "state.json").read_text())
    assert state["step"] == 3 and len(state["history"]) == 3
    assert state["config"]["final_lr_fraction"] == 0.05 and state["config"]["ema_decay"] == 0.99
    assert state["config"]["latent_steps"] == 2 and state["config"]["augmented_copies"] == 1
    assert (model / "unet_matting_v2" / "diffusion_pytorch_model.safetensors").is_file()
    assert "2 training samples" in capsys.readouterr().out


def test_train_command_refuses_zero_scenes(tmp_path, capsys):
    from genpercept_bundle.data.dataset import generate_dataset

    data = generate_dataset(tmp_path / "data", {"train": 2, "test": 1}, seed=3, size=(32, 24))
    assert run("train-vae", data, "--out", tmp_path / "model", "--steps", 2, "--scenes", 0) == 2
    assert "at least 1 (got 0)" in capsys.readouterr().err
    assert not (tmp_path / "model" / "vae").exists()


def test_eval_writes_means_and_every_samples_metrics(tiny_model, tmp_path, capsys):
    from genpercept_bundle.data.dataset import generate_dataset, read_sample, sample_ids

    data = generate_dataset(tmp_path / "data", {"train": 0, "test": 3}, seed=5, size=(64, 48))
    report = tmp_path / "eval.json"
    assert run("eval", data, "--model", tiny_model, "--task", "depth", "--baselines", "--processing-res", 64,
               "--json", report) == 0
    written = json.loads(report.read_text())
    ids = sample_ids(data, "test")
    assert set(written["per_sample"]) == {"depth", "depth_constant", "depth_vertical_gradient"}
    for name, per_sample in written["per_sample"].items():
        assert list(per_sample) == ids
        mean = np.mean([row["abs_rel"] for row in per_sample.values()])
        assert written["results"][name]["abs_rel"] == pytest.approx(mean)
        assert written["results"][name]["samples"] == 3
    depth = read_sample(data, "test", ids[0]).depth
    valid = depth[depth > 0]  # a constant aligns to the mean depth
    by_hand = np.mean(np.abs(valid.mean() - valid) / valid)
    assert written["per_sample"]["depth_constant"][ids[0]]["abs_rel"] == pytest.approx(by_hand, rel=1e-4)
    assert "depth_vertical_gradient" in capsys.readouterr().out


def test_usage_errors_come_back_before_torch_is_imported(tmp_path):
    code = ("import sys; from genpercept_bundle.cli import main; code = main(['predict', 'does-not-exist.jpg']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "input 'does-not-exist.jpg' does not exist" in result.stderr


@pytest.mark.parametrize("text,expected", [("512", 512), ("0", 0), ("native", 0), ("default", None)])
def test_processing_resolution_has_one_meaning(text, expected):
    args = build_parser().parse_args(["predict", "photo.jpg", "--processing-res", text])
    assert args.processing_res == expected
    assert processing_resolution_choice(text) == expected  # what ComfyUI's widget goes through too
    assert processing_resolution_choice(MODEL_DEFAULT) is None and processing_resolution_choice(NATIVE) == 0


def test_a_bad_processing_resolution_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["predict", "photo.jpg", "--processing-res", "-5"])
    assert exit.value.code == 2 and "processing resolution must be a positive number" in capsys.readouterr().err


def test_two_runs_into_one_folder_leave_whole_files(tiny_model, photo, tmp_path):
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "genpercept_bundle.cli", "predict", str(photo), "--model", str(tiny_model),
               "--out", str(out), "--processing-res", "32", "--format", "npy"]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0], [run.stderr.read() for run in runs]
    for task in ("depth", "normal", "matte"):
        assert np.isfinite(read_map(out / f"photo_{task}.npy", task)).all()
        assert json.loads((out / f"photo_{task}.json").read_text())["task"] == task
    assert not list(out.glob(".partial-*"))
