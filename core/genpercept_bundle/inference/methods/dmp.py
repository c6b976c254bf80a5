"""DMP (shinying/dmp): deterministic multi-step interpolation. A rank-4 LoRA on every attention projection of a
Stable Diffusion v1.4 UNet turns the photo latent, standing in for the noise at the first step, into the target latent
through DDIM with v-prediction (5 steps: t = 801, 601, 401, 201, 1); the last ``prev_sample`` is decoded.

The LoRA folder (``pytorch_lora_weights.safetensors``, diffusers' old attention-processor keys) comes from the DMP
release; the base model (unet/, vae/, scheduler/, text_encoder/ + tokenizer/ for the empty-prompt embedding) is one
the user supplies. "-notext" checkpoints run unconditionally: the empty prompt padded to 77 tokens.

Outputs: depth = channel mean / 2 + 0.5 (ZoeDepth depth / 8 in training: near small), normals Omnidata-encoded with
+X right, +Y down, +Z away from the viewer (inferred from Omnidata's measured outputs: a floor has G < 0.5), turned
into +Y up, +Z toward the viewer here.
"""

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from safetensors.torch import load_file

from ...errors import GenPerceptError
from ...models.embedding import resolve_embedding
from ...models.families import read_json
from ...models.weights import load_model
from ...tasks import Task
from .one_step import decode_latent, encode_image, keep_non_finite, to_unit_range

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
PICKLED_LORA = "pytorch_lora_weights.bin"
CONVERT = ("python -c \"import torch, safetensors.torch as st; sd = torch.load('pytorch_lora_weights.bin', "
           "map_location='cpu', weights_only=True); st.save_file({k: v.contiguous() for k, v in sd.items()}, "
           "'pytorch_lora_weights.safetensors')\"")


class DMPInterpolator:
    name = "DMP (deterministic interpolation, LoRA)"

    def __init__(self, vae, unet, embedding: torch.Tensor, scheduler, task: Task, steps: int = 5):
        self.vae, self.unet, self.embedding, self.scheduler, self.task = vae, unet, embedding, scheduler, task
        self.steps = int(steps)

    @classmethod
    def load(cls, model, task: Task, vae, dtype, device, text_encoder=None, steps=None):
        base = model.base
        unet = load_model(UNet2DConditionModel, base / "unet", dtype, device)
        attach_lora(unet, lora_weights(model.path))
        scheduler = DDIMScheduler.from_config(read_json(base / "scheduler" / "scheduler_config.json"),
                                              prediction_type="v_prediction")
        embedding, origin = resolve_embedding(base, "v1", unet.config.cross_attention_dim, text_encoder)
        method = cls(vae, unet, embedding.to(device, dtype), scheduler, task, steps or model.family.steps)
        method.origin = {"lora": model.path.name, "base": str(base), "embedding": f"{list(embedding.shape)} from {origin}"}
        return method

    def modules(self) -> dict:
        return {"unet": self.unet}

    def encode(self, image: torch.Tensor, generator=None) -> torch.Tensor:
        """A sample of the VAE posterior, as DMP draws it (from the run's seeded generator here)."""
        return encode_image(self.vae, image, generator, sample=True)

    def initial_noise(self, rgb_latent: torch.Tensor, generator=None):
        return None

    def perceive(self, rgb_latent: torch.Tensor, noise=None, generator=None, steps=None) -> torch.Tensor:
        conditioning = self.embedding.repeat(rgb_latent.shape[0], 1, 1)
        latent = rgb_latent  # the photo latent plays the noise at the first timestep
        self.scheduler.set_timesteps(steps or self.steps, device=rgb_latent.device)
        for t in self.scheduler.timesteps:
            velocity = self.unet(latent, t, encoder_hidden_states=conditioning).sample
            latent = self.scheduler.step(velocity, t, latent).prev_sample
        return latent

    def decode(self, target_latent: torch.Tensor) -> torch.Tensor:
        decoded = keep_non_finite(decode_latent(self.vae, target_latent).float())
        maps = to_unit_range(decoded, self.task.channels)
        if self.task.unit_vectors:  # Omnidata's Y down, Z away -> Y up, Z toward the viewer
            maps[:, 1:] = 1 - maps[:, 1:]
        return maps

    def provenance(self) -> dict:
        return {"method": self.name, **getattr(self, "origin", {}), "steps": self.steps}


def lora_weights(folder) -> dict[str, torch.Tensor]:
    """The LoRA state dict of a DMP checkpoint folder; a pickle file is refused with the command that converts it."""
    if (folder / LORA_WEIGHTS).is_file():
        return load_file(folder / LORA_WEIGHTS)
    if (folder / PICKLED_LORA).is_file():
        raise GenPerceptError(f"{folder / PICKLED_LORA} is a pickle file, which is never loaded (it can run code). "
                              f"If you trust it, convert it once in that folder with:\n  {CONVERT}")
    raise GenPerceptError(f"{folder} has no {LORA_WEIGHTS}: is it a DMP checkpoint folder?")


def attach_lora(unet, state: dict[str, torch.Tensor]):
    """DMP's rank-4 LoRA (diffusers' old attention-processor keys) on the UNet's attention projections, unfused,
    with scale 1, as DMP computes it: projection(x) + up(down(x))."""
    try:
        unet.load_lora_adapter(state, prefix=None, adapter_name="dmp")
    except ImportError as exc:
        raise GenPerceptError("DMP's LoRA needs peft: pip install peft") from exc
    except (ValueError, RuntimeError, KeyError) as exc:
        raise GenPerceptError(f"these LoRA weights do not fit the base UNet ({str(exc).splitlines()[0][:200]}): DMP "
                              "checkpoints are LoRAs for Stable Diffusion v1.4 (CompVis/stable-diffusion-v1-4)") from exc
    return unet
