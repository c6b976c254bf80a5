"""Few-step training on generated data: the loss goes down, checkpoints resume, LoRA merges."""

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file

from genpercept_bundle import GenPerceptPredictor, get_task
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.models.architectures import write_random_checkpoint
from genpercept_bundle.models.settings import SETTINGS_NAME
from genpercept_bundle.models.weights import load_model
from genpercept_bundle.data.dataset import generate_dataset
from genpercept_bundle.training.config import TrainConfig
from genpercept_bundle.training.latents import encode_latents, photo_latents
from genpercept_bundle.training.losses import task_loss
from genpercept_bundle.training.targets import TrainingSet
from genpercept_bundle.training.unet import train_unet
from genpercept_bundle.training.vae import train_vae


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), {"train": 6, "test": 2}, seed=5, size=(64, 48))


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, data):
    """A tiny VAE trained briefly on the data, plus an embedding, to train UNets against (the VAE stays frozen)."""
    model = write_random_checkpoint(tmp_path_factory.mktemp("base") / "model", tasks=[])
    train_vae(data, model, small_config(steps=150, batch_size=8), architecture="tiny", log=lambda _: None)
    return model


def small_config(**overrides):
    return TrainConfig(**{"steps": 40, "batch_size": 4, "lr": 5e-3, "warmup": 2, "width": 64, "height": 48,
                          "checkpoint_every": 20, **overrides})


def history(run, task):
    return json.loads((run / "checkpoint" / task / "state.json").read_text())["history"]


@pytest.mark.parametrize("task", ["depth", "normal", "matte"])
def test_unet_loss_decreases_and_result_loads(data, base_model, tmp_path, task):
    run, initial = tmp_path / "run", tmp_path / "initial"
    result = train_unet(data, task, base_model / "vae", run, small_config(steps=60, lr=1e-3), architecture="tiny",
                        log=lambda _: None)
    assert len(history(run, task)) == 60
    untrained_unet(data, base_model, task, initial)
    # the task's loss on every training scene, unflipped: deterministic, unlike the per-batch history
    # (measured with one thread: depth 0.80 -> 0.36, normal 2.02 -> 1.57, matte 0.59 -> 0.50)
    truth, decoded = decoded_predictions(data, base_model, task, {"trained": run, "untrained": initial})
    trained, untrained = (float(task_loss(task, decoded[name], truth.targets[task], truth.masks[task]))
                          for name in ("trained", "untrained"))
    assert trained < 0.95 * untrained
    # the result is a released-layout UNet folder our predictor loads next to the VAE
    for item in ("vae", "empty_text_embed.safetensors"):
        (run / item).symlink_to(base_model / item)
    predictor = GenPerceptPredictor.from_pretrained(run, tasks=[task], device="cpu")
    assert predictor.model.unet_folder(get_task(task)) == result
    assert predictor.predict(torch.zeros(1, 3, 48, 64, dtype=torch.uint8), task, 64).raw.shape[:3] == (1, 48, 64)


def test_latent_stage_skips_the_decoder_yet_fits_the_decoded_matte(data, base_model, tmp_path, monkeypatch):
    """Latent-space MSE alone (no decoder pass) brings the decoded matte most of the way to the best the
    frozen VAE can do (decoding the encoded truth); resumed past the latent stage, every step goes through
    the decoder (the pixel-space losses)."""
    from diffusers import AutoencoderKL

    decodes = []
    decode = AutoencoderKL.decode

    def counting_decode(vae, *args, **kwargs):
        decodes.append(1)
        return decode(vae, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "decode", counting_decode)
    run, initial = tmp_path / "run", tmp_path / "initial"
    train_unet(data, "matte", base_model / "vae", run, small_config(steps=100, latent_steps=100), architecture="tiny",
               log=lambda _: None)
    assert decodes == []
    losses = history(run, "matte")
    assert sum(losses[90:100]) / 10 < 0.5 * sum(losses[:10]) / 10  # the latent regression converges
    untrained_unet(data, base_model, "matte", initial)
    monkeypatch.undo()
    error = decoded_matte_errors(data, base_model, {"trained": run, "untrained": initial})
    # measured: VAE bound 0.077, trained 0.086, untrained 0.143 (86 % of the reachable gap closed)
    assert error["trained"] - error["vae_bound"] < 0.5 * (error["untrained"] - error["vae_bound"])

    monkeypatch.setattr(AutoencoderKL, "decode", counting_decode)
    decodes.clear()
    train_unet(data, "matte", base_model / "vae", run, small_config(steps=110, latent_steps=100), architecture="tiny",
               log=lambda _: None)
    assert len(decodes) == 10 and len(history(run, "matte")) == 110


