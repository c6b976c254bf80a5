"""The method seam: how a photo becomes a map, in three stages the predictor and the trainer share.

- ``encode``:   the photo in [-1, 1] [B,3,h,w] -> its latent (the VAE's posterior mean x scaling factor);
- ``perceive``: photo latent -> target latent;
- ``decode``:   target latent -> the map as decoded [B,3,h',w'], about [-1, 1].

``OneStepPerceiver`` is GenPercept's: one UNet call at the model's fixed timestep with the empty-text
embedding, and the target latent is minus its output (v-prediction with all betas = 1). Another
method (multi-step, a DPT head instead of the VAE decoder...) is another class with these three
methods; resizing, batching, mirroring, provenance and the training losses stay where they are.
"""

import torch


class OneStepPerceiver:
    name = "genpercept one-step"

    def __init__(self, vae, timestep: int):
        self.vae = vae
        self.timestep = int(timestep)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return encode_image(self.vae, image)

    def perceive(self, unet, rgb_latent: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        timestep = torch.tensor([self.timestep], device=rgb_latent.device, dtype=torch.long)
        conditioning = embedding.expand(rgb_latent.shape[0], -1, -1)  # [B,N,D]
        return -unet(rgb_latent, timestep, encoder_hidden_states=conditioning).sample  # [B,4,h/8,w/8]

    def decode(self, target_latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(target_latent / self.vae.config.scaling_factor).sample  # [B,3,h,w]


def encode_image(vae, image: torch.Tensor) -> torch.Tensor:
    """[B,3,h,w] in [-1, 1] -> the VAE's posterior mean x scaling factor [B,4,h/8,w/8]: photos at inference and in
    training, and the training targets' latents."""
    return vae.encode(image).latent_dist.mode() * vae.config.scaling_factor
