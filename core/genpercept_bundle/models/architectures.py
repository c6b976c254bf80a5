"""UNet and VAE configurations we know, and writers of random-init checkpoints in the exact layout of each
family's release (GenPercept's genpercept-models; the diffusers pipeline folders of Marigold, E2E-FT and Lotus).

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

# The smallest UNet with SD2.1's four up blocks, which GenPercept's DPT head reads.
TINY4_UNET = {**SMALL_UNET, "attention_head_dim": [2, 4, 4, 4], "block_out_channels": [16, 32, 32, 32],
              "cross_attention_dim": 32, "norm_num_groups": 8}

# CompVis/stable-diffusion-v1-4's UNet (DMP's base): CLIP-L's 768-wide text, 8 heads, no linear projections
SD14_UNET = {**SD21_UNET, "attention_head_dim": 8, "cross_attention_dim": 768, "sample_size": 64,
             "upcast_attention": False, "use_linear_projection": False}

ARCHITECTURES = {"sd21": (SD21_UNET, SD2_VAE), "sd14": (SD14_UNET, SD2_VAE), "small": (SMALL_UNET, SMALL_VAE),
                 "tiny": (TINY_UNET, TINY_VAE), "tiny4": (TINY4_UNET, TINY_VAE)}


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


def write_random_dpt_checkpoint(folder, architecture="tiny4", seed=0, vae_dtype=torch.float16, embedding=True,
                                unet_dtype=torch.float32):
    """GenPercept's DPT-head release layout (guangkaixu/genpercept-disparity-dpt-head): ``unet_disparity_dpt_head_v2/``
    (an SD2.1-config UNet saved without conv_norm_out/conv_out), ``dpt_head_identity/model.safetensors`` (no
    config), ``vae/`` and ``model_index.json``."""
    from safetensors.torch import save_file

    from .dpt_head import HEAD_FOLDER, HEAD_WEIGHTS, DPTHead, without_output_layers

    folder = Path(folder)
    unet_config, vae_config = ARCHITECTURES[architecture]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(unet_config)
    save_model(without_output_layers(unet), folder / "unet_disparity_dpt_head_v2", unet_dtype)
    head = DPTHead(tuple(unet_config["block_out_channels"]))
    (folder / HEAD_FOLDER).mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, folder / HEAD_FOLDER / HEAD_WEIGHTS)
    save_model(AutoencoderKL.from_config(vae_config), folder / "vae", vae_dtype)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "GenPerceptPipeline", "_diffusers_version": "0.24.0",
                    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    if embedding:
        from .embedding import save_embedding_cache

        save_embedding_cache(folder, {"v2": torch.randn(1, 2, unet_config["cross_attention_dim"])})
    return folder


# The released pipeline folders' configs (the parts that matter to the families; models/families.py reads them).
_SD2_V_PREDICTION = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
                     "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False,
                     "steps_offset": 1, "thresholding": False}
PIPELINE_LAYOUTS = {
    # prs-eth/marigold-depth-v1-1 and -normals-v1-1: zero-SNR betas, trailing timesteps, 4 steps by default
    "marigold": ({"_class_name": "MarigoldDepthPipeline", "prediction_type": "depth", "default_denoising_steps": 4,
                  "default_processing_resolution": 768, "scale_invariant": True, "shift_invariant": True},
                 {"_class_name": "DDIMScheduler", **_SD2_V_PREDICTION, "rescale_betas_zero_snr": True,
                  "timestep_spacing": "trailing"}, {"in_channels": 8}),
    # prs-eth/marigold-depth-lcm-v1-0
    "marigold-lcm": ({"_class_name": "MarigoldDepthPipeline", "prediction_type": "depth", "default_denoising_steps": 1,
                      "default_processing_resolution": 768, "scale_invariant": True, "shift_invariant": True},
                     {"_class_name": "LCMScheduler", **_SD2_V_PREDICTION, "set_alpha_to_one": True,
                      "original_inference_steps": 50, "timestep_scaling": 10.0, "timestep_spacing": "leading"},
                     {"in_channels": 8}),
    # GonzaloMG/marigold-e2e-ft-depth: a StableDiffusionPipeline folder with Marigold's 8-channel UNet
    "e2e-ft": ({"_class_name": "StableDiffusionPipeline"},
               {"_class_name": "DDIMScheduler", **_SD2_V_PREDICTION, "timestep_spacing": "trailing"},
               {"in_channels": 8}),
    # jingheya/lotus-depth-g-v1-0 / -d-v1-0: SD2-base UNets with a 4-dim projection class embedding
    "lotus-g": ({"_class_name": "LotusGPipeline"},
                {"_class_name": "DDPMScheduler", **_SD2_V_PREDICTION, "prediction_type": "epsilon"},
                {"in_channels": 8, "class_embed_type": "projection", "projection_class_embeddings_input_dim": 4}),
    "lotus-d": ({"_class_name": "LotusDPipeline"},
                {"_class_name": "DDPMScheduler", **_SD2_V_PREDICTION, "prediction_type": "epsilon"},
                {"in_channels": 4, "class_embed_type": "projection", "projection_class_embeddings_input_dim": 4}),
}


def write_random_pipeline(folder, family="marigold", task="depth", architecture="tiny", seed=0, vae_dtype=torch.float32,
                          unet_dtype=torch.float32, embedding=True):
    """Write a random-init model in ``family``'s released diffusers pipeline layout: model_index.json, unet/,
    vae/, scheduler/scheduler_config.json (and, with ``embedding=True``, our cached empty-text embedding instead of
    the text_encoder/ + tokenizer/ a release holds). ``task``: "depth", "normal" or "disparity". Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index, scheduler, unet_changes = PIPELINE_LAYOUTS[family]
    unet_config, vae_config = ARCHITECTURES[architecture]
    if index["_class_name"].startswith("Marigold"):
        kind = {"normal": "normals"}.get(task, task)
        index = {**index, "prediction_type": kind}
        if kind == "normals":
            index = {**index, "_class_name": "MarigoldNormalsPipeline", "use_full_z_range": True}
            index = {k: v for k, v in index.items() if not k.endswith("_invariant")}
    torch.manual_seed(seed)
    save_model(UNet2DConditionModel.from_config({**unet_config, **unet_changes}), folder / "unet", unet_dtype)
    save_model(AutoencoderKL.from_config(vae_config), folder / "vae", vae_dtype)
    components = {"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                  "scheduler": ["diffusers", scheduler["_class_name"]], "text_encoder": ["transformers", "CLIPTextModel"],
                  "tokenizer": ["transformers", "CLIPTokenizer"]}
    (folder / "model_index.json").write_text(json.dumps({**index, "_diffusers_version": "0.31.0", **components},
                                                        indent=2))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
    if embedding:
        from .embedding import save_embedding_cache

        save_embedding_cache(folder, {"v2": torch.randn(1, 2, unet_config["cross_attention_dim"])})
    return folder