def untrained_unet(data, base_model, task, out):
    """The random init every tiny training run here starts from (same seed), saved untrained: one step at lr 0."""
    train_unet(data, task, base_model / "vae", out, small_config(steps=1, lr=0.0), architecture="tiny",
               log=lambda _: None)


def decoded_matte_errors(data, base_model, runs):
    """Matte MSE at the training size of each run's decoded prediction, and of the VAE's reconstruction of
    the true matte (the lower bound any UNet trained against this frozen VAE can reach)."""
    from genpercept_bundle.inference.methods import to_unit_range
    from genpercept_bundle.inference.processing import finish_prediction

    truth, decoded = decoded_predictions(data, base_model, "matte", runs)
    alpha = (truth.targets["matte"] + 1) / 2
    return {name: float(torch.mean((finish_prediction(to_unit_range(maps, 1), alpha.shape[-2:]) - alpha) ** 2))
            for name, maps in decoded.items()}


@torch.no_grad()
def decoded_predictions(data, base_model, task, runs):
    """The training scenes at the training size, and the decoded prediction of each run's UNet for all of
    them, plus "vae_bound": the VAE's reconstruction of the truth."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from genpercept_bundle.models.architectures import TINY_UNET
    from genpercept_bundle.models.weights import load_model
    from genpercept_bundle.models.embedding import resolve_embedding

    vae = load_model(AutoencoderKL, base_model / "vae", torch.float32, "cpu")
    config = small_config()
    truth = TrainingSet(data, "train", [task], config.width, config.height)

    def decode(latents):
        return vae.decode(latents / vae.config.scaling_factor).sample

    decoded = {"vae_bound": decode(encode_latents(vae, truth.targets[task], "cpu"))}
    rgb_latents = encode_latents(vae, truth.rgb, "cpu")
    embedding, _ = resolve_embedding(base_model, "v2", TINY_UNET["cross_attention_dim"])
    conditioning = embedding.expand(len(truth), -1, -1)
    for name, run in runs.items():
        unet = load_model(UNet2DConditionModel, run / get_task(task).unet_folders[0], torch.float32, "cpu")
        decoded[name] = decode(-unet(rgb_latents, torch.tensor([1]), encoder_hidden_states=conditioning).sample)
    return truth, decoded


def test_latent_stage_draws_on_augmented_copies(data, base_model, tmp_path):
    runs = {}
    for copies in (0, 2):
        messages = []
        config = small_config(steps=100, latent_steps=100, augmented_copies=copies)
        train_unet(data, "matte", base_model / "vae", tmp_path / str(copies), config, architecture="tiny",
                   log=messages.append)
        runs[copies] = load_file(tmp_path / str(copies) / "unet_matting_v2" / "diffusion_pytorch_model.safetensors")
    assert "matte: 12 augmented copies encoded" in messages  # 6 scenes x 2
    assert not torch.equal(runs[0]["conv_in.weight"], runs[2]["conv_in.weight"])  # same seed, other batches
    untrained_unet(data, base_model, "matte", tmp_path / "untrained")
    error = decoded_matte_errors(data, base_model, {"copies": tmp_path / "2", "untrained": tmp_path / "untrained"})
    # it still learns the scenes themselves (measured with one thread: 0.129 vs 0.146 untrained)
    assert error["copies"] < 0.95 * error["untrained"]


def test_latent_steps_beyond_the_total_are_refused():
    with pytest.raises(GenPerceptError, match=r"latent steps \(80\) must be between 0 and the total steps \(60\)"):
        TrainConfig(steps=60, latent_steps=80)


def test_photo_latents_are_encoded_once_per_vae_and_photos(data, base_model, tmp_path):
    run = tmp_path / "run"
    train_unet(data, "matte", base_model / "vae", run, small_config(steps=2), architecture="tiny", log=lambda _: None)
    cache = run / "checkpoint" / "photo_latents.safetensors"
    written = cache.stat().st_mtime_ns
    train_unet(data, "depth", base_model / "vae", run, small_config(steps=2), architecture="tiny", log=lambda _: None)
    assert cache.stat().st_mtime_ns == written  # the second task read them

    vae = load_model(AutoencoderKL, base_model / "vae", torch.float32, "cpu")
    photos = TrainingSet(data, "train", [], 64, 48)
    cached, cached_mirrored = photo_latents(vae, base_model / "vae", photos, run / "checkpoint", torch.device("cpu"))
    assert torch.equal(cached, encode_latents(vae, photos.rgb, "cpu"))
    assert torch.equal(cached_mirrored, encode_latents(vae, photos.rgb.flip(-1), "cpu"))

    other_vae = tmp_path / "vae"  # another VAE (here: another latent scaling) must not reuse them
    shutil.copytree(base_model / "vae", other_vae)
    config = json.loads((other_vae / "config.json").read_text())
    (other_vae / "config.json").write_text(json.dumps({**config, "scaling_factor": 2 * config["scaling_factor"]}))
    scaled_vae = load_model(AutoencoderKL, other_vae, torch.float32, "cpu")
    rescaled, _ = photo_latents(scaled_vae, other_vae, photos, run / "checkpoint", torch.device("cpu"))
    torch.testing.assert_close(rescaled, 2 * cached)


def test_resume_continues_from_the_checkpoint(data, base_model, tmp_path):
    run = tmp_path / "run"
    messages = []
    train_unet(data, "matte", base_model / "vae", run, small_config(steps=20), architecture="tiny", log=messages.append)
    first = load_file(run / "checkpoint" / "matte" / "state.safetensors")
    train_unet(data, "matte", base_model / "vae", run, small_config(steps=30), architecture="tiny", log=messages.append)
    assert any("resumed at step 20" in m for m in messages)
    assert len(history(run, "matte")) == 30
    second = load_file(run / "checkpoint" / "matte" / "state.safetensors")
    assert first.keys() == second.keys()
    assert not torch.equal(first["model.conv_in.weight"], second["model.conv_in.weight"])


def test_lora_trains_attention_only_and_merges(data, base_model, tmp_path):
    run = tmp_path / "run"
    init = write_random_checkpoint(tmp_path / "init", tasks=["depth"], embedding=False) / "unet_depth_v2"
    result = train_unet(data, "depth", base_model / "vae", run, small_config(steps=6, lora_rank=4, lr=1e-2),
                        init_unet=init, embedding_model=base_model, log=lambda _: None)
    before, after = load_file(init / "diffusion_pytorch_model.safetensors"), load_file(result / "diffusion_pytorch_model.safetensors")
    assert before.keys() == after.keys()  # merged back: the released layout, no adapter keys
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(any(p in k for p in ("to_q", "to_k", "to_v", "to_out.0")) for k in changed)


def test_vae_training_fits_a_scaling_factor(data, tmp_path):
    result = train_vae(data, tmp_path / "run", small_config(steps=4), architecture="tiny", log=lambda _: None)
    config = json.loads((result / "config.json").read_text())
    assert config["scaling_factor"] != 0.18215 and config["scaling_factor"] > 0
    assert len(history(tmp_path / "run", "vae")) == 4


def test_weight_average_is_what_gets_saved_and_survives_resume(data, base_model, tmp_path):
    run = tmp_path / "run"
    config = small_config(steps=20, ema_decay=0.9)
    result = train_unet(data, "matte", base_model / "vae", run, config, architecture="tiny", log=lambda _: None)
    state = load_file(run / "checkpoint" / "matte" / "state.safetensors")
    saved = load_file(result / "diffusion_pytorch_model.safetensors")
    # the exported weights are the average, which lags behind the last step's weights
    assert torch.equal(saved["conv_in.weight"], state["ema.conv_in.weight"])
    assert not torch.allclose(state["ema.conv_in.weight"], state["model.conv_in.weight"])
    # resuming a finished run restores the average rather than exporting the last step
    train_unet(data, "matte", base_model / "vae", run, config, architecture="tiny", log=lambda _: None)
    assert torch.equal(load_file(result / "diffusion_pytorch_model.safetensors")["conv_in.weight"], saved["conv_in.weight"])
    with pytest.raises(GenPerceptError, match="EMA decay"):
        TrainConfig(ema_decay=1.0)


def test_weight_average_restarts_when_the_pixel_losses_take_over(data, base_model, tmp_path):
    """The average spans one objective: had it carried the latent stage over, the last (pixel) step's
    weights would be mixed with the latent stage's."""
    run = tmp_path / "run"
    config = small_config(steps=12, latent_steps=11, ema_decay=0.99)
    result = train_unet(data, "matte", base_model / "vae", run, config, architecture="tiny", log=lambda _: None)
    state = load_file(run / "checkpoint" / "matte" / "state.safetensors")
    saved = load_file(result / "diffusion_pytorch_model.safetensors")
    assert torch.allclose(saved["conv_in.weight"], state["model.conv_in.weight"])


