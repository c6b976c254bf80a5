"""Test oracle: GenPercept's DPT-head disparity inference, re-expressed independently.

Written (not copied) from reading aim-uofa/GenPercept at commit
7cff083bee566e88f0c82259eb7c62c94dd1dca1, files:

* genpercept/models/custom_unet.py   -- ``CustomUNet2DConditionModel.forward(..., return_feature=True)``
* genpercept/models/dpt_head.py      -- ``DPTNeckHeadForUnetAfterUpsampleIdentity`` and its sub-layers
* genpercept/genpercept_pipeline.py  -- ``single_infer`` (customized-head branch) and ``encode_rgb``
* run.py / infer.py                  -- how the UNet (conv_out / conv_norm_out deleted) and the head are loaded
* hf_configs/dpt-sd2.1-unet-after-upsample-general/config.json
* hf_configs/scheduler_beta_1.0_1.0/scheduler_config.json (DDIM, "leading", steps_offset=1 -> t = 1)

Depends only on torch and diffusers (the authors' head subclasses transformers' ``DPTPreTrainedModel`` but
re-declares every layer itself; this module re-expresses those layers in plain torch with the same
state-dict key names, so the released ``dpt_head_identity/model.safetensors`` loads with ``strict=True``).

Forward, in short (SD2.1, 768x768 image -> 96x96 latent):

    latent = mean(quant_conv(vae.encoder(rgb/255*2-1))) * 0.18215          # [B,4,96,96]
    up-block outputs of the UNet at t=1 with the empty-prompt embedding:  # [1280@24,1280@48,640@96,320@96]
    reversed -> [320@96, 640@96, 1280@48, 1280@24]
    head: nearest-x2 + conv on the first (320@96 -> 320@192), 3x3 convs to 256, RefineNet-style fusion
          (24->48->96->192->384), projection+ReLU, conv 256->128, bilinear x2 (768), conv 128->32, ReLU,
          conv 32->1, identity -> [B,768,768]
    pred = (pred - pred.min()) / (pred.max() - pred.min())   # over the whole batch tensor, no epsilon
    clip(0, 1); 1 = near (normalised disparity), 0 = far.

``unet`` may be a plain diffusers ``UNet2DConditionModel`` with or without ``conv_norm_out``/``conv_out``:
they are never touched (the forward is driven block by block here).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LATENT_SCALE_FACTOR = 0.18215  # hard-coded in GenPerceptPipeline.encode_rgb
GENPERCEPT_TIMESTEP = 1  # DDIM(leading, steps_offset=1).set_timesteps(1) -> tensor([1])

# Content of hf_configs/dpt-sd2.1-unet-after-upsample-general/config.json that matters for the head.
SD21_HEAD_CONFIG = {
    "neck_hidden_sizes": [320, 640, 1280, 1280],
    "fusion_hidden_size": 256,
    "add_projection": True,
    "head_in_index": -1,
    "use_batch_norm_in_fusion_residual": False,
    "use_bias_in_fusion_residual": False,
}


# --------------------------------------------------------------------------------------------- head


class _PreActResidual(nn.Module):
    """relu -> conv3x3 -> (bn) -> relu -> conv3x3 -> (bn), plus the input."""

    def __init__(self, width: int, use_bn: bool, bias: bool):
        super().__init__()
        self.use_batch_norm = use_bn
        self.activation1 = nn.ReLU()
        self.convolution1 = nn.Conv2d(width, width, 3, 1, 1, bias=bias)
        self.activation2 = nn.ReLU()
        self.convolution2 = nn.Conv2d(width, width, 3, 1, 1, bias=bias)
        if use_bn:
            self.batch_norm1 = nn.BatchNorm2d(width)
            self.batch_norm2 = nn.BatchNorm2d(width)

    def forward(self, x):
        y = self.convolution1(self.activation1(x))
        if self.use_batch_norm:
            y = self.batch_norm1(y)
        y = self.convolution2(self.activation2(y))
        if self.use_batch_norm:
            y = self.batch_norm2(y)
        return y + x


class _FusionLayer(nn.Module):
    def __init__(self, width: int, use_bn: bool, bias: bool, takes_skip: bool):
        super().__init__()
        self.projection = nn.Conv2d(width, width, kernel_size=1, bias=True)
        if takes_skip:  # the first (coarsest) fusion layer has no residual_layer1 in the authors' code
            self.residual_layer1 = _PreActResidual(width, use_bn, bias)
        self.residual_layer2 = _PreActResidual(width, use_bn, bias)

    def forward(self, x, skip=None):
        if skip is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = x + self.residual_layer1(skip)
        x = self.residual_layer2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.projection(x)


class _FusionStage(nn.Module):
    def __init__(self, n: int, width: int, use_bn: bool, bias: bool):
        super().__init__()
        self.layers = nn.ModuleList(_FusionLayer(width, use_bn, bias, takes_skip=i > 0) for i in range(n))

    def forward(self, feats):
        coarse_first = list(feats)[::-1]
        out = [self.layers[0](coarse_first[0])]
        for skip, layer in zip(coarse_first[1:], self.layers[1:]):
            out.append(layer(out[-1], skip))
        return out


class _Neck(nn.Module):
    def __init__(self, sizes, width: int, use_bn: bool, bias: bool):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, width, kernel_size=3, padding=1, bias=False) for c in sizes)
        self.fusion_stage = _FusionStage(len(sizes), width, use_bn, bias)

    def forward(self, feats):
        return self.fusion_stage([conv(f) for conv, f in zip(self.convs, feats)])


class _NearestUpConv(nn.Module):
    """diffusers-style Upsample2D(use_conv=True): nearest x2 then conv3x3 (key: ``conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _IdentityDepthHead(nn.Module):
    def __init__(self, width: int, add_projection: bool, head_in_index: int):
        super().__init__()
        self.head_in_index = head_in_index
        self.projection = nn.Conv2d(width, width, 3, 1, 1) if add_projection else None
        self.head = nn.Sequential(
            nn.Conv2d(width, width // 2, kernel_size=3, stride=1, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(width // 2, 32, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, kernel_size=1, stride=1, padding=0),
            nn.Identity(),  # "identity" variant: no final ReLU
        )

    def forward(self, fused):
        x = fused[self.head_in_index]
        if self.projection is not None:
            x = torch.relu(self.projection(x))
        return self.head(x).squeeze(1)


class ReferenceDPTHead(nn.Module):
    """Same parameters and key names as GenPercept's DPTNeckHeadForUnetAfterUpsampleIdentity."""

    def __init__(self, cfg: dict):
        super().__init__()
        sizes = list(cfg["neck_hidden_sizes"])
        if len(sizes) != 4:
            raise ValueError("GenPercept's head expects exactly four UNet up-block features")
        width = int(cfg.get("fusion_hidden_size", 256))
        use_bn = bool(cfg.get("use_batch_norm_in_fusion_residual", False))
        bias = cfg.get("use_bias_in_fusion_residual")
        bias = (not use_bn) if bias is None else bool(bias)
        self.feature_upsample_0 = _NearestUpConv(sizes[0])
        self.neck = _Neck(sizes, width, use_bn, bias)
        self.head = _IdentityDepthHead(width, bool(cfg.get("add_projection", True)), int(cfg.get("head_in_index", -1)))

    def forward(self, feats_fine_first):
        """``feats_fine_first``: UNet up-block outputs in reverse order (last up block first). Returns [B,H,W]."""
        feats = list(feats_fine_first)
        feats[0] = self.feature_upsample_0(feats[0])
        return self.head(self.neck(feats))


def build_reference_head(config_dict: dict | None = None) -> ReferenceDPTHead:
    """Build the head from a DPT config dict (e.g. the parsed hf_configs/.../config.json).

    For a non-SD2.1 UNet, ``neck_hidden_sizes`` must equal the UNet's ``block_out_channels`` (in order):
    the reversed up-block outputs have channels block_out_channels[0], [1], [2], [3].
    """
    return ReferenceDPTHead(dict(SD21_HEAD_CONFIG if config_dict is None else config_dict))


# --------------------------------------------------------------------------------------------- UNet


def unet_up_block_features(unet, latent: torch.Tensor, timestep, embedding: torch.Tensor):
    """Outputs of every up block (after its upsampler, if any), in up-block order (coarse -> fine).

    Mirrors UNet2DConditionModel.forward for an SD-style config (no class / addition embeddings, no
    encoder_hid_proj, no adapters) and stops before conv_norm_out / conv_out.
    """
    cfg = unet.config
    if getattr(unet, "class_embedding", None) is not None or cfg.addition_embed_type is not None:
        raise ValueError("only SD-style UNets are supported by this oracle")
    if getattr(unet, "encoder_hid_proj", None) is not None:
        raise ValueError("encoder_hid_proj is not supported by this oracle")

    sample = latent
    if cfg.center_input_sample:
        sample = 2 * sample - 1.0
    up_factor = 2 ** unet.num_upsamplers
    forward_size = any(d % up_factor != 0 for d in sample.shape[-2:])

    t = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], dtype=torch.int64)
    t = (t[None] if t.dim() == 0 else t).to(sample.device).expand(sample.shape[0])
    emb = unet.time_embedding(unet.time_proj(t).to(dtype=sample.dtype), None)
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)

    sample = unet.conv_in(sample)
    skips = (sample,)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=embedding)
        else:
            sample, res = block(hidden_states=sample, temb=emb)
        skips += res

    if unet.mid_block is not None:
        if getattr(unet.mid_block, "has_cross_attention", False):
            sample = unet.mid_block(sample, emb, encoder_hidden_states=embedding)
        else:
            sample = unet.mid_block(sample, emb)

    feats = []
    n_up = len(unet.up_blocks)
    for i, block in enumerate(unet.up_blocks):
        n = len(block.resnets)
        res, skips = skips[-n:], skips[:-n]
        size = skips[-1].shape[2:] if (forward_size and i < n_up - 1) else None
        if getattr(block, "has_cross_attention", False):
            sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                           encoder_hidden_states=embedding, upsample_size=size)
        else:
            sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=size)
        feats.append(sample)
    return feats


