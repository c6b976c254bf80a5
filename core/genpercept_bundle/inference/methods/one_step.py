"""GenPercept's method: one UNet call at the model's fixed timestep with the empty-text embedding; the target
latent is minus its output (v-prediction with all betas = 1), decoded by the VAE.

Every method has this shape, which the predictor and the trainer share:

- ``encode``:   the photo in [-1, 1] [B,3,h,w] -> its latent (the VAE's posterior mean x scaling factor);
- ``perceive``: photo latent (+ starting noise for methods that start from noise) -> target latent;
- ``decode``:   target latent -> the map at the processing size, [B,C,h,w] in [0, 1] (C: the task's channels).
"""

import torch
from diffusers import UNet2DConditionModel

from ...models.embedding import resolve_embedding
from ...models.weights import load_model
from ...tasks import Task


class OneStepPerceiver:
    name = "genpercept one-step"

    def __init__(self, vae, unet, embedding: torch.Tensor, task: Task, timestep: int):
        self.vae, self.unet, self.embedding, self.task = vae, unet, embedding, task  # embedding [1,N,D]
        self.timestep = int(timestep)

    @classmethod
    def load(cls, model, task: Task, vae, dtype, device, text_encoder=None):
        """The task's ``unet_<task>_v{1,2}/`` of a GenPercept folder and the empty-text embedding it was trained with."""
        folder = model.unet_folder(task)
        unet = load_model(UNet2DConditionModel, folder, dtype, device)
        kind = model.embedding_kind(task)
        embedding, origin = resolve_embedding(model.path, kind, unet.config.cross_attention_dim, text_encoder)
        method = cls(vae, unet, embedding.to(device, dtype), task, model.settings.timestep)
        method.origin = {"unet": folder.name, "embedding": f"{kind} {list(embedding.shape)} from {origin}"}
        return method

    def modules(self) -> dict:
        return {"unet": self.unet}

    def encode(self, image: torch.Tensor, generator=None) -> torch.Tensor:
        return encode_image(self.vae, image)

    def initial_noise(self, rgb_latent: torch.Tensor, generator=None):
        return None

    def perceive(self, rgb_latent: torch.Tensor, noise=None, generator=None, steps=None) -> torch.Tensor:
        timestep = torch.tensor([self.timestep], device=rgb_latent.device, dtype=torch.long)
        conditioning = self.embedding.expand(rgb_latent.shape[0], -1, -1)  # [B,N,D]
        return -self.unet(rgb_latent, timestep, encoder_hidden_states=conditioning).sample  # [B,4,h/8,w/8]

    def decode_latent(self, target_latent: torch.Tensor) -> torch.Tensor:
        """The VAE's decoding, [B,3,h,w] in about [-1, 1] (what the training losses compare)."""
        return decode_latent(self.vae, target_latent)

    def decode(self, target_latent: torch.Tensor) -> torch.Tensor:
        return to_unit_range(self.decode_latent(target_latent), self.task.channels)

    def provenance(self) -> dict:
        return {"method": self.name, **getattr(self, "origin", {}), "timestep": self.timestep}


def encode_image(vae, image: torch.Tensor, generator=None, sample=False) -> torch.Tensor:
    """[B,3,h,w] in [-1, 1] -> the VAE's posterior mean x scaling factor [B,4,h/8,w/8]: photos at inference and in
    training, and the training targets' latents. ``sample``: a draw from the posterior (with ``generator``) instead of
    its mean, as Lotus and DMP encode."""
    posterior = vae.encode(image).latent_dist
    return (posterior.sample(generator) if sample else posterior.mode()) * vae.config.scaling_factor


def decode_latent(vae, latent: torch.Tensor) -> torch.Tensor:
    """A latent (scaled as ``encode_image`` gives it) -> the VAE's decoding [B,3,h,w], about [-1, 1]."""
    return vae.decode(latent / vae.config.scaling_factor).sample


def to_unit_range(decoded: torch.Tensor, channels: int) -> torch.Tensor:
    """A decoded map [B,3,h,w] in about [-1, 1] -> [B,C,h,w] in [0, 1]: the channel mean for scalar maps, clipped,
    (x + 1) / 2 -- GenPercept's and Marigold's post-processing alike."""
    prediction = keep_non_finite(decoded.float())
    if channels == 1:
        prediction = prediction.mean(dim=1, keepdim=True)
    return (prediction.clip(-1.0, 1.0) + 1.0) / 2.0


def keep_non_finite(decoded: torch.Tensor) -> torch.Tensor:
    """Infinite values as NaN, which clipping keeps: a damaged model's output stays recognisable as such."""
    nan = float("nan")
    return torch.nan_to_num(decoded, nan=nan, posinf=nan, neginf=nan)