def test_predictor_and_trainer_run_the_same_method_at_the_models_timestep(data, base_model, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(base_model, model, ignore=shutil.ignore_patterns("checkpoint"))
    (model / SETTINGS_NAME).write_text(json.dumps({"timestep": 7}))
    timesteps, forward = [], UNet2DConditionModel.forward

    def recording_forward(unet, sample, timestep, *args, **kwargs):
        timesteps.append(timestep.tolist())
        return forward(unet, sample, timestep, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", recording_forward)
    train_unet(data, "depth", model / "vae", model, small_config(steps=2, latent_steps=1), architecture="tiny",
               log=lambda _: None)
    assert timesteps == [[7], [7]]  # one latent-stage step, one pixel-stage step
    prediction = GenPerceptPredictor.from_pretrained(model, ["depth"], device="cpu").predict(
        np.zeros((48, 64, 3), np.uint8), "depth", processing_res=64)
    assert timesteps[2:] == [[7], [7]]  # the self-check at load, then the prediction
    assert prediction.provenance["timestep"] == 7


def test_scenes_without_the_tasks_ground_truth_are_left_out(data, tmp_path):
    """A photographic backdrop scene has a matte and no depth: depth trains on the others, matte on all."""
    partial = tmp_path / "partial"
    shutil.copytree(data, partial)
    first = sorted((partial / "train").glob("*_depth.png"))[0]
    first.unlink()
    depth = TrainingSet(partial, "train", ["depth"], 64, 48)
    assert (len(depth), depth.skipped) == (5, 1) and first.name.replace("_depth", "_rgb") not in {
        p.name for p in depth.photo_files}
    assert len(TrainingSet(partial, "train", ["matte"], 64, 48)) == 6
    for path in (partial / "train").glob("*_depth.png"):
        path.unlink()
    with pytest.raises(GenPerceptError, match="no scene of .* has <id>_depth.png"):
        TrainingSet(partial, "train", ["depth"], 64, 48)