# ----------------------------------------------------------------------------------------- pipeline


@torch.no_grad()
def reference_dpt_head_predict(unet, head, vae, embedding, rgb_uint8) -> np.ndarray:
    """GenPercept DPT-head disparity for ``rgb_uint8`` [1,3,H,W] (uint8, H and W multiples of 64, native res).

    Returns [H,W] float32 in [0,1], 1 = nearest. ``embedding`` is the empty-prompt text embedding [1,N,D]
    (N = 2 for CLIP's "" without padding, D = 1024 for SD2.1). The VAE decoder is not used.
    Other sizes also run, exactly like the authors' code, but then the map is 32 x (up-block-0 size), e.g. 120x200 -> 128x224,
    and the authors resize it back to the input size (bilinear, antialias) before clip(0, 1).
    """
    if rgb_uint8.dtype != torch.uint8 or rgb_uint8.dim() != 4 or rgb_uint8.shape[:2] != (1, 3):
        raise ValueError("expected a [1,3,H,W] uint8 tensor")
    dtype = next(vae.parameters()).dtype
    device = next(vae.parameters()).device
    rgb = (rgb_uint8.to(device) / 255.0 * 2.0 - 1.0).to(dtype)

    moments = vae.quant_conv(vae.encoder(rgb))
    latent = torch.chunk(moments, 2, dim=1)[0] * LATENT_SCALE_FACTOR

    text = embedding.to(device=device, dtype=dtype).repeat(latent.shape[0], 1, 1)
    t = torch.tensor([GENPERCEPT_TIMESTEP], dtype=torch.int64, device=device)
    feats = unet_up_block_features(unet, latent, t, text)

    pred = head(feats[::-1])[:, None]  # [B,1,H,W]
    pred = (pred - pred.min()) / (pred.max() - pred.min())
    return pred.squeeze().cpu().numpy().clip(0, 1).astype(np.float32)


if __name__ == "__main__":  # tiny smoke run
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    channels = (32, 64, 64, 64)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=channels, layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=16, attention_head_dim=(2, 4, 4, 4), use_linear_projection=True,
        upcast_attention=True, norm_num_groups=32,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=32,
    ).eval()
    head = build_reference_head({**SD21_HEAD_CONFIG, "neck_hidden_sizes": list(channels), "fusion_hidden_size": 64}).eval()
    rgb = torch.randint(0, 256, (1, 3, 128, 192), dtype=torch.uint8)
    out = reference_dpt_head_predict(unet, head, vae, torch.randn(1, 2, 16), rgb)
    print(out.shape, out.dtype, float(out.min()), float(out.max()))
