"""The one-step inference path, pinned against GenPercept's own algorithm."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from safetensors.torch import load_file

from genpercept_bundle import GenPerceptError, GenPerceptPredictor, load_image
from genpercept_bundle.models.weights import save_model

REPO = Path(__file__).resolve().parents[2]
from genpercept_bundle.models.folders import open_model_folder
from genpercept_bundle.inference.methods import to_unit_range
from genpercept_bundle.inference.processing import finish_prediction, processing_size, resize_rgb


def reference_genpercept(model_dir, rgb, processing_res, unet_folder="unet_depth_v2", channels=1):
    """GenPercept v2's pipeline written out step by step with diffusers' own loaders and the
    release's DDIM scheduler (hf_configs/scheduler_beta_1.0_1.0) -- independent of our predictor."""
    vae = AutoencoderKL.from_pretrained(model_dir / "vae", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(model_dir / unet_folder, torch_dtype=torch.float32)
    embedding = load_file(model_dir / "empty_text_embed.safetensors")["v2"]
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1.0, beta_end=1.0, beta_schedule="scaled_linear",
                              prediction_type="v_prediction", timestep_spacing="leading", steps_offset=1,
                              set_alpha_to_one=False, clip_sample=False)
    with torch.no_grad():
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        height, width = x.shape[-2:]
        factor = min(processing_res / width, processing_res / height)
        x = F.interpolate(x, size=(int(height * factor), int(width * factor)), mode="bilinear", antialias=True)
        x = x / 255.0 * 2.0 - 1.0
        mean, _ = torch.chunk(vae.quant_conv(vae.encoder(x)), 2, dim=1)
        latent = mean * 0.18215
        scheduler.set_timesteps(1)
        t = scheduler.timesteps[0]
        assert int(t) == 1
        v = unet(latent, t, encoder_hidden_states=embedding).sample
        target = scheduler.step(v, t, latent).pred_original_sample
        image = vae.decoder(vae.post_quant_conv(target / 0.18215))
        if channels == 1:
            image = image.mean(dim=1, keepdim=True)
        image = (image.clip(-1, 1) + 1) / 2
        image = F.interpolate(image, size=(height, width), mode="bilinear", antialias=True)
    out = image[0].numpy().clip(0, 1)
    return out[0] if channels == 1 else out.transpose(1, 2, 0)


@pytest.mark.parametrize("task,folder,channels", [("depth", "unet_depth_v2", 1), ("normal", "unet_normal_v2", 3)])
def test_matches_reference_pipeline(tiny_model, tiny_predictor, photo, task, folder, channels):
    rgb = load_image(photo)
    ours = tiny_predictor.predict(rgb, task, processing_res=96).raw[0]
    reference = reference_genpercept(tiny_model, rgb, 96, folder, channels)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)


def test_target_latent_is_minus_unet_output(tmp_path, tiny_model, photo):
    """A hand-built UNet whose output is the constant c everywhere: the decoded latent must be -c."""
    unet = UNet2DConditionModel.from_pretrained(tiny_model / "unet_depth_v2")
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.zero_()
        unet.conv_out.bias.copy_(torch.tensor([2.0, -1.5, 1.0, 3.0]))
    model = tmp_path / "constant"
    save_model(unet, model / "unet_depth_v2")
    for item in ("vae", "empty_text_embed.safetensors"):
        (model / item).symlink_to(tiny_model / item)
    predictor = GenPerceptPredictor(open_model_folder(model), "cpu")
    depth = predictor.predict(load_image(photo), "depth", processing_res=64).raw[0]  # processed at 47x64

    with torch.no_grad():
        latent_size = predictor.vae.encode(torch.zeros(1, 3, 47, 64)).latent_dist.mode().shape[-2:]

    def decode_constant(sign):
        latent = sign * unet.conv_out.bias.view(1, 4, 1, 1).expand(1, 4, *latent_size) / predictor.vae.config.scaling_factor
        with torch.no_grad():
            return finish_prediction(to_unit_range(predictor.vae.decode(latent).sample, 1), depth.shape)[0, 0].numpy()

    np.testing.assert_allclose(depth, decode_constant(-1), atol=1e-5)
    assert np.abs(depth - decode_constant(+1)).max() > 1e-2  # the sign is observable


def test_unet_runs_once_at_timestep_one(tiny_predictor, photo):
    calls = []
    unet = tiny_predictor.load_task("depth").unet
    handle = unet.register_forward_pre_hook(lambda module, args, kwargs: calls.append(args[1].clone()), with_kwargs=True)
    try:
        tiny_predictor.predict(load_image(photo), "depth", processing_res=64)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert calls[0].dtype == torch.long and calls[0].tolist() == [1]


@pytest.mark.parametrize("size,processing_res", [((45, 61), 64), ((45, 61), 0), ((17, 9), 40), ((64, 30), 100)])
def test_outputs_have_input_size_and_range(tiny_predictor, size, processing_res):
    rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    for task in ("depth", "matte", "normal"):
        prediction = tiny_predictor.predict(rgb, task, processing_res=processing_res)
        expected = (1, *size) if task != "normal" else (1, *size, 3)
        assert prediction.raw.shape == expected and prediction.raw.dtype == np.float32
        assert prediction.raw.min() >= 0.0 and prediction.raw.max() <= 1.0
    normals = tiny_predictor.predict(rgb, "normal", processing_res=processing_res).maps
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)


