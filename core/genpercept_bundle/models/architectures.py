"""UNet and VAE configurations we know, and a writer of random-init checkpoints
in the exact layout of the GenPercept release.

The SD2.1 configs are the ones the released ``unet_*_v2`` / ``vae`` folders use.
Random checkpoints let tests and benchmarks exercise the real loading and
inference path without the 3.46 GB downloads.
"""

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from ..tasks import get_task
from .weights import save_model

SD21_UNET = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 96,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": True,
    "use_linear_projection": True,
}

SD2_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# Smallest models of the same families: 8x VAE downsampling, cross-attention
# UNet with linear projections and upcast attention, like SD2.1.
TINY_UNET = {
    **SD21_UNET,
    "attention_head_dim": [2, 4],
    "block_out_channels": [32, 64],
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 16,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}

TINY_VAE = {
    **SD2_VAE,
    "block_out_channels": [8, 16, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}

# Our embedded default: three UNets and the VAE fit 30 MB in fp16 and run 512x512 in well under 2 s on a CPU.
SMALL_UNET = {
    **SD21_UNET,
    "attention_head_dim": [2, 4, 6, 6],
    "block_out_channels": [32, 64, 96, 96],
    "cross_attention_dim": 64,
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "sample_size": 32,
}

SMALL_VAE = {
    **SD2_VAE,
    "block_out_channels": [16, 32, 64, 64],
    "layers_per_block": 1,
    "mid_block_add_attention": False,
    "norm_num_groups": 8,
    "sample_size": 256,
}

ARCHITECTURES = {"sd21": (SD21_UNET, SD2_VAE), "small": (SMALL_UNET, SMALL_VAE), "tiny": (TINY_UNET, TINY_VAE)}


def write_random_checkpoint(
    folder,
    tasks=("depth", "normal", "matte"),
    architecture="tiny",
    seed=0,
    vae_dtype=torch.float16,
    unet_dtype=torch.float32,
    embedding=True,
):
    """Write random-init models in the released ``genpercept-models`` layout.

    ``unet_<task>_v2/`` per task (fp32, as released), ``vae/`` (fp16, as
    released), ``model_index.json`` and, with ``embedding=True``, a cached
    random empty-text embedding. Returns the folder as a Path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet_config, vae_config = ARCHITECTURES[architecture]
    torch.manual_seed(seed)
    for name in tasks:
        unet_folder = get_task(name).unet_folders[0]
        save_model(UNet2DConditionModel.from_config(unet_config), folder / unet_folder, unet_dtype)
    save_model(AutoencoderKL.from_config(vae_config), folder / "vae", vae_dtype)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "GenPerceptPipeline", "_diffusers_version": "0.24.0",
                    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, indent=2)
    )
    if embedding:
        from .embedding import save_embedding_cache

        dim = unet_config["cross_attention_dim"]
        save_embedding_cache(folder, {"v2": torch.randn(1, 2, dim), "v1": torch.randn(1, 77, dim)})
    return folder
