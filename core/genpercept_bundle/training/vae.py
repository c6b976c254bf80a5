"""Training the VAE from scratch: reconstruction of photos and ground-truth maps (our small model has no
pretrained VAE to start from)."""

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..errors import GenPerceptError
from ..inference.processing import normalise_rgb
from ..models.architectures import ARCHITECTURES
from ..models.weights import save_model
from ..tasks import DEFAULT_TASKS, get_task
from .config import TrainConfig
from .distributed import Processes
from .loop import autocast, optimise
from .targets import TrainingSet


def _map_images(data: TrainingSet) -> torch.Tensor:
    """Photos and ground-truth maps as 3-channel images in [-1, 1], for VAE reconstruction training."""
    maps = [t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t for t in data.targets.values()]
    return torch.cat([normalise_rgb(data.rgb, torch.float32), *maps])


def train_vae(dataset, out: Path, config: TrainConfig, architecture="small", kl_weight=1e-6, resume=True,
              scenes: int | None = None, log=print) -> Path:
    """Train a VAE from scratch on photos and maps (of the first ``scenes`` scenes, default all); writes
    ``out/vae`` with a fitted scaling_factor."""
    if Processes(config.device).count > 1:
        raise GenPerceptError("train-vae runs in one process; launch it without accelerate (only `train` runs on "
                              "several processes)")
    out = Path(out)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    vae = AutoencoderKL.from_config(ARCHITECTURES[architecture][1]).to(device).train()
    tasks_with_truth = [t for t in DEFAULT_TASKS if _has_ground_truth(dataset, t)]
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
        with autocast(config):
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
    return any((Path(dataset) / "train").glob(f"*_{get_task(task).truth}.png"))
