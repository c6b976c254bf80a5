"""The recipe of the embedded default model: ``genpercept train-default`` runs it end to end.

1. render the synthetic dataset (train / test splits);
2. train the small VAE on photos and maps (reconstruction);
3. fix the empty-text embedding (a seeded random [1,2,64] constant: the small
   model has no text encoder; the UNet learns around it);
4. train the depth, normal and matte UNets with GenPercept's recipe, after a
   cheaper latent-regression stage (see ``TrainConfig.latent_steps``); the
   photos are encoded once for all three; with ``workers`` > 1 the tasks train
   side by side, one thread each (on 2 cores that is ~1.3x the throughput of
   one process with two threads);
5. continue the depth UNet at the dataset's native 256x192 (``native_resolution``): the
   stage above works at 192x144, 1.8x cheaper a step, but depth loses detail there;
6. continue every task's UNet on photographic Cycles scenes mixed with fresh numpy ones
   (``photographic_stage.py``): the numpy scenes alone do not carry over to real photos;
7. export to ``default_model/`` in the released layout, weights in fp16 (as the
   release's VAE), with ``genpercept_bundle.json`` holding the settings.

Every stage is resumable: rerunning the command continues where it stopped.
"""

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from ..allocator import keep_freed_memory
from ..data.dataset import generate_dataset
from ..models.architectures import SMALL_UNET
from ..models.embedding import CACHE_NAME, load_cached_embeddings, save_embedding_cache
from ..models.folders import DEFAULT_MODEL_DIR
from ..models.settings import SETTINGS_NAME, ModelSettings
from ..models.weights import load_model, save_model
from ..tasks import DEFAULT_TASKS, get_task
from .config import TrainConfig, scaled_count
from .latents import photo_latents
from .loop import log_now
from .photographic_stage import (PHOTOGRAPHIC_DATA, STAGES, photographic_data_counts, render_stage_data, scaled_stages,
                                 stage_chains, train_stage_chain)
from .targets import TrainingSet
from .unet import train_unet
from .vae import train_vae

# Every choice below was measured; the numbers are in docs/experiments.md.
RECIPE = {
    "data": {"train": 4800, "test": 480, "size": (256, 192), "seed": 0},
    "vae": TrainConfig(steps=2000, batch_size=8, lr=1e-3, warmup=50, final_lr_fraction=0.05),
    "vae_scenes": 2400,  # reconstruction needs less variety than perception: the first half of the scenes
    # no augmented copies: they made depth worse on held-out scenes and on real RGB-D frames
    "unet": {task: TrainConfig(steps=latent + 300, latent_steps=latent, batch_size=8, lr=1e-3, warmup=100,
                               final_lr_fraction=0.05, ema_decay=0.999)
             for task, latent in (("depth", 23000), ("normal", 7000), ("matte", 13000))},
    # then depth continues at the photos' own 256x192: at 192x144 it loses detail that the ground truth itself has
    "native_resolution": {"depth": TrainConfig(steps=4300, latent_steps=4000, batch_size=8, lr=1e-3, warmup=100,
                                               final_lr_fraction=0.05, ema_decay=0.999, width=256, height=192)},
    "processing_resolution": 192,  # each task is processed at the size of its last stage
    # averaged with the mirrored photo by default: every task's error drops on held-out scenes
    "flip_average_tasks": ["depth", "normal", "matte"],
}


