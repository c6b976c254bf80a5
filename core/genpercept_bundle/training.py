"""Training with GenPercept's recipe: frozen VAE, one-step UNet, pixel-space losses through the decoder.

- ``train_vae``: reconstruction training of a VAE from scratch (our small model
  has no pretrained VAE to start from); photos and ground-truth maps alike.
- ``train_unet``: the perceiver. Input: the RGB latent (posterior mean x
  scaling factor); output: minus the target latent, as the release's
  v-prediction with all betas = 1 yields; loss on the frozen decoder's output:
  depth MSE + 0.5 SSI + 2 gradient, normals angular, matte MSE. Left-right
  flips (negating normal X), gradient accumulation, warm-up + exponential
  decay, checkpoint/resume, optional LoRA (PEFT), optional weight averaging
  (EMA), any device/dtype.
  Optionally a cheaper first stage (``latent_steps``) regresses the encoded
  target latent instead (Marigold-style MSE, no decoder pass): on a CPU the
  decoder's forward and backward are ~5x the small UNet's cost. That stage can
  also draw on ``augmented_copies`` (crops, mirrors, colour changes; encoded once).

A run folder holds ``checkpoint/`` (resume state, safetensors + JSON) and the
result in the released layout (``unet_<task>_v2/`` or ``vae/``).
"""

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .architectures import ARCHITECTURES
from .augmentation import augment_sample
from .checkpoint import load_model, save_model
from .dataset import Sample, photo_file, read_sample, read_settings, sample_ids
from .errors import GenPerceptError
from .image_io import load_image
from .losses import angular_loss, depth_loss, matte_loss
from .processing import normalise_rgb
from .tasks import get_task
from .text_embedding import resolve_embedding
from .writers import atomic_path


@dataclass
class TrainConfig:
    steps: int = 1000  # in total, latent stage included
    latent_steps: int = 0  # the first steps regress the encoded target latent (MSE) instead of pixel losses
    augmented_copies: int = 0  # cropped, mirrored, recoloured copies of every scene mixed into the latent stage
    batch_size: int = 8
    grad_accumulation: int = 1
    lr: float = 3e-5  # the paper's, for fine-tuning SD2.1; from scratch use ~1e-3
    warmup: int = 100
    final_lr_fraction: float = 0.01
    ema_decay: float = 0.0  # > 0: save an exponential moving average of the weights (e.g. 0.999), not the last step
    width: int = 192
    height: int = 144
    seed: int = 2024
    checkpoint_every: int = 200
    lora_rank: int = 0  # 0 = full fine-tuning
    device: str = "cpu"
    dtype: str = "float32"  # autocast dtype for the forward pass; weights stay fp32

    def __post_init__(self):
        if not 0 <= self.latent_steps <= self.steps:
            raise GenPerceptError(f"latent steps ({self.latent_steps}) must be between 0 and the total steps "
                                  f"({self.steps}): --steps counts both stages")
        if self.augmented_copies < 0:
            raise GenPerceptError(f"augmented copies must be 0 or more, got {self.augmented_copies}")
        if not 0 <= self.ema_decay < 1:
            raise GenPerceptError(f"EMA decay must be in [0, 1) (0 = off, typical 0.999), got {self.ema_decay}")


