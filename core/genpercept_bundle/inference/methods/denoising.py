"""Marigold and its peers: a UNet that sees the photo latent (beside the latent being denoised), run through a
scheduler or called once.

- Marigold v1-0/v1-1 and Marigold LCM (diffusers' ``MarigoldDepthPipeline`` / ``MarigoldNormalsPipeline``): start from
  Gaussian noise, the checkpoint's scheduler for ``steps`` steps over [photo latent | prediction latent], each step's
  ``prev_sample`` kept;
- E2E-FT (``VisualComputingInstitute/diffusion-e2e-ft``, its Marigold pipeline): the same UNet input with zeros
  instead of noise, DDIM with trailing spacing for one step (t = 999) whatever the stored config says, and the clean
  estimate ``pred_original_sample`` kept; depth min-max normalised per image;
- Lotus-G / Lotus-D (``EnVision-Research/Lotus`` ``pipeline.py``): [photo latent | noise] (G) or the photo latent
  alone (D), one UNet call at t = 999 whose output is the clean latent, the task switcher's class labels
  [sin 1, sin 0, cos 1, cos 0]; the photo latent is a sample of the VAE posterior (drawn after G's noise).

Each family's own output convention is converted here, once: depth/disparity in [0, 1] as the task says, normals
with +X right, +Y up, +Z toward the viewer (E2E-FT and Lotus give +X left: X is negated).
"""

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, LCMScheduler, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor

from ...errors import GenPerceptError
from ...models.embedding import resolve_embedding
from ...models.families import Family, read_json
from ...models.weights import load_model
from ...tasks import Task
from .one_step import decode_latent, encode_image, keep_non_finite, to_unit_range

SCHEDULERS = {cls.__name__: cls for cls in (DDIMScheduler, DDPMScheduler, LCMScheduler)}


@dataclass(frozen=True)
class DenoisingRecipe:
    """What differs between the families that share this method."""

    start: str  # "noise" (Gaussian) or "zeros"
    result: str  # what a scheduler step hands on: "prev_sample" or "pred_original_sample"
    outputs: str  # the family's post-processing: "marigold", "e2e-ft" or "lotus"
    fixed_timestep: int | None = None  # one UNet call at this timestep, its output the clean latent (Lotus)
    trailing: bool = False  # the scheduler's timesteps with trailing spacing, whatever its config says
    posterior_sample: bool = False  # the photo latent is drawn from the VAE posterior, not its mean
    normals_x_left: bool = False  # the family's normals have +X pointing left


RECIPES = {
    "marigold": DenoisingRecipe("noise", "prev_sample", "marigold"),
    "marigold-lcm": DenoisingRecipe("noise", "prev_sample", "marigold"),
    "e2e-ft": DenoisingRecipe("zeros", "pred_original_sample", "e2e-ft", trailing=True, normals_x_left=True),
    "lotus-g": DenoisingRecipe("noise", "pred_original_sample", "lotus", fixed_timestep=999, posterior_sample=True,
                               normals_x_left=True),
    "lotus-d": DenoisingRecipe("zeros", "pred_original_sample", "lotus", fixed_timestep=999, posterior_sample=True,
                               normals_x_left=True),
}

LOTUS_ANNOTATION_SWITCH = (1.0, 0.0)  # Lotus's task switcher: [1, 0] annotates, [0, 1] reconstructs the photo