def build_default_model(workdir: Path, export_to: Path = DEFAULT_MODEL_DIR, workers: int = 2, scale: float = 1.0,
                        log=print, photographic: Path | None = None, assets: Path | None = None) -> Path:
    """Run the whole recipe in ``workdir``; ``scale`` < 1 shortens every stage (for smoke tests). ``photographic``:
    a ready photographic dataset for the last stage (default: rendered with Cycles from ``assets``)."""
    workdir = Path(workdir)
    data_recipe = RECIPE["data"]
    splits = {s: scaled_count(data_recipe[s], scale) for s in ("train", "test")}
    data = generate_dataset(workdir / "data", splits, data_recipe["seed"], data_recipe["size"], workers)
    model = workdir / "model"

    vae_scenes = scaled_count(RECIPE["vae_scenes"], scale)
    if not (model / "vae").is_dir():
        train_vae(data, model, RECIPE["vae"].scaled(scale), scenes=vae_scenes, log=log)
    if "v2" not in load_cached_embeddings(model):
        generator = torch.Generator().manual_seed(2024)
        save_embedding_cache(model, {"v2": torch.randn(1, 2, SMALL_UNET["cross_attention_dim"], generator=generator)})
    _train_task_unets(data, model, {task: config.scaled(scale) for task, config in RECIPE["unet"].items()}, workers, log)
    native = workdir / "native_resolution"
    for task, config in RECIPE["native_resolution"].items():
        folder = get_task(task).unet_folders[0]
        if not (native / folder).is_dir():
            train_unet(data, task, model / "vae", native, config.scaled(scale), init_unet=model / folder, log=log)
    unets = {task: (native if task in RECIPE["native_resolution"] else model) / get_task(task).unet_folders[0]
             for task in DEFAULT_TASKS}
    photographic, synthetic = render_stage_data(workdir, photographic, assets, scale, workers, log)
    unets.update(_run_in_workers(train_stage_chain, stage_chains(workdir, model, unets, photographic, synthetic, scale),
                                 workers, log))
    recipe = {"data": {**data_recipe, **splits}, "vae": asdict(RECIPE["vae"].scaled(scale)), "vae_scenes": vae_scenes,
              "unet": {task: asdict(config.scaled(scale)) for task, config in RECIPE["unet"].items()},
              "native_resolution": {task: asdict(config.scaled(scale))
                                    for task, config in RECIPE["native_resolution"].items()},
              "photographic": {"data": {**PHOTOGRAPHIC_DATA, **photographic_data_counts(scale)},
                               "stages": [asdict(stage) for stage in scaled_stages(scale)]}}
    last_stage = {stage.task: stage.config for stage in STAGES}
    settings = ModelSettings(default_processing_resolution=RECIPE["processing_resolution"],
                             processing_resolution_by_task={task: max(config.width, config.height)
                                                            for task, config in last_stage.items()
                                                            if max(config.width, config.height)
                                                            != RECIPE["processing_resolution"]},
                             flip_average_tasks=tuple(RECIPE["flip_average_tasks"]), recipe=recipe)
    (model / SETTINGS_NAME).write_text(json.dumps(settings.to_dict(), indent=2))
    return export_model(model, export_to, unets)


def _train_task_unets(data: Path, model: Path, configs: dict[str, TrainConfig], workers: int, log):
    """The task UNets not trained yet, side by side in ``workers`` processes (one thread each), longest first so
    the workers finish together. The photos' latents are encoded once, before the workers start."""
    missing = [task for task in DEFAULT_TASKS if not (model / get_task(task).unet_folders[0]).is_dir()]
    missing.sort(key=lambda task: -configs[task].steps)
    jobs = [(data, task, model, configs[task], line) for line, task in enumerate(missing)]
    if missing:
        config = configs[missing[0]]
        photos = TrainingSet(data, "train", [], config.width, config.height)
        log(f"photos: encoding the {len(photos)} training photos and their mirror images once, for the UNets")
        vae = load_model(AutoencoderKL, model / "vae", torch.float32, "cpu")
        photo_latents(vae, model / "vae", photos, model / "checkpoint", torch.device(config.device))
    for finished in _run_in_workers(_train_task, jobs, workers, log):
        log(f"wrote {finished}")


def _run_in_workers(train, jobs: list, workers: int, log):
    """``train(job)`` of every job, side by side in ``workers`` processes (one thread each) when there are several;
    yields each result as it finishes."""
    if workers > 1 and len(jobs) > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(min(workers, len(jobs)), _start_task_worker, (workers,)) as pool:
            yield from pool.imap_unordered(train, jobs)
    else:
        for job in jobs:
            yield train(job, log)


def _start_task_worker(workers: int):
    keep_freed_memory()  # a spawned worker starts with the allocator's defaults
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _train_task(job, log=log_now) -> Path:
    data, task, model, config, progress_line = job
    return train_unet(data, task, model / "vae", model, config, log=log, progress_line=progress_line)


def export_model(model: Path, target: Path, unets: dict[str, Path] | None = None) -> Path:
    """Copy a trained model folder to ``target`` in the released layout with fp16 weights; a task's UNet comes from
    ``unets`` (task -> UNet folder) when given there, else from ``model``."""
    target = Path(target)
    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_model(load_model(AutoencoderKL, model / "vae", torch.float32, "cpu"), staging / "vae", torch.float16)
    for task in DEFAULT_TASKS:
        folder = get_task(task).unet_folders[0]
        source = (unets or {}).get(task, model / folder)
        unet = load_model(UNet2DConditionModel, source, torch.float32, "cpu")
        save_model(unet, staging / folder, torch.float16)
    for name in (CACHE_NAME, SETTINGS_NAME):
        shutil.copy(model / name, staging / name)
    (staging / "model_index.json").write_text(json.dumps(
        {"_class_name": "GenPerceptPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
         "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
