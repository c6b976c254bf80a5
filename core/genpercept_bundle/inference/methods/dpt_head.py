"""GenPercept's DPT-head variant: the one-step UNet (t = 1, empty text, the photo latent alone) gives the features
of its four up blocks, and a DPT head (models/dpt_head.py) turns them into the map; the VAE decoder is never used.
The released head's output is min-max normalised per image (GenPercept: over its batch of one), then resized back;
heads trained by this bundle (``genpercept train --decoder dpt``) regress the [-1, 1] target instead, and say so in
their ``config.json`` (``"output": "unit_range"``): clipped and mapped to [0, 1] like a decoded map.

Released as ``unet_disparity_dpt_head_v2/`` + ``dpt_head_identity/model.safetensors`` (disparity, 1 = near); ours
as ``unet_<task>_dpt_head_v2/`` + ``dpt_head_<task>/``."""

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from ...errors import GenPerceptError
from ...models.dpt_head import HEAD_FOLDER, HEAD_WEIGHTS, DPTHead, UpBlockFeatures, without_output_layers
from ...models.embedding import resolve_embedding
from ...models.families import read_json
from ...models.weights import load_model
from ...tasks import Task
from .one_step import encode_image, keep_non_finite, to_unit_range

OUTPUT_LAYERS = ("conv_out.", "conv_norm_out.")


class DPTHeadPerceiver:
    name = "genpercept one-step, DPT head"

    def __init__(self, vae, unet, head: DPTHead, embedding: torch.Tensor, task: Task, timestep: int,
                 output: str = "min_max"):
        self.vae, self.unet, self.head, self.embedding, self.task = vae, unet, head, embedding, task
        self.timestep = int(timestep)
        self.output = output  # "min_max" (the release) or "unit_range" (our heads: a [-1, 1] regression)
        self.features = UpBlockFeatures(unet)

    @classmethod
    def load(cls, model, task: Task, vae, dtype, device, text_encoder=None):
        folder = model.unet_folder(task)
        unet = load_model(UNet2DConditionModel, folder, dtype, device, adapt=without_output_layers, ignore=OUTPUT_LAYERS)
        head, output = load_head(head_folder(folder), unet.config.block_out_channels, dtype, device)
        embedding, origin = resolve_embedding(model.path, model.embedding_kind(task), unet.config.cross_attention_dim,
                                              text_encoder)
        method = cls(vae, unet, head, embedding.to(device, dtype), task, model.settings.timestep, output)
        method.origin = {"unet": folder.name, "head": head_folder(folder).name,
                         "embedding": f"{list(embedding.shape)} from {origin}"}
        return method

    def modules(self) -> dict:
        return {"unet": self.unet, "head": self.head}

    def encode(self, image: torch.Tensor, generator=None) -> torch.Tensor:
        return encode_image(self.vae, image)

    def initial_noise(self, rgb_latent: torch.Tensor, generator=None):
        return None

    def perceive(self, rgb_latent: torch.Tensor, noise=None, generator=None, steps=None) -> list[torch.Tensor]:
        """The up blocks' features, finest first."""
        timestep = torch.tensor([self.timestep], device=rgb_latent.device, dtype=torch.long)
        return self.features(rgb_latent, timestep, self.embedding.repeat(rgb_latent.shape[0], 1, 1))

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """[B,1,h,w] in [0, 1]: the head's output, min-max normalised per image (or, for our heads, clipped from
        [-1, 1]). Its size is 32 x the coarsest feature's, the photo's size when that is a multiple of 64 (larger
        otherwise: the resize back takes it)."""
        maps = keep_non_finite(self.head(features).float())
        if self.output == "unit_range":
            return to_unit_range(maps, 1)
        low = maps.amin(dim=(1, 2, 3), keepdim=True)
        high = maps.amax(dim=(1, 2, 3), keepdim=True)
        return (maps - low) / (high - low)

    def provenance(self) -> dict:
        return {"method": self.name, **getattr(self, "origin", {}), "timestep": self.timestep}


def head_folder(unet_folder) -> "Path":
    """The head beside a DPT-variant UNet: the release's ``dpt_head_identity/``, or ``dpt_head_<task>/`` (ours)."""
    task = unet_folder.name.removeprefix("unet_").split("_dpt_head")[0]
    for name in (f"dpt_head_{task}", HEAD_FOLDER):
        if (unet_folder.parent / name / HEAD_WEIGHTS).is_file():
            return unet_folder.parent / name
    raise GenPerceptError(f"{unet_folder.name} is a DPT-head UNet but {unet_folder.parent} has no "
                          f"{HEAD_FOLDER}/{HEAD_WEIGHTS} beside it; download it with the UNet")


def load_head(folder, channels, dtype, device) -> tuple[DPTHead, str]:
    """The head's weights (safetensors), strictly, and its output kind; its width and output from ``config.json``
    when there is one (ours), else the release's: 256 wide, min-max normalised."""
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    head = DPTHead(tuple(channels), int(config.get("fusion_hidden_size", 256)))
    try:
        head.load_state_dict(load_file(folder / HEAD_WEIGHTS), strict=True)
    except (RuntimeError, OSError) as exc:
        raise GenPerceptError(f"the DPT head in {folder} does not fit its UNet ({str(exc).splitlines()[0][:200]}); "
                              "it belongs to another model or is damaged") from exc
    return head.to(device, dtype).eval().requires_grad_(False), str(config.get("output", "min_max"))
