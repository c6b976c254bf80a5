"""Every family through the one predictor, against an independent reference of that family's inference:
diffusers' own Marigold pipelines, and references written from the E2E-FT and Lotus authors' code
(tests/inference/references/). Tiny random models in each family's released layout."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from genpercept_bundle import GenPerceptPredictor
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.inference.predictor import SamplingOptions
from genpercept_bundle.models.architectures import write_random_pipeline
from genpercept_bundle.models.embedding import load_cached_embeddings
from genpercept_bundle.models.families import detect_family
from genpercept_bundle.models.folders import open_model_folder

REFERENCES = Path(__file__).parent / "references"


def reference(name):
    spec = importlib.util.spec_from_file_location(name, REFERENCES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def photo(height, width, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 40, (height, width, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def parts(folder: Path):
    unet = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
    return unet, vae, load_cached_embeddings(folder)["v2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: write_random_pipeline(root / name, family, task, seed=seed) for seed, (name, family, task) in enumerate([
        ("marigold-depth-v1-1", "marigold", "depth"), ("marigold-normals-v1-1", "marigold", "normal"),
        ("marigold-depth-lcm-v1-0", "marigold-lcm", "depth"), ("marigold-e2e-ft-depth", "e2e-ft", "depth"),
        ("marigold-e2e-ft-normals", "e2e-ft", "normal"), ("lotus-depth-g-v1-0", "lotus-g", "depth"),
        ("lotus-normal-d-v1-1", "lotus-d", "normal"), ("lotus-depth-g-v2-1-disparity", "lotus-g", "disparity")])}


@pytest.mark.parametrize("name,family,task", [
    ("marigold-depth-v1-1", "marigold", "depth"), ("marigold-normals-v1-1", "marigold", "normal"),
    ("marigold-depth-lcm-v1-0", "marigold-lcm", "depth"), ("marigold-e2e-ft-depth", "e2e-ft", "depth"),
    ("marigold-e2e-ft-normals", "e2e-ft", "normal"), ("lotus-depth-g-v1-0", "lotus-g", "depth"),
    ("lotus-normal-d-v1-1", "lotus-d", "normal"), ("lotus-depth-g-v2-1-disparity", "lotus-g", "disparity")])
def test_family_and_task_are_read_from_the_folder(models, name, family, task):
    model = open_model_folder(models[name])
    assert model.family.name == family
    assert model.available_tasks([]) == [task]


def test_an_unknown_pipeline_is_named(tmp_path, models):
    folder = tmp_path / "controlnet"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionControlNetPipeline"}))
    with pytest.raises(GenPerceptError, match="StableDiffusionControlNetPipeline pipeline, which is no family"):
        detect_family(folder)


def test_a_task_the_model_does_not_have_is_refused(models):
    with pytest.raises(GenPerceptError, match="Marigold .* depth model; it cannot predict normal"):
        GenPerceptPredictor.from_pretrained(models["marigold-depth-v1-1"], tasks=["normal"], device="cpu")


def marigold_pipeline(folder: Path):
    from diffusers import MarigoldDepthPipeline, MarigoldNormalsPipeline

    index = json.loads((folder / "model_index.json").read_text())
    unet, vae, embedding = parts(folder)
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    import diffusers

    scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)
    options = {k: v for k, v in index.items() if k in ("prediction_type", "scale_invariant", "shift_invariant",
                                                         "default_denoising_steps", "default_processing_resolution",
                                                         "use_full_z_range")}
    kind = MarigoldNormalsPipeline if index["_class_name"] == "MarigoldNormalsPipeline" else MarigoldDepthPipeline
    pipeline = kind(unet=unet, vae=vae, scheduler=scheduler, text_encoder=None, tokenizer=None, **options)
    pipeline.empty_text_embedding = embedding  # what its text encoder would give: the same cached tensor as ours
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.mark.parametrize("name,task,steps,ensemble", [
    ("marigold-depth-v1-1", "depth", 2, 3), ("marigold-depth-v1-1", "depth", None, 1),
    ("marigold-normals-v1-1", "normal", 2, 3), ("marigold-depth-lcm-v1-0", "depth", 3, 3)])
def test_marigold_equals_diffusers_pipeline(models, name, task, steps, ensemble):
    rgb = photo(45, 61)  # odd sizes: resized to 64, padded to a multiple of 8, cropped and resized back
    ours = GenPerceptPredictor.from_pretrained(models[name], tasks=None, device="cpu").predict(
        rgb, task, processing_res=64, sampling=SamplingOptions(steps=steps, ensemble_size=ensemble, seed=7))
    theirs = marigold_pipeline(models[name])(
        torch.from_numpy(rgb).permute(2, 0, 1)[None], num_inference_steps=steps, ensemble_size=ensemble,
        processing_resolution=64, generator=torch.Generator().manual_seed(7), output_uncertainty=ensemble > 1,
        batch_size=1)
    expected = theirs.prediction[0, ..., 0] if task == "depth" else theirs.prediction[0]
    assert ours.maps[0].shape == expected.shape
    assert np.abs(ours.maps[0] - expected).max() <= 1e-5
    assert np.ptp(ours.maps) > 0.05  # a real map, not a constant both sides agree on
    if ensemble > 1:
        assert np.abs(ours.uncertainty[0] - theirs.uncertainty[0, ..., 0]).max() <= 1e-5
        assert ours.uncertainty.max() > 0
    else:
        assert ours.uncertainty is None


def test_marigold_seed_changes_the_map_and_repeats_it(models):
    predictor = GenPerceptPredictor.from_pretrained(models["marigold-depth-v1-1"], tasks=None, device="cpu")
    rgb = photo(64, 64)
    first, again, other = (predictor.predict(rgb, "depth", processing_res=0, sampling=SamplingOptions(seed=s)).maps
                           for s in (1, 1, 2))
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_an_ensemble_of_a_deterministic_method_is_refused(models):
    predictor = GenPerceptPredictor.from_pretrained(models["marigold-e2e-ft-depth"], tasks=None, device="cpu")
    with pytest.raises(GenPerceptError, match="deterministic.*ensemble size of 1"):
        predictor.predict(photo(64, 64), "depth", sampling=SamplingOptions(ensemble_size=3))


@pytest.mark.parametrize("name,task", [("marigold-e2e-ft-depth", "depth"), ("marigold-e2e-ft-normals", "normal")])
def test_e2e_ft_equals_the_authors_inference(models, name, task):
    rgb = photo(64, 128)
    ours = GenPerceptPredictor.from_pretrained(models[name], tasks=None, device="cpu").predict(
        rgb, task, processing_res=0)
    unet, vae, embedding = parts(models[name])
    scheduler_config = json.loads((models[name] / "scheduler" / "scheduler_config.json").read_text())
    from diffusers import DDIMScheduler

    theirs = reference("e2e_ft_reference").reference_e2e_ft_predict(
        unet, vae, DDIMScheduler.from_config(scheduler_config), embedding, torch.from_numpy(rgb).permute(2, 0, 1)[None],
        "depth" if task == "depth" else "normals")
    if task == "normal":
        theirs = theirs * np.array([-1.0, 1.0, 1.0], dtype=np.float32)  # their +X points left, ours right
        # their vectors are n / (|n| + 1e-5), kept as such in ``raw``; ``maps`` makes them unit length
        assert np.abs(ours.raw[0] * 2 - 1 - theirs).max() <= 1e-5
        assert np.abs(np.linalg.norm(ours.maps, axis=-1) - 1).max() < 1e-5
    else:
        assert np.abs(ours.maps[0] - theirs).max() <= 1e-5
    assert np.ptp(ours.maps) > 0.05


@pytest.mark.parametrize("name,task", [("lotus-depth-g-v1-0", "depth"), ("lotus-normal-d-v1-1", "normal"),
                                       ("lotus-depth-g-v2-1-disparity", "disparity")])
def test_lotus_equals_the_authors_inference(models, name, task):
    rgb = photo(64, 128)
    ours = GenPerceptPredictor.from_pretrained(models[name], tasks=None, device="cpu").predict(
        rgb, task, processing_res=0, sampling=SamplingOptions(seed=3))
    unet, vae, embedding = parts(models[name])
    # our draws, in our order, from one generator: the posterior sample first, then Lotus-G's noise
    generator = torch.Generator().manual_seed(3)
    posterior_noise = torch.randn((1, 4, 8, 16), generator=generator)
    noise = torch.randn((1, 4, 8, 16), generator=generator) if unet.config.in_channels == 8 else None
    theirs = reference("lotus_reference").reference_lotus_predict(
        unet, vae, embedding, torch.from_numpy(rgb).permute(2, 0, 1)[None], task, noise=noise,
        posterior_noise=posterior_noise)
    if task == "normal":  # their +X points left: (n + 1) / 2 with n_x negated
        theirs = theirs.copy()
        theirs[..., 0] = 1 - theirs[..., 0]
        assert np.abs(ours.raw[0] - theirs).max() <= 1e-5
    else:
        assert np.abs(ours.maps[0] - theirs).max() <= 1e-5
    assert np.ptp(ours.maps) > 0.01


@pytest.fixture(scope="module")
def dpt_model(tmp_path_factory):
    from genpercept_bundle.models.architectures import write_random_dpt_checkpoint

    return write_random_dpt_checkpoint(tmp_path_factory.mktemp("dpt") / "genpercept-disparity-dpt-head", seed=4)


@pytest.mark.parametrize("height,width", [(64, 128), (72, 120)])
def test_dpt_head_equals_the_authors_inference(dpt_model, height, width):
    from safetensors.torch import load_file

    rgb = photo(height, width)
    predictor = GenPerceptPredictor.from_pretrained(dpt_model, tasks=["disparity"], device="cpu")
    assert predictor.family.name == "genpercept-dpt"
    ours = predictor.predict(rgb, "disparity", processing_res=0)
    oracle = reference("genpercept_dpt_reference")
    unet = UNet2DConditionModel.from_pretrained(dpt_model / "unet_disparity_dpt_head_v2").eval()  # conv_out: unused
    vae = AutoencoderKL.from_pretrained(dpt_model / "vae", torch_dtype=torch.float32).eval()
    head = oracle.build_reference_head({**oracle.SD21_HEAD_CONFIG, "neck_hidden_sizes": unet.config.block_out_channels})
    head.load_state_dict(load_file(dpt_model / "dpt_head_identity" / "model.safetensors"), strict=True)
    theirs = oracle.reference_dpt_head_predict(unet, head.eval(), vae, load_cached_embeddings(dpt_model)["v2"],
                                               torch.from_numpy(rgb).permute(2, 0, 1)[None])
    if theirs.shape != (height, width):  # 32 x the coarsest up block's size: the authors resize it back
        theirs = torch.nn.functional.interpolate(torch.from_numpy(theirs)[None, None], size=(height, width),
                                                 mode="bilinear", antialias=True)[0, 0].clamp(0, 1).numpy()
    assert np.abs(ours.maps[0] - theirs).max() <= 1e-5
    assert ours.maps.min() < 0.1 and ours.maps.max() > 0.9  # min-max normalised
    assert ours.provenance["head"] == "dpt_head_identity"


def test_a_dpt_unet_without_its_head_is_explained(tmp_path, dpt_model):
    import shutil

    folder = shutil.copytree(dpt_model, tmp_path / "model")
    shutil.rmtree(folder / "dpt_head_identity")
    with pytest.raises(GenPerceptError, match="DPT-head UNet but .* has no dpt_head_identity/model.safetensors"):
        GenPerceptPredictor.from_pretrained(folder, tasks=["disparity"], device="cpu")


@pytest.fixture(scope="module")
def dmp_models(tmp_path_factory):
    from genpercept_bundle.models.architectures import write_random_dmp

    root = tmp_path_factory.mktemp("dmp")
    depth, base = write_random_dmp(root / "depth-hypersim-notext", root / "stable-diffusion-v1-4", "depth", seed=5)
    normal, _ = write_random_dmp(root / "normal-scene100-notext", root / "unused-base", "normal", seed=6)
    return {"depth": depth, "normal": normal, "base": base}


@pytest.mark.parametrize("task", ["depth", "normal"])
def test_dmp_equals_the_authors_inference(dmp_models, task):
    from safetensors.torch import load_file

    rgb = photo(64, 128)
    predictor = GenPerceptPredictor.from_pretrained(dmp_models[task], tasks=None, device="cpu", base=dmp_models["base"])
    assert predictor.family.name == "dmp" and predictor.loaded_tasks == [task]
    ours = predictor.predict(rgb, task, processing_res=0, sampling=SamplingOptions(seed=9))
    oracle = reference("dmp_reference")
    base = dmp_models["base"]
    unet = UNet2DConditionModel.from_pretrained(base / "unet").eval()
    oracle.apply_reference_lora(unet, load_file(dmp_models[task] / "pytorch_lora_weights.safetensors"))
    vae = AutoencoderKL.from_pretrained(base / "vae").eval()
    theirs = oracle.reference_dmp_predict(unet, vae, oracle.build_reference_scheduler(),
                                          load_cached_embeddings(base)["v1"], torch.from_numpy(rgb).permute(2, 0, 1)[None],
                                          task, generator=torch.Generator().manual_seed(9))
    if task == "normal":  # Omnidata colours (+Y down, +Z away) -> ours (+Y up, +Z toward the viewer)
        theirs = theirs.copy()
        theirs[..., 1:] = 1 - theirs[..., 1:]
        assert np.abs(ours.raw[0] - theirs).max() <= 1e-5
    else:
        assert np.abs(ours.maps[0] - np.clip(theirs, 0, 1)).max() <= 1e-5
    assert np.ptp(ours.raw) > 0.01


def test_dmp_without_a_base_says_what_to_pass(dmp_models):
    with pytest.raises(GenPerceptError, match="LoRA for Stable Diffusion v1.4: pass its base with --base"):
        GenPerceptPredictor.from_pretrained(dmp_models["depth"], tasks=None, device="cpu")


def test_a_pickled_dmp_lora_is_refused_with_the_conversion(tmp_path, dmp_models):
    folder = tmp_path / "depth-notext"
    folder.mkdir()
    (folder / "pytorch_lora_weights.bin").write_bytes(b"not loaded")
    with pytest.raises(GenPerceptError, match="(?s)pickle file, which is never loaded.*safetensors.torch"):
        GenPerceptPredictor.from_pretrained(folder, tasks=None, device="cpu", base=dmp_models["base"])


def test_marigold_v1_0_original_pipeline_runs_its_ten_steps(tmp_path):
    folder = write_random_pipeline(tmp_path / "marigold-v1-0", "marigold", "depth")
    index = json.loads((folder / "model_index.json").read_text())
    index = {k: v for k, v in index.items() if not k.startswith(("default_", "prediction_type"))}
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "MarigoldPipeline"}))
    predictor = GenPerceptPredictor.from_pretrained(folder, None, device="cpu")
    assert predictor.family.name == "marigold" and predictor.loaded_tasks == ["depth"]
    assert predictor.predict(photo(64, 64), "depth", processing_res=0).provenance["steps"] == 10
