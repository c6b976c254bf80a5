"""Training a task's UNet with GenPercept's recipe: frozen VAE, the one-step method, pixel-space losses.

Input: the photo's latent; output: the target latent, through the same ``OneStepPerceiver`` as at
inference (the timestep from the model folder's settings); loss on the frozen decoder's output, by
the task's registry entry (depth MSE + 0.5 SSI + 2 gradient, normals angular, mattes and masks MSE).
Left-right flips (mirrored as the task says), gradient accumulation, warm-up + exponential decay,
checkpoint/resume, optional LoRA (PEFT), optional weight averaging (EMA), any device/dtype.

Optionally a cheaper first stage (``latent_steps``) regresses the encoded target latent instead
(Marigold-style MSE, no decoder pass): on a CPU the decoder's forward and backward are ~5x the
small UNet's cost. That stage can also draw on ``augmented_copies`` (crops, mirrors, colour
changes; encoded once).

A run folder holds ``checkpoint/`` (resume state, safetensors + JSON) and the result in the
released layout (``unet_<task>_v2/``).
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel

from ..inference.methods import OneStepPerceiver
from ..models.architectures import ARCHITECTURES
from ..models.embedding import resolve_embedding
from ..models.settings import ModelSettings
from ..models.weights import load_model, save_model
from ..tasks import task_with_truth
from .config import TrainConfig
from .distributed import Processes
from .latents import augmented_latents, encode_latents, photo_latents
from .loop import autocast, optimise, saved_step
from .losses import task_loss
from .targets import TrainingSet, flip_batch, random_batch


def train_unet(dataset, task: str, vae_folder, out: Path, config: TrainConfig, init_unet=None,
               architecture="small", embedding_model=None, resume=True, scenes: int | None = None, log=print,
               progress_line: int = 0) -> Path:
    """Train one task's UNet; writes ``out/unet_<task>_v2`` and returns it.

    ``init_unet``: a UNet folder to fine-tune (e.g. a real GenPercept/SD2.1 UNet);
    otherwise ``architecture``'s config from random init. ``embedding_model``: the
    model folder whose empty-text embedding and settings to use (default: the VAE's parent).
    """
    task = task_with_truth(task, "train")
    out = Path(out)
    processes = Processes(config.device)
    device = processes.device(config.device)
    torch.manual_seed(config.seed)
    vae = load_model(AutoencoderKL, Path(vae_folder), torch.float32, device)
    unet = _trainable_unet(config, init_unet, architecture, device)
    model_dir = Path(embedding_model) if embedding_model else Path(vae_folder).parent
    embedding, _ = resolve_embedding(model_dir, "v2", _base(unet).config.cross_attention_dim)
    timestep = ModelSettings.of_folder(model_dir).timestep

    data = TrainingSet(dataset, "train", [task.name], config.width, config.height, limit=scenes)
    log(f"{task.name}: {len(data)} training samples at {config.width}x{config.height}")
    with processes.main_first():  # the main process encodes and caches, the others read the cache
        latents = photo_latents(vae, vae_folder, data, out / "checkpoint", device)  # photos, mirrored: [N,4,h,w]
    checkpoint_dir = out / "checkpoint" / task.name
    target_latents = None
    if not resume or saved_step(checkpoint_dir) < config.latent_steps:
        target_latents = _target_latents(dataset, task, vae, data, config, device, log)
    method = OneStepPerceiver(vae, processes.prepare(unet), embedding.to(device), task, timestep)
    batch_loss = _batch_loss(task, method, data, latents, target_latents, config, processes)
    optimizer = torch.optim.Adam([p for p in unet.parameters() if p.requires_grad], lr=config.lr)
    optimise(task.name, unet, optimizer, config, batch_loss, checkpoint_dir, resume, log, progress_line, processes)
    final = unet.merge_and_unload() if config.lora_rank else unet
    folder = out / task.unet_folders[0]
    if processes.is_main:
        save_model(final.eval(), folder)
    processes.wait()
    return folder


def _trainable_unet(config: TrainConfig, init_unet, architecture: str, device):
    if init_unet:
        unet = load_model(UNet2DConditionModel, Path(init_unet), torch.float32, device)
    else:
        unet = UNet2DConditionModel.from_config(ARCHITECTURES[architecture][0]).to(device)
    unet.train().requires_grad_(config.lora_rank == 0)
    if config.lora_rank:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank,
                          target_modules=["to_q", "to_k", "to_v", "to_out.0"])
        unet = get_peft_model(unet, lora)
    return unet


def _target_latents(dataset, task, vae, data: TrainingSet, config: TrainConfig, device, log) -> dict:
    """The latent stage's regression targets: the encoded targets of every scene and of its mirror image, and of
    the augmented copies if asked for."""
    targets, masks = data.targets[task.name], data.masks[task.name]
    everything = torch.ones(len(data), dtype=torch.bool)
    encoded = {"targets": encode_latents(vae, targets, device),
               "mirrored": encode_latents(vae, flip_batch(targets, masks, everything, task)[0], device)}
    if config.augmented_copies:
        encoded["copy_photos"], encoded["copy_targets"] = augmented_latents(dataset, task.name, vae, config,
                                                                            len(data), device)
        log(f"{task.name}: {len(encoded['copy_photos'])} augmented copies encoded")
    return encoded


def _batch_loss(task, method, data: TrainingSet, latents, target_latents, config: TrainConfig,
                processes: Processes):
    """``batch_loss(generator, step)`` for ``optimise``: a random batch, half of it mirrored (this process's share of
    it); the latent stage's MSE on the target latent, then the task's loss on the decoded map."""
    targets, masks = data.targets[task.name], data.masks[task.name]
    device = method.embedding.device

    def batch_loss(generator, step):
        index, flip, rgb_latent = random_batch(latents, len(data), config.batch_size, generator, processes)
        copy = torch.randint(0, config.augmented_copies + 1, (config.batch_size,), generator=generator) \
            if config.augmented_copies and step < config.latent_steps else None
        in_latent_stage = step < config.latent_steps
        if in_latent_stage:
            truth = torch.where(flip[:, None, None, None], target_latents["mirrored"][index],
                                target_latents["targets"][index])
            if copy is not None:
                copy = processes.share(copy)
                pick = (copy > 0)[:, None, None, None]  # copy 0: the scene itself
                pool = (copy - 1).clamp(min=0) * len(data) + index
                rgb_latent = torch.where(pick, target_latents["copy_photos"][pool], rgb_latent)
                truth = torch.where(pick, target_latents["copy_targets"][pool], truth)
        with autocast(config):
            target_latent = method.perceive(rgb_latent.to(device))
            if in_latent_stage:
                return F.mse_loss(target_latent.float(), truth.to(device))
            decoded = method.decode_latent(target_latent)  # frozen decoder, gradients flow through
        target, mask = flip_batch(targets[index], masks[index], flip, task)
        return task_loss(task, decoded.float(), target.to(device), mask.to(device))

    return batch_loss


def _base(unet):
    return unet.get_base_model() if hasattr(unet, "get_base_model") else unet