class LatentDenoiser:
    def __init__(self, family: Family, vae, unet, embedding, scheduler, task: Task, steps: int,
                 full_z_range: bool = False, class_labels: torch.Tensor | None = None, invariance=(True, True)):
        self.family, self.recipe = family, RECIPES[family.name]
        self.name = family.title
        self.vae, self.unet, self.embedding, self.scheduler, self.task = vae, unet, embedding, scheduler, task
        self.steps = int(steps)
        self.full_z_range = full_z_range
        self.class_labels = class_labels  # [1,K] or None
        self.invariance = invariance  # (scale, shift): how an ensemble's depth maps are aligned

    @classmethod
    def load(cls, family: Family, folder, task: Task, vae, dtype, device, text_encoder=None, steps=None):
        index = read_json(folder / "model_index.json")
        recipe = RECIPES[family.name]
        unet = load_model(UNet2DConditionModel, folder / "unet", dtype, device, in_channels=(4, 8))
        embedding, origin = resolve_embedding(folder, "v2", unet.config.cross_attention_dim, text_encoder)
        scheduler = None if recipe.fixed_timestep is not None else load_scheduler(folder / "scheduler", recipe.trailing)
        labels = None
        if unet.config.class_embed_type == "projection":
            switch = torch.tensor([LOTUS_ANNOTATION_SWITCH])
            labels = torch.cat([torch.sin(switch), torch.cos(switch)], dim=-1).to(device, dtype)  # [1,4]
        method = cls(family, vae, unet, embedding.to(device, dtype), scheduler, task,
                     steps or index.get("default_denoising_steps") or default_steps(index, family),
                     full_z_range=bool(index.get("use_full_z_range", False)), class_labels=labels,
                     invariance=(bool(index.get("scale_invariant", True)), bool(index.get("shift_invariant", True))))
        method.origin = {"unet": "unet", "embedding": f"v2 {list(embedding.shape)} from {origin}"}
        return method

    def modules(self) -> dict:
        return {"unet": self.unet}

    def encode(self, image: torch.Tensor, generator=None) -> torch.Tensor:
        return encode_image(self.vae, image, generator, sample=self.recipe.posterior_sample)

    def initial_noise(self, rgb_latent: torch.Tensor, generator=None) -> torch.Tensor:
        if self.recipe.start == "zeros":
            return torch.zeros_like(rgb_latent)
        return randn_tensor(rgb_latent.shape, generator=generator, device=rgb_latent.device, dtype=rgb_latent.dtype)

    def perceive(self, rgb_latent: torch.Tensor, noise: torch.Tensor, generator=None, steps=None) -> torch.Tensor:
        conditioning = self.embedding.repeat(rgb_latent.shape[0], 1, 1)  # [B,N,D], contiguous as diffusers has it
        labels = None if self.class_labels is None else self.class_labels.expand(rgb_latent.shape[0], -1)

        def unet(latent, t):
            model_input = torch.cat([rgb_latent, latent], dim=1) if self.unet.config.in_channels == 8 else rgb_latent
            return self.unet(model_input, t, encoder_hidden_states=conditioning, class_labels=labels).sample

        if self.recipe.fixed_timestep is not None:
            return unet(noise, torch.tensor(self.recipe.fixed_timestep, device=rgb_latent.device))
        latent = noise
        self.scheduler.set_timesteps(steps or self.steps, device=rgb_latent.device)
        for t in self.scheduler.timesteps:
            step = self.scheduler.step(unet(latent, t), t, latent, generator=generator)
            latent = getattr(step, self.recipe.result)
        return latent

    def decode(self, target_latent: torch.Tensor) -> torch.Tensor:
        decoded = keep_non_finite(decode_latent(self.vae, target_latent).float())
        outputs = self.recipe.outputs
        if outputs == "lotus":  # clamp(x / 2 + 0.5), then the channel mean
            maps = (decoded / 2 + 0.5).clamp(0, 1)
            maps = maps.mean(dim=1, keepdim=True) if self.task.channels == 1 else maps
        elif not self.task.unit_vectors:
            maps = to_unit_range(decoded, self.task.channels)
            if outputs == "e2e-ft":  # min-max per image
                low = maps.amin(dim=(1, 2, 3), keepdim=True)
                high = maps.amax(dim=(1, 2, 3), keepdim=True)
                maps = torch.where(high > low, (maps - low) / (high - low).clamp(min=1e-12), torch.zeros_like(maps))
        elif outputs == "e2e-ft":  # normalised twice, by norm + 1e-5
            normals = decoded / (decoded.norm(dim=1, keepdim=True) + 1e-5)
            maps = normals / (normals.norm(dim=1, keepdim=True) + 1e-5)
        else:  # Marigold: clipped, Z from [-1, 1] to [0, 1] unless the model uses the full range, normalised
            normals = decoded.clip(-1.0, 1.0)
            if not self.full_z_range:
                normals[:, 2] = normals[:, 2] * 0.5 + 0.5
            maps = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-6)
        if self.task.unit_vectors and self.recipe.normals_x_left:
            maps[:, 0] = (1 - maps[:, 0]) if outputs == "lotus" else -maps[:, 0]
        return maps

    @property
    def normals_as_vectors(self) -> bool:
        """Whether ``decode`` gives normals as vectors in [-1, 1] (resized and ensembled as such, like diffusers'
        and E2E-FT's pipelines do) rather than as (n + 1) / 2."""
        return self.recipe.outputs != "lotus"

    def provenance(self) -> dict:
        details = {"method": self.name, **getattr(self, "origin", {})}
        if self.recipe.fixed_timestep is not None:
            return {**details, "timestep": self.recipe.fixed_timestep}
        return {**details, "steps": self.steps, "scheduler": type(self.scheduler).__name__,
                "timestep_spacing": self.scheduler.config.get("timestep_spacing")}


def default_steps(index: dict, family: Family) -> int:
    """When model_index.json names none: Marigold v1-0's original pipeline ran 10 steps, the others their family's."""
    return 10 if index.get("_class_name") == "MarigoldPipeline" else family.steps


def load_scheduler(folder, trailing=False):
    """The checkpoint's scheduler from its ``scheduler_config.json`` (a config: nothing is unpickled). ``trailing``:
    E2E-FT's DDIM with trailing spacing, whatever scheduler the folder names."""
    config = read_json(folder / "scheduler_config.json")
    if trailing:
        return DDIMScheduler.from_config(config, timestep_spacing="trailing")
    name = config.get("_class_name")
    if name not in SCHEDULERS:
        raise GenPerceptError(f"{folder} asks for a {name} scheduler; this bundle runs {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name].from_config(config)
