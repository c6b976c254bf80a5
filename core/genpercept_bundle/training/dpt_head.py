"""Training a DPT head (models/dpt_head.py) on a one-step UNet's up-block features, in place of the VAE decoder:
GenPercept's custom-decoder variant. The UNet is frozen (only the head learns) or fine-tuned with it, as GenPercept's
released disparity model was.

The head regresses the task's [-1, 1] target with the task's loss (depth: MSE + 0.5 SSI + 2 gradient, mattes: MSE),
its output resized to the training size (the head gives 32 x the coarsest up-block's size, the photo's only when
that is a multiple of 64). No decoder pass at all: cheaper to train and to run than the VAE decoder.

Writes ``out/unet_<task>_dpt_head_v2/`` (the UNet without conv_norm_out/conv_out) and ``out/dpt_head_<task>/``
(``model.safetensors`` + ``config.json``: width, ``"output": "unit_range"``), beside the VAE's model folder they
are used with.
"""

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

from ..errors import GenPerceptError
from ..inference.methods.dpt_head import OUTPUT_LAYERS, DPTHeadPerceiver
from ..models.dpt_head import HEAD_WEIGHTS, DPTHead, without_output_layers
from ..models.embedding import resolve_embedding
from ..models.settings import ModelSettings
from ..models.weights import load_model, save_model
from ..tasks import task_with_truth
from .config import TrainConfig
from .distributed import Processes
from .latents import photo_latents
from .loop import autocast, optimise
from .losses import task_loss
from .targets import TrainingSet, flip_batch, random_batch


def train_dpt_head(dataset, task: str, vae_folder, init_unet, out: Path, config: TrainConfig, freeze_unet=True,
                   fusion: int = 64, embedding_model=None, resume=True, scenes: int | None = None, log=print) -> Path:
    """Train ``task``'s DPT head on the features of the UNet in ``init_unet`` (a ``unet_<task>_v2`` folder, e.g. the
    embedded model's); returns the head's folder."""
    task = task_with_truth(task, "train")
    if task.channels != 1:
        raise GenPerceptError(f"the DPT head predicts one channel; {task.name} has {task.channels} (train it with the "
                              "VAE decoder)")
    if init_unet is None:
        raise GenPerceptError("a DPT head is trained on an existing UNet's features: pass --init with a "
                              "unet_<task>_v2 folder (e.g. the embedded model's)")
    if config.latent_steps:
        raise GenPerceptError("--latent-steps regresses the VAE's latent; a DPT head has none: leave it at 0")
    out = Path(out)
    processes = Processes(config.device)
    device = processes.device(config.device)
    torch.manual_seed(config.seed)
    vae = load_model(AutoencoderKL, Path(vae_folder), torch.float32, device)
    unet = load_model(UNet2DConditionModel, Path(init_unet), torch.float32, device, adapt=without_output_layers,
                      ignore=OUTPUT_LAYERS)
    head = DPTHead(tuple(unet.config.block_out_channels), fusion).to(device)
    unet.train().requires_grad_(not freeze_unet)
    head.train().requires_grad_(True)
    model_dir = Path(embedding_model) if embedding_model else Path(vae_folder).parent
    embedding, _ = resolve_embedding(model_dir, "v2", unet.config.cross_attention_dim)
    method = DPTHeadPerceiver(vae, unet, head, embedding.to(device), task, ModelSettings.of_folder(model_dir).timestep,
                              output="unit_range")

    data = TrainingSet(dataset, "train", [task.name], config.width, config.height, limit=scenes)
    log(f"{task.name} DPT head: {len(data)} training samples at {config.width}x{config.height}, "
        f"UNet {'frozen' if freeze_unet else 'fine-tuned with it'}")
    with processes.main_first():
        latents = photo_latents(vae, vae_folder, data, out / "checkpoint", device)
    trainable = torch.nn.ModuleDict({"unet": unet, "head": head})
    batch_loss = _batch_loss(task, method, data, latents, config, processes)
    optimizer = torch.optim.Adam([p for p in trainable.parameters() if p.requires_grad], lr=config.lr)
    optimise(f"{task.name} dpt head", trainable, optimizer, config, batch_loss, out / "checkpoint" / f"{task.name}_dpt",
             resume, log, processes=processes)
    unet_folder, head_folder = out / f"unet_{task.name}_dpt_head_v2", out / f"dpt_head_{task.name}"
    if processes.is_main:
        save_model(unet.eval(), unet_folder)
        head_folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, head_folder / HEAD_WEIGHTS)
        (head_folder / "config.json").write_text(json.dumps({"fusion_hidden_size": fusion, "output": "unit_range",
                                                             "unet": unet_folder.name}, indent=2))
    processes.wait()
    return head_folder


def _batch_loss(task, method: DPTHeadPerceiver, data: TrainingSet, latents, config: TrainConfig, processes: Processes):
    targets, masks = data.targets[task.name], data.masks[task.name]
    device = method.embedding.device

    def batch_loss(generator, step):
        index, flip, rgb_latent = random_batch(latents, len(data), config.batch_size, generator, processes)
        target, mask = flip_batch(targets[index], masks[index], flip, task)
        with autocast(config):
            prediction = method.head(method.perceive(rgb_latent.to(device)))  # [B,1,h',w'], about [-1, 1]
        prediction = F.interpolate(prediction.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
        return task_loss(task, prediction, target.to(device), mask.to(device))

    return batch_loss