def test_deterministic_and_batch_consistent(tiny_predictor):
    rgb = np.random.default_rng(3).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    first = tiny_predictor.predict(rgb, "depth", processing_res=64, batch_size=2).raw
    second = tiny_predictor.predict(rgb, "depth", processing_res=64, batch_size=2).raw
    assert np.array_equal(first, second)
    one_by_one = tiny_predictor.predict(rgb, "depth", processing_res=64, batch_size=1).raw
    np.testing.assert_allclose(first, one_by_one, atol=1e-5)


def test_several_tasks_share_one_encoding_and_match_single_runs(tiny_predictor):
    rgb = np.random.default_rng(4).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    encodings = []
    handle = tiny_predictor.vae.encoder.register_forward_hook(lambda *args: encodings.append(1))
    try:
        together = tiny_predictor.predict_tasks(rgb, ["depth", "normal", "matte"], processing_res=64)
    finally:
        handle.remove()
    assert len(encodings) == 1
    for task, prediction in together.items():
        assert np.array_equal(prediction.raw, tiny_predictor.predict(rgb, task, processing_res=64).raw)


def test_tasks_run_at_their_own_default_processing_resolution(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "model", symlinks=True)
    (model / "genpercept_bundle.json").write_text(json.dumps(
        {"default_processing_resolution": 64, "processing_resolution_by_task": {"depth": 96}}))
    predictor = GenPerceptPredictor.from_pretrained(model, ["depth", "normal", "matte"], device="cpu")
    assert [predictor.processing_resolution(task) for task in ("depth", "normal", "matting")] == [96, 64, 64]
    rgb = np.random.default_rng(5).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    encoded_sizes = []
    handle = predictor.vae.encoder.register_forward_hook(lambda module, inputs, output: encoded_sizes.append(
        tuple(inputs[0].shape[-2:])))
    try:
        together = predictor.predict_tasks(rgb, ["depth", "normal", "matte"])
    finally:
        handle.remove()
    assert sorted(encoded_sizes) == [processing_size(40, 52, 64), processing_size(40, 52, 96)]  # one encoding each
    assert {task: p.provenance["processing_res"] for task, p in together.items()} == {"depth": 96, "normal": 64, "matte": 64}
    assert np.array_equal(together["depth"].raw, predictor.predict(rgb, "depth", processing_res=96).raw)
    assert np.array_equal(together["normal"].raw, predictor.predict(rgb, "normal", processing_res=64).raw)
    everything_at_64 = predictor.predict_tasks(rgb, ["depth", "normal"], processing_res=64)
    assert {p.provenance["processing_res"] for p in everything_at_64.values()} == {64}


def _mirror_back(raw: np.ndarray, task: str) -> np.ndarray:
    """A raw [B,H,W] / [B,H,W,3] map of a mirrored photo, mirrored back (normals: X points the other way)."""
    back = raw[:, :, ::-1].copy()
    if task == "normal":
        back[..., 0] = 1.0 - back[..., 0]
    return back


@pytest.mark.parametrize("task", ["depth", "normal", "matte"])
def test_flip_average_is_the_mean_with_the_mirrored_photo(tiny_predictor, task):
    rgb = np.random.default_rng(5).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    averaged = tiny_predictor.predict(rgb, task, processing_res=64, flip_average=True)
    own = tiny_predictor.predict(rgb, task, processing_res=64, flip_average=False).raw
    mirrored = tiny_predictor.predict(np.ascontiguousarray(rgb[:, ::-1]), task, processing_res=64, flip_average=False).raw
    np.testing.assert_allclose(averaged.raw, (own + _mirror_back(mirrored, task)) / 2, atol=1e-6)
    assert np.abs(own - _mirror_back(mirrored, task)).max() > 1e-3  # a random model is not mirror-symmetric
    assert averaged.provenance["flip_average"] is True


@pytest.mark.parametrize("task", ["depth", "normal"])
def test_flip_averaged_maps_mirror_with_the_photo(tiny_predictor, task):
    rgb = np.random.default_rng(6).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    mirrored_photo = np.ascontiguousarray(rgb[:, :, ::-1])
    of_photo = tiny_predictor.predict(rgb, task, processing_res=64, batch_size=2, flip_average=True).raw
    of_mirror = tiny_predictor.predict(mirrored_photo, task, processing_res=64, flip_average=True).raw
    np.testing.assert_allclose(of_photo, _mirror_back(of_mirror, task), atol=1e-5)


