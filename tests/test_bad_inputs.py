"""Bad inputs through the command line and the Python API: one clear line, nothing half-written, nothing silent."""

import errno
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from genpercept_bundle import GenPerceptError, GenPerceptPredictor, load_image
from genpercept_bundle.atomic_files import atomic_path
from genpercept_bundle.cli import main
from genpercept_bundle.models import embedding
from genpercept_bundle.models.folders import WEIGHTS_NAME


def run(*args):
    return main([str(a) for a in args])


def only_error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genpercept: error:"), lines
    return lines[0]


@pytest.mark.parametrize("case", ["file", "inside_a_file"])
def test_an_unusable_output_folder_fails_before_the_model_loads(photo, tmp_path, capsys, case):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    out = blocker if case == "file" else blocker / "maps"
    # a model that does not exist: the output folder must be refused first
    assert run("predict", photo, "--out", out, "--model", tmp_path / "no-such-model") == 2
    assert "is a file; choose a folder" in only_error_line(capsys)


def test_a_full_disk_stops_the_run_with_a_message_and_no_partial_file(tiny_model, photo, tmp_path, capsys,
                                                                       monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", no_space)
    out = tmp_path / "out"
    assert run("predict", photo, "--model", tiny_model, "--out", out, "--format", "npy", "--task", "depth",
               "--processing-res", 32) == 2
    line = only_error_line(capsys)
    assert "could not write" in line and "No space left on device" in line and "free some disk space" in line
    assert not list(out.iterdir())


def test_atomic_writes_turn_os_errors_into_messages(tmp_path):
    with pytest.raises(GenPerceptError, match="could not write .*map.npy"):
        with atomic_path(tmp_path / "map.npy") as temp:
            temp.write_bytes(b"half")
            raise OSError(errno.EIO, "Input/output error")
    assert list(tmp_path.iterdir()) == []


def test_weights_with_nan_are_refused_at_load(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "nan-model")
    weights = model / "unet_depth_v2" / WEIGHTS_NAME
    state = load_file(weights)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, weights)
    with pytest.raises(GenPerceptError, match=f"hold NaN or infinite values \\({name}\\).*re-download"):
        GenPerceptPredictor.from_pretrained(model, ["depth"], device="cpu")


def test_a_non_finite_prediction_is_an_error_not_a_file(tiny_model, photo, tmp_path, capsys):
    predictor = GenPerceptPredictor.from_pretrained(tiny_model, ["depth"], device="cpu")
    handle = predictor.vae.decoder.register_forward_hook(lambda module, args, output: output * float("inf"))
    try:
        with pytest.raises(GenPerceptError, match="produced NaN or infinite values"):
            predictor.predict(load_image(photo), "depth", processing_res=32)
    finally:
        handle.remove()


def test_photos_over_the_pixel_cap_are_skipped_with_the_way_out(tiny_model, photo, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.new("L", (120, 100)).save(big)
    bomb = tmp_path / "bomb.png"
    Image.new("L", (400, 400)).save(bomb)  # more than twice the cap: Pillow's own limit fires first
    out = tmp_path / "out"
    assert run("predict", photo, big, bomb, "--model", tiny_model, "--out", out, "--task", "depth",
               "--processing-res", 32, "--max-pixels", 10_000) == 1
    err = capsys.readouterr().err
    assert "big.png is 120x100, 12,000 pixels, more than the 10,000 this run reads" in err
    assert "--max-pixels 12000" in err
    assert "bomb.png has more than twice" in err and "1 of 3 images" not in err and "2 of 3 images" in err
    assert (out / "photo_depth.png").is_file()


@pytest.mark.parametrize("shape,message", [((0, 0, 3), "0x0 pixels"), ((1, 1, 3), "at least 8x8"),
                                           ((5, 40, 3), "40x5 pixels")])
def test_tiny_and_empty_images_are_refused(tiny_predictor, shape, message):
    with pytest.raises(GenPerceptError, match=message):
        tiny_predictor.predict(np.zeros(shape, np.uint8), "depth")


def test_a_shard_index_cannot_reach_outside_the_model(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "sharded")
    unet = model / "unet_depth_v2"
    (unet / WEIGHTS_NAME).rename(tmp_path / "outside.safetensors")
    names = list(load_file(tmp_path / "outside.safetensors"))
    index = {"weight_map": {name: "../../outside.safetensors" for name in names}}
    (unet / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(GenPerceptError, match="names '../../outside.safetensors', outside the model folder"):
        GenPerceptPredictor.from_pretrained(model, ["depth"], device="cpu")


def test_the_official_embedding_is_pinned_and_checked(tmp_path, monkeypatch):
    assert embedding.OFFICIAL_COMMIT in embedding.OFFICIAL_NPY_URL and "/main/" not in embedding.OFFICIAL_NPY_URL

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b"something else"

    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: Response())
    with pytest.raises(GenPerceptError, match="sha256 mismatch.*nothing was written"):
        embedding.download_official_npy(tmp_path / "empty_text_embed.npy")
    assert list(tmp_path.iterdir()) == []


def test_interrupting_stops_inside_one_image(tiny_predictor, photo):
    calls = []

    def check_interrupt():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_predictor.predict(load_image(photo), "depth", processing_res=64, check_interrupt=check_interrupt)
    assert len(calls) == 3  # stopped inside the VAE encoder, before the UNet ran
    tiny_predictor.predict(load_image(photo), "depth", processing_res=64)  # the hooks are gone again
    assert len(calls) == 3


def test_a_really_full_disk(tiny_model, photo, tmp_path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode:
        pytest.skip("mounting a small tmpfs is not permitted here")
    try:
        assert run("predict", photo, "--model", tiny_model, "--out", small / "out", "--format", "npy",
                   "--processing-res", 32) == 2
        line = only_error_line(capsys)
        assert "could not write" in line and "free some disk space" in line
        assert not list((small / "out").glob(".partial-*"))
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_a_model_that_gives_non_finite_values_is_refused_at_load(tiny_model):
    predictor = GenPerceptPredictor.from_pretrained(tiny_model, [], device="cpu")
    predictor.vae.decoder.register_forward_hook(lambda module, args, output: output * float("inf"))
    with pytest.raises(GenPerceptError, match="depth model of .* gives NaN or infinite values on a test image"):
        predictor.load_task("depth")
    assert predictor.loaded_tasks == []
