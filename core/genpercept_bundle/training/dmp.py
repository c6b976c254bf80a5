"""Training a DMP checkpoint: a rank-4 LoRA on every attention projection of a frozen Stable Diffusion UNet, taught
the deterministic interpolation from the photo latent x to the target latent y (DMP's ``train.py``):

    t ~ U{0..999},  x_t = sqrt(a_t) y + sqrt(1 - a_t) x  (the photo plays the noise),
    loss = MSE(UNet(x_t, t, empty prompt), v),  v = sqrt(a_t) x - sqrt(1 - a_t) y  (v-prediction).

Written as a DMP checkpoint folder (``pytorch_lora_weights.safetensors`` in diffusers' old attention-processor keys,
as DMP's releases are), which ``--model FOLDER --base BASE`` runs through inference/methods/dmp.py.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from safetensors.torch import save_file

from ..inference.methods.dmp import LORA_WEIGHTS
from ..models.embedding import resolve_embedding
from ..models.families import read_json
from ..models.weights import load_model
from ..tasks import task_with_truth
from .config import TrainConfig
from .distributed import Processes
from .latents import encode_latents, photo_latents
from .loop import autocast, optimise
from .targets import TrainingSet, flip_batch, random_batch

LORA_RANK = 4
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def train_dmp(dataset, task: str, base, out: Path, config: TrainConfig, resume=True, scenes: int | None = None,
              log=print) -> Path:
    """Train ``task``'s DMP LoRA over the Stable Diffusion folder ``base``; returns the checkpoint folder ``out``."""
    from peft import LoraConfig

    task = task_with_truth(task, "train")
    out, base = Path(out), Path(base)
    processes = Processes(config.device)
    device = processes.device(config.device)
    torch.manual_seed(config.seed)
    vae = load_model(AutoencoderKL, base / "vae", torch.float32, device)
    unet = load_model(UNet2DConditionModel, base / "unet", torch.float32, device)
    unet.add_adapter(LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=list(PROJECTIONS)))
    unet.train()
    embedding, _ = resolve_embedding(base, "v1", unet.config.cross_attention_dim)
    alphas = DDIMScheduler.from_config(read_json(base / "scheduler" / "scheduler_config.json")).alphas_cumprod

    data = TrainingSet(dataset, "train", [task.name], config.width, config.height, limit=scenes)
    log(f"{task.name} DMP LoRA: {len(data)} training samples at {config.width}x{config.height}")
    with processes.main_first():
        photos = photo_latents(vae, base / "vae", data, out / "checkpoint", device)
    targets, masks = data.targets[task.name], data.masks[task.name]
    everything = torch.ones(len(data), dtype=torch.bool)
    goals = (encode_latents(vae, targets, device),
             encode_latents(vae, flip_batch(targets, masks, everything, task)[0], device))

    def batch_loss(generator, step):
        index, flip, x = random_batch(photos, len(data), config.batch_size, generator, processes)
        t = processes.share(torch.randint(0, len(alphas), (config.batch_size,), generator=generator))
        x = x.to(device)
        y = torch.where(flip[:, None, None, None], goals[1][index], goals[0][index]).to(device)
        a = alphas[t].to(device)[:, None, None, None]
        x_t = a.sqrt() * y + (1 - a).sqrt() * x
        velocity = a.sqrt() * x - (1 - a).sqrt() * y
        with autocast(config):
            predicted = unet(x_t, t.to(device), encoder_hidden_states=embedding.to(device).repeat(len(t), 1, 1)).sample
        return F.mse_loss(predicted.float(), velocity)

    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=config.lr, weight_decay=1e-2)
    optimise(f"{task.name} dmp", unet, optimizer, config, batch_loss, out / "checkpoint" / f"{task.name}_dmp", resume,
             log, processes=processes)
    if processes.is_main:
        save_file(released_lora_keys(unet), out / LORA_WEIGHTS)
    processes.wait()
    return out


def released_lora_keys(unet) -> dict[str, torch.Tensor]:
    """The UNet's LoRA weights under the keys DMP's releases use (diffusers' old attention processors):
    ``<attention>.processor.to_q_lora.down.weight`` for peft's ``<attention>.to_q.lora_A.weight``."""
    from peft import get_peft_model_state_dict

    released = {}
    for name, tensor in get_peft_model_state_dict(unet).items():
        module, kind = name.rsplit(".lora_", 1)  # "...attn1.to_q", "A.weight"
        attention, projection = module.rsplit(".to_", 1)
        projection = "to_" + projection.removesuffix(".0")
        released[f"{attention}.processor.{projection}_lora.{'down' if kind.startswith('A') else 'up'}.weight"] = (
            tensor.detach().float().contiguous().cpu())
    return released