def test_flip_average_encodes_each_view_once_and_defaults_off_for_released_models(tiny_predictor):
    rgb = np.random.default_rng(7).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    batches = []
    handle = tiny_predictor.vae.encoder.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    try:
        together = tiny_predictor.predict_tasks(rgb, ["depth", "normal", "matte"], processing_res=64, flip_average=True)
        default = tiny_predictor.predict(rgb, "depth", processing_res=64)
    finally:
        handle.remove()
    assert batches == [1, 1, 1]  # photo and mirror one after the other (same peak memory), then the default run
    assert tiny_predictor.flip_average_tasks == [] and default.provenance["flip_average"] is False
    assert not np.array_equal(default.raw, together["depth"].raw)


def test_flip_average_refuses_colour_coded_maps(tiny_predictor):
    with pytest.raises(GenPerceptError, match="seg maps are colour codes"):
        tiny_predictor.predict(np.zeros((16, 16, 3), np.uint8), "seg", flip_average=True)


def test_progress_callback_and_interrupt(tiny_predictor):
    rgb = np.random.default_rng(3).integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    seen = []
    tiny_predictor.predict(rgb, "depth", processing_res=32, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]

    class Stop(Exception):
        pass

    def stop_after_first(done, total):
        raise Stop

    with pytest.raises(Stop):
        tiny_predictor.predict(rgb, "depth", processing_res=32, on_progress=stop_after_first)


def test_processing_size_floors_longest_side():
    assert processing_size(480, 640, 768) == (576, 768)
    assert processing_size(575, 767, 768) == (575, 768)  # 575 * 768/767 = 575.75 -> 575
    assert processing_size(1000, 333, 768) == (768, 255)  # 333 * 0.768 = 255.74 -> 255
    assert processing_size(100, 200, 0) == (100, 200)
    with pytest.raises(GenPerceptError, match="too thin"):
        processing_size(2, 4000, 768)


def test_resize_stays_uint8_without_padding():
    rgb = torch.randint(0, 256, (1, 3, 45, 61), dtype=torch.uint8)
    resized = resize_rgb(rgb, 100)
    assert resized.dtype == torch.uint8 and tuple(resized.shape[-2:]) == (73, 100)
    assert resize_rgb(rgb, 0) is rgb


def test_bad_arrays_are_rejected(tiny_predictor):
    with pytest.raises(GenPerceptError, match="uint8"):
        tiny_predictor.predict(np.zeros((8, 8, 3), np.float32), "depth")
    with pytest.raises(GenPerceptError, match="empty"):
        tiny_predictor.predict(np.zeros((0, 8, 8, 3), np.uint8), "depth")
    with pytest.raises(GenPerceptError, match=r"\[B,3,H,W\]"):
        tiny_predictor.predict(np.zeros((8, 8), np.uint8), "depth")
    with pytest.raises(GenPerceptError, match="unknown task"):
        tiny_predictor.predict(np.zeros((8, 8, 3), np.uint8), "albedo")


def test_weight_digests_are_cached_by_path_size_and_time(tiny_model, tmp_path, monkeypatch):
    import hashlib
    import os
    import shutil

    from genpercept_bundle.inference.provenance import digest_cache_file, weights_sha256

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    vae = shutil.copytree(tiny_model / "vae", tmp_path / "vae")
    weights = vae / "diffusion_pytorch_model.safetensors"
    first = weights_sha256(vae)
    assert first == hashlib.sha256(weights.read_bytes()).hexdigest() and digest_cache_file().is_file()
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time: the cached digest is used
    assert weights_sha256(vae) == first
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: hashed again
    assert weights_sha256(vae) == hashlib.sha256(bytes(data)).hexdigest() != first


def test_vae_tiling_bounds_memory_at_a_small_cost_in_agreement(tiny_model, monkeypatch):
    """Tiles of the VAE's sample size (the embedded model's VAE: 256 px) with blended overlaps: its depth stays
    close to the untiled one (measured on the example photo at 640: mean |d| 0.020); "auto" tiles only above the
    pixel threshold; provenance says which it was."""
    import genpercept_bundle.inference.predictor as predictor_module

    rgb = load_image(REPO / "examples" / "photo.jpg")
    tiled = GenPerceptPredictor.from_pretrained(None, ["depth"], device="cpu", vae_tiling="on")
    plain = GenPerceptPredictor.from_pretrained(None, ["depth"], device="cpu", vae_tiling="off")
    a, b = (p.predict(rgb, "depth", processing_res=640, flip_average=False) for p in (tiled, plain))
    assert a.provenance["vae_tiling"] and not b.provenance["vae_tiling"]
    difference = np.abs(a.maps - b.maps)
    assert 0 < difference.max() and difference.mean() < 0.04
    monkeypatch.setattr(predictor_module, "VAE_TILING_PIXELS", 100 * 100)
    auto = GenPerceptPredictor.from_pretrained(tiny_model, ["depth"], device="cpu")
    small = np.zeros((120, 160, 3), np.uint8)
    assert auto.predict(small, "depth", processing_res=0).provenance["vae_tiling"]
    assert not auto.predict(small, "depth", processing_res=64).provenance["vae_tiling"]
    with pytest.raises(GenPerceptError, match="VAE tiling must be one of auto, on, off"):
        GenPerceptPredictor.from_pretrained(tiny_model, ["depth"], device="cpu", vae_tiling="yes")
