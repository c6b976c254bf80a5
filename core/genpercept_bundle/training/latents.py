"""Encoding training photos and targets to latents once, as at inference (the method's encode)."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKL
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic_files import atomic_path
from ..data.augmentation import augment_sample
from ..data.dataset import read_sample, read_settings, sample_ids
from ..inference.methods import encode_image
from ..inference.processing import normalise_rgb
from .config import TrainConfig
from .targets import TrainingSet, channels_first, fit_to_size, target_of


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, device, batch_size=32) -> torch.Tensor:
    """Photos (uint8 [N,3,H,W]) or maps (float [N,C,H,W] in [-1, 1], 1 channel replicated to 3) -> latents
    [N,4,h,w] (posterior mean x scaling factor), as at inference."""
    latents = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start:start + batch_size]
        chunk = normalise_rgb(chunk, torch.float32) if chunk.dtype == torch.uint8 else chunk.expand(-1, 3, -1, -1)
        latents.append(encode_image(vae, chunk.to(device)).cpu())
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
                photos.append(fit_to_size(sample.rgb, config.width, config.height, cv2.INTER_AREA))
                targets.append(target_of(sample, task, config.width, config.height)[0])
            photo_latents.append(encode_latents(vae, channels_first(photos), device))
            target_latents.append(encode_latents(vae, channels_first(targets), device))
    return torch.cat(photo_latents), torch.cat(target_latents)