# CompVis/stable-diffusion-v1-4's scheduler_config.json (DMP builds its DDIM from it)
SD14_SCHEDULER = {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
                  "steps_offset": 1, "trained_betas": None, "clip_sample": False}


def write_random_dmp(folder, base, task="depth", architecture="tiny", seed=0, rank=4, embedding=True,
                     unet_dtype=torch.float32):
    """A DMP checkpoint folder (``<task>-...-notext/pytorch_lora_weights.safetensors``: rank-4 LoRA weights in
    diffusers' old attention-processor keys, as DMP's ``save_attn_procs`` wrote them) and a random Stable Diffusion
    base in the diffusers layout (unet/, vae/, scheduler/). Returns (checkpoint folder, base folder)."""
    from safetensors.torch import save_file

    folder, base = Path(folder), Path(base)
    unet_config, vae_config = ARCHITECTURES[architecture]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(unet_config)
    save_model(unet, base / "unet", unet_dtype)
    save_model(AutoencoderKL.from_config(vae_config), base / "vae")
    (base / "scheduler").mkdir(parents=True, exist_ok=True)
    (base / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD14_SCHEDULER, indent=2))
    lora = {}
    for name, module in unet.named_modules():
        if name.endswith(("attn1", "attn2")):
            for projection, layer in (("to_q", module.to_q), ("to_k", module.to_k), ("to_v", module.to_v),
                                      ("to_out", module.to_out[0])):
                lora[f"{name}.processor.{projection}_lora.down.weight"] = torch.randn(rank, layer.in_features) * 0.1
                lora[f"{name}.processor.{projection}_lora.up.weight"] = torch.randn(layer.out_features, rank) * 0.1
    folder.mkdir(parents=True, exist_ok=True)
    save_file(lora, folder / "pytorch_lora_weights.safetensors")
    if embedding:
        from .embedding import save_embedding_cache

        save_embedding_cache(base, {"v1": torch.randn(1, 77, unet_config["cross_attention_dim"])})
    return folder, base