def lr_factor(step: int, config: TrainConfig) -> float:
    """GenPercept's IterExponential: linear warm-up, then exponential decay to ``final_lr_fraction``."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.final_lr_fraction ** min(progress, 1.0)


# ---------------------------------------------------------------- data


def _fit(image: np.ndarray, width: int, height: int, interpolation) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize to width x height."""
    h, w = image.shape[:2]
    if w * height > h * width:
        crop = round(h * width / height)
        image = image[:, (w - crop) // 2:(w - crop) // 2 + crop]
    else:
        crop = round(w * height / width)
        image = image[(h - crop) // 2:(h - crop) // 2 + crop]
    return cv2.resize(image, (width, height), interpolation=interpolation)


def normalise_depth(depth: np.ndarray, valid: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """GenPercept's scale_shift_depth: 2%/98% quantiles of valid depth -> [-1, 1], clipped; sky = far (1)."""
    values = depth[valid]
    if values.size == 0:
        return np.ones_like(depth)
    low, high = np.quantile(values, [0.02, 0.98])
    mapped = np.clip((depth - low) / max(high - low, 1e-6) * 2.0 - 1.0, -1.0, 1.0)
    return np.where(sky, 1.0, mapped).astype(np.float32)


class TrainingSet:
    """A dataset split in memory at the training size: RGB uint8 and, per task, target [N,C,H,W] in [-1, 1]
    and mask [N,1,H,W] (no task: the photos alone)."""

    def __init__(self, root, split, tasks, width: int, height: int, limit: int | None = None):
        if limit is not None and limit < 1:
            raise GenPerceptError(f"the number of training scenes must be at least 1 (got {limit}); "
                                  "leave --scenes out to use them all")
        settings = read_settings(root)
        ids = sample_ids(root, split)[:limit]
        self.photo_files = [photo_file(root, split, sample_id) for sample_id in ids]
        rgb, targets, masks = [], {t: [] for t in tasks}, {t: [] for t in tasks}
        for sample_id, photo in zip(ids, self.photo_files):
            sample = read_sample(root, split, sample_id, settings) if tasks else Sample(sample_id, load_image(photo))
            rgb.append(_fit(sample.rgb, width, height, cv2.INTER_AREA))
            for task in tasks:
                target, mask = self._target(sample, task, width, height)
                targets[task].append(target)
                masks[task].append(mask)
        self.rgb = _channels_first(rgb)  # [N,3,H,W] uint8
        self.targets = {t: _channels_first(v) for t, v in targets.items()}
        self.masks = {t: torch.from_numpy(np.stack(v))[:, None] for t, v in masks.items()}

    @staticmethod
    def _target(sample, task, width, height):
        nearest = cv2.INTER_NEAREST
        if task == "depth":
            if sample.depth is None:
                raise GenPerceptError(f"sample {sample.id} has no depth; depth training needs <id>_depth.png everywhere")
            depth, sky = _fit(sample.depth, width, height, nearest), _fit(sample.sky.astype(np.uint8), width, height, nearest) > 0
            valid = depth > 0
            return normalise_depth(depth, valid, sky)[..., None], valid | sky
        if task == "normal":
            if sample.normal is None:
                raise GenPerceptError(f"sample {sample.id} has no normals; normal training needs <id>_normal.png")
            normal = _fit(sample.normal, width, height, nearest)
            return normal, np.linalg.norm(normal, axis=-1) > 0.5
        if sample.alpha is None:
            raise GenPerceptError(f"sample {sample.id} has no alpha; matte training needs <id>_alpha.png")
        alpha = _fit(sample.alpha, width, height, cv2.INTER_AREA)
        return (alpha * 2.0 - 1.0)[..., None], np.ones(alpha.shape, bool)

    def __len__(self):
        return self.rgb.shape[0]


def flip_batch(target, mask, flip: torch.Tensor, task: str):
    """Left-right flip the items where ``flip`` is True; normals also negate X."""
    if not flip.any():
        return target, mask
    target, mask = target.clone(), mask.clone()
    target[flip] = target[flip].flip(-1)
    mask[flip] = mask[flip].flip(-1)
    if task == "normal":
        target[flip, 0] = -target[flip, 0]
    return target, mask


# ---------------------------------------------------------------- resume state


def save_state(folder: Path, model: torch.nn.Module, optimizer, step: int, extra: dict,
               average: "WeightAverage | None" = None):
    """Resume state without pickle: trainable weights, their average and Adam moments as safetensors, the rest JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    tensors = {f"model.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    if average is not None:
        tensors.update({f"ema.{n}": t.cpu().contiguous() for n, t in average.shadow.items()})
    for parameter, state in optimizer.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"adam.{key}.{names[id(parameter)]}"] = state[key].detach().cpu().contiguous()
    adam_steps = {names[id(p)]: float(s["step"]) for p, s in optimizer.state.items()}
    temp = folder / "state.safetensors.tmp"
    save_file(tensors, temp)
    temp.replace(folder / "state.safetensors")
    (folder / "state.json").write_text(json.dumps({"step": step, "adam_steps": adam_steps, **extra}, indent=2))


def _history(checkpoint_dir: Path, start: int) -> list[float]:
    """Per-step losses of the run so far (kept in the resume state)."""
    state = checkpoint_dir / "state.json"
    return json.loads(state.read_text()).get("history", [])[:start] if start and state.is_file() else []


def _saved_step(checkpoint_dir: Path) -> int:
    state = checkpoint_dir / "state.json"
    return json.loads(state.read_text())["step"] if state.is_file() else 0


def load_state(folder: Path, model: torch.nn.Module, optimizer,
               average: "WeightAverage | None" = None) -> tuple[int, dict]:
    tensors = load_file(folder / "state.safetensors")
    meta = json.loads((folder / "state.json").read_text())
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, parameter in parameters.items():
            if f"model.{name}" in tensors:
                parameter.copy_(tensors[f"model.{name}"])
        if average is not None:
            for name, shadow in average.shadow.items():
                # a state saved without an average (EMA switched on at resume) starts it from the weights
                shadow.copy_(tensors.get(f"ema.{name}", parameters[name]))
    for name, step in meta["adam_steps"].items():
        parameter = parameters[name]
        optimizer.state[parameter] = {"step": torch.tensor(step),
                                      "exp_avg": tensors[f"adam.exp_avg.{name}"].to(parameter.device),
                                      "exp_avg_sq": tensors[f"adam.exp_avg_sq.{name}"].to(parameter.device)}
    return meta["step"], meta


class WeightAverage:
    """Exponential moving average of the trainable weights, with diffusers' EMAModel warm-up of the decay
    ((1 + k) / (10 + k) after k steps) so early steps are not averaged with the random init.

    ``optimise`` restarts it where the latent stage hands over to the pixel losses: the short pixel stage
    would otherwise be averaged away into the latent stage's weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.parameters = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone() for n, p in self.parameters.items()}

    @torch.no_grad()
    def restart(self):
        for name, parameter in self.parameters.items():
            self.shadow[name].copy_(parameter)

    @torch.no_grad()
    def update(self, steps_since_start: int):
        k = steps_since_start
        weight = 1.0 - min(self.decay, (1 + k) / (10 + k))
        for name, parameter in self.parameters.items():
            self.shadow[name].lerp_(parameter, weight)

    @torch.no_grad()
    def copy_to_model(self):
        for name, parameter in self.parameters.items():
            parameter.copy_(self.shadow[name])


# ---------------------------------------------------------------- the perceiver


def _autocast(config: TrainConfig):
    dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]
    return torch.autocast(torch.device(config.device).type, dtype=dtype, enabled=dtype is not None)


def optimise(name: str, model, optimizer, config: TrainConfig, batch_loss, checkpoint_dir: Path, resume: bool, log,
             progress_line: int = 0):
    """The shared loop: resume, schedule, gradient accumulation and clipping, progress bar with the loss,
    checkpoints, weight averaging. Leaves the weights to save in ``model``.

    ``batch_loss(generator, step)`` draws a batch and returns its loss tensor. ``progress_line``: the terminal
    line of the progress bar, so runs in parallel processes each keep their own.
    """
    from tqdm import tqdm

    average = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    start = 0
    if resume and (checkpoint_dir / "state.json").is_file():
        start, _ = load_state(checkpoint_dir, model, optimizer, average)
        log(f"{name}: resumed at step {start}")

    generator = torch.Generator().manual_seed(config.seed + start)
    trainable = [p for p in model.parameters() if p.requires_grad]
    progress = tqdm(range(start, config.steps), initial=start, total=config.steps, desc=f"train {name}", disable=None,
                    position=progress_line)
    started, recent, history = time.perf_counter(), [], _history(checkpoint_dir, start)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config)
        for _ in range(config.grad_accumulation):
            loss = batch_loss(generator, step)
            (loss / config.grad_accumulation).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if average is not None:
            stage_start = config.latent_steps if step >= config.latent_steps else 0
            if step == stage_start > 0:
                average.restart()
            average.update(step - stage_start)
        recent = (recent + [loss.item()])[-50:]
        history.append(loss.item())
        progress.set_postfix(loss=f"{np.mean(recent):.4f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            save_state(checkpoint_dir, model, optimizer, step + 1, {"config": asdict(config), "history": history},
                       average)
            if progress.disable:
                log(f"{name}: step {step + 1}/{config.steps} loss {np.mean(recent):.4f} "
                    f"({time.perf_counter() - started:.0f} s)")
    if average is not None:
        average.copy_to_model()


def task_loss(task: str, decoded: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if task == "normal":
        return angular_loss(decoded, target, mask)
    prediction = decoded.mean(dim=1, keepdim=True)
    return depth_loss(prediction, target, mask) if task == "depth" else matte_loss(prediction, target, mask)


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, device, batch_size=32) -> torch.Tensor:
    """Photos (uint8 [N,3,H,W]) or maps (float [N,C,H,W] in [-1, 1], 1 channel replicated to 3) -> latents
    [N,4,h,w] (posterior mean x scaling factor), as at inference."""
    latents = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start:start + batch_size]
        chunk = normalise_rgb(chunk, torch.float32) if chunk.dtype == torch.uint8 else chunk.expand(-1, 3, -1, -1)
        latents.append(vae.encode(chunk.to(device)).latent_dist.mode().cpu() * vae.config.scaling_factor)
    return torch.cat(latents)


def photo_latents(vae: AutoencoderKL, vae_folder, data: TrainingSet, cache_folder: Path, device):
    """Latents of the training photos and of their mirror images, encoded once: kept in ``cache_folder``
    under a key of the VAE's files and the photo files, so a resumed run, another task trained into the same
    folder and the default recipe's task workers read them instead of encoding again."""
    digest = hashlib.sha256(f"{tuple(data.rgb.shape)} {device}".encode())
    for path in sorted(Path(vae_folder).iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    for path in data.photo_files:
        stat = path.stat()
        digest.update(f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}".encode())
    key, cache = digest.hexdigest(), Path(cache_folder) / "photo_latents.safetensors"
    if cache.is_file():
        with safe_open(cache, "pt") as stored:
            if stored.metadata().get("key") == key:
                return stored.get_tensor("photos"), stored.get_tensor("mirrored")
    photos, mirrored = encode_latents(vae, data.rgb, device), encode_latents(vae, data.rgb.flip(-1), device)
    with atomic_path(cache) as temp:
        save_file({"photos": photos.contiguous(), "mirrored": mirrored.contiguous()}, temp, metadata={"key": key})
    return photos, mirrored


def train_unet(dataset, task: str, vae_folder, out: Path, config: TrainConfig, init_unet=None,
               architecture="small", embedding_model=None, resume=True, scenes: int | None = None, log=print,
               progress_line: int = 0) -> Path:
    """Train one task's UNet; writes ``out/unet_<task>_v2`` and returns it.

    ``init_unet``: a UNet folder to fine-tune (e.g. a real GenPercept/SD2.1 UNet);
    otherwise ``architecture``'s config from random init. ``embedding_model``: the
    model folder whose empty-text embedding to use (default: the VAE's parent).
    """
    task_name = get_task(task).name
    out = Path(out)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    vae = load_model(AutoencoderKL, Path(vae_folder), torch.float32, device)
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
    model_dir = Path(embedding_model) if embedding_model else Path(vae_folder).parent
    embedding, _ = resolve_embedding(model_dir, "v2", _base(unet).config.cross_attention_dim)
    embedding = embedding.to(device)

    data = TrainingSet(dataset, "train", [task_name], config.width, config.height, limit=scenes)
    log(f"{task_name}: {len(data)} training samples at {config.width}x{config.height}")
    latents, flipped_latents = photo_latents(vae, vae_folder, data, out / "checkpoint", device)  # [N,4,h,w] each
    targets, masks = data.targets[task_name], data.masks[task_name]
    optimizer = torch.optim.Adam([p for p in unet.parameters() if p.requires_grad], lr=config.lr)
    checkpoint_dir = out / "checkpoint" / task_name
    if not resume or _saved_step(checkpoint_dir) < config.latent_steps:
        everything = torch.ones(len(data), dtype=torch.bool)
        target_latents = encode_latents(vae, targets, device)
        flipped_target_latents = encode_latents(vae, flip_batch(targets, masks, everything, task_name)[0], device)
        if config.augmented_copies:
            copy_latents, copy_target_latents = augmented_latents(dataset, task_name, vae, config, len(data), device)
            log(f"{task_name}: {len(copy_latents)} augmented copies encoded")
    timestep = torch.tensor([1], device=device)
    scale = vae.config.scaling_factor

    def batch_loss(generator, step):
        index = torch.randint(0, len(data), (config.batch_size,), generator=generator)
        flip = torch.rand(config.batch_size, generator=generator) < 0.5
        rgb_latent = torch.where(flip[:, None, None, None], flipped_latents[index], latents[index])
        in_latent_stage = step < config.latent_steps
        if in_latent_stage:
            truth = torch.where(flip[:, None, None, None], flipped_target_latents[index], target_latents[index])
            if config.augmented_copies:
                copy = torch.randint(0, config.augmented_copies + 1, (config.batch_size,), generator=generator)
                pick = (copy > 0)[:, None, None, None]  # copy 0: the scene itself
                pool = (copy - 1).clamp(min=0) * len(data) + index
                rgb_latent = torch.where(pick, copy_latents[pool], rgb_latent)
                truth = torch.where(pick, copy_target_latents[pool], truth)
        with _autocast(config):
            conditioning = embedding.expand(config.batch_size, -1, -1)
            target_latent = -unet(rgb_latent.to(device), timestep, encoder_hidden_states=conditioning).sample
            if in_latent_stage:
                return F.mse_loss(target_latent.float(), truth.to(device))
            decoded = vae.decode(target_latent / scale).sample  # frozen decoder, gradients flow through
        target, mask = flip_batch(targets[index], masks[index], flip, task_name)
        return task_loss(task_name, decoded.float(), target.to(device), mask.to(device))

    optimise(task_name, unet, optimizer, config, batch_loss, checkpoint_dir, resume, log, progress_line)
    final = unet.merge_and_unload() if config.lora_rank else unet
    return save_model(final.eval(), out / get_task(task_name).unet_folders[0])


def augmented_latents(dataset, task: str, vae, config: TrainConfig, scenes: int, device, chunk=256):
    """``config.augmented_copies`` copies of the first ``scenes`` training scenes (``augment_sample``), encoded:
    (photo latents, target latents), each [copies * scenes, 4, h, w], copy by copy. Seeded by ``config.seed``."""
    settings = read_settings(dataset)
    ids = sample_ids(dataset, "train")[:scenes]
    rng = np.random.default_rng(config.seed)
    photo_latents, target_latents = [], []
    for _ in range(config.augmented_copies):
        for start in range(0, len(ids), chunk):
            photos, targets = [], []
            for sample_id in ids[start:start + chunk]:
                sample = augment_sample(read_sample(dataset, "train", sample_id, settings), rng)
                photos.append(_fit(sample.rgb, config.width, config.height, cv2.INTER_AREA))
                targets.append(TrainingSet._target(sample, task, config.width, config.height)[0])
            photo_latents.append(encode_latents(vae, _channels_first(photos), device))
            target_latents.append(encode_latents(vae, _channels_first(targets), device))
    return torch.cat(photo_latents), torch.cat(target_latents)


def _channels_first(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _base(unet):
    return unet.get_base_model() if hasattr(unet, "get_base_model") else unet


# ---------------------------------------------------------------- the VAE


def _map_images(data: TrainingSet) -> torch.Tensor:
    """Photos and ground-truth maps as 3-channel images in [-1, 1], for VAE reconstruction training."""
    maps = [t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t for t in data.targets.values()]
    return torch.cat([normalise_rgb(data.rgb, torch.float32), *maps])


def train_vae(dataset, out: Path, config: TrainConfig, architecture="small", kl_weight=1e-6, resume=True,
              scenes: int | None = None, log=print) -> Path:
    """Train a VAE from scratch on photos and maps (of the first ``scenes`` scenes, default all); writes
    ``out/vae`` with a fitted scaling_factor."""
    out = Path(out)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    vae = AutoencoderKL.from_config(ARCHITECTURES[architecture][1]).to(device).train()
    tasks_with_truth = [t for t in ("depth", "normal", "matte") if _has_ground_truth(dataset, t)]
    data = TrainingSet(dataset, "train", tasks_with_truth, config.width, config.height, limit=scenes)
    images = _map_images(data)  # [M,3,H,W]
    photos = images[:len(data)]
    log(f"vae: {len(images)} images ({len(photos)} photos) at {config.width}x{config.height}")
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr)
    checkpoint_dir = out / "checkpoint" / "vae"

    def batch_loss(generator, step):
        index = torch.randint(0, len(images), (config.batch_size,), generator=generator)
        batch = images[index].to(device)
        flip = torch.rand(config.batch_size, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        with _autocast(config):
            posterior = vae.encode(batch).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample.float()
        return F.l1_loss(reconstruction, batch) + F.mse_loss(reconstruction, batch) + kl_weight * posterior.kl().mean()

    optimise("vae", vae, optimizer, config, batch_loss, checkpoint_dir, resume, log)
    vae.eval()
    with torch.no_grad():  # SD's recipe: scale latents to unit variance
        sample = photos[:64].to(device)
        std = float(vae.encode(sample).latent_dist.mode().std())
    vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))
    log(f"vae: scaling_factor {vae.config.scaling_factor:.5f}")
    return save_model(vae, out / "vae")


def _has_ground_truth(dataset, task) -> bool:
    suffix = {"depth": "depth", "normal": "normal", "matte": "alpha"}[task]
    return any((Path(dataset) / "train").glob(f"*_{suffix}.png"))


