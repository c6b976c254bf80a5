"""GenPercept's DPT-style head: maps the UNet's up-block features straight to a one-channel map, in place of the VAE
decoder (the "What matters" paper's custom-decoder finding).

Written from its description in GenPercept (``genpercept/models/dpt_head.py``: a DPT neck and depth head with
fusion layer 0 lacking its first residual unit, the head's projection as wide as the fusion, an identity last
activation); parameter names are the released ``dpt_head_identity/model.safetensors``'s, so it loads strictly.

features (finest first: [C0@s, C1@s, C2@s/2, C3@s/4] for a UNet's four up blocks)
  -> the finest upsampled x2 (nearest + 3x3 conv) -> 3x3 convs to ``fusion`` channels
  -> RefineNet-style fusion from the coarsest (each step x2)
  -> projection, conv to fusion/2, x2, conv to 32, conv to 1.  Output: [B, 32 x the coarsest up-block size].
"""

import torch
import torch.nn.functional as F
from diffusers.models.upsampling import Upsample2D
from torch import nn

HEAD_FOLDER = "dpt_head_identity"  # the released head's folder, beside unet_disparity_dpt_head_v2/
HEAD_WEIGHTS = "model.safetensors"


class ResidualUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3 convolutions without bias."""

    def __init__(self, width: int):
        super().__init__()
        self.convolution1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.convolution2 = nn.Conv2d(width, width, 3, padding=1, bias=False)

    def forward(self, x):
        return x + self.convolution2(F.relu(self.convolution1(F.relu(x))))


class FusionLayer(nn.Module):
    """Adds the skip (through a residual unit), refines, doubles the size, projects."""

    def __init__(self, width: int, takes_skip: bool):
        super().__init__()
        if takes_skip:
            self.residual_layer1 = ResidualUnit(width)
        self.residual_layer2 = ResidualUnit(width)
        self.projection = nn.Conv2d(width, width, 1)

    def forward(self, x, skip=None):
        if skip is not None:
            if skip.shape[-2:] != x.shape[-2:]:
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.residual_layer1(skip)
        x = F.interpolate(self.residual_layer2(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.projection(x)


class Neck(nn.Module):
    def __init__(self, channels, width: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, width, 3, padding=1, bias=False) for c in channels)
        self.fusion_stage = nn.Module()
        self.fusion_stage.layers = nn.ModuleList(FusionLayer(width, takes_skip=i > 0) for i in range(len(channels)))

    def forward(self, features):
        levels = [conv(feature) for conv, feature in zip(self.convs, features)]
        fused = None
        for layer, level in zip(self.fusion_stage.layers, reversed(levels)):
            fused = layer(level) if fused is None else layer(fused, level)
        return fused


class Head(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.projection = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Sequential(
            nn.Conv2d(width, width // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(width // 2, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
            nn.Identity(),
        )

    def forward(self, x):
        return self.head(F.relu(self.projection(x)))


class DPTHead(nn.Module):
    """``channels``: the UNet's ``block_out_channels`` (four up blocks); ``fusion``: the neck's width (256)."""

    def __init__(self, channels=(320, 640, 1280, 1280), fusion: int = 256):
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"the DPT head takes the features of four up blocks, got {len(channels)} channel counts")
        self.channels, self.fusion = tuple(channels), fusion
        self.feature_upsample_0 = Upsample2D(channels[0], use_conv=True)
        self.neck = Neck(channels, fusion)
        self.head = Head(fusion)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``features``: the up blocks' outputs, finest first -> [B,1,H,W]."""
        features = [self.feature_upsample_0(features[0]), *features[1:]]
        return self.head(self.neck(features))


class UpBlockFeatures:
    """Runs a UNet whose ``conv_norm_out``/``conv_out`` are gone and collects each up block's output (after its
    upsampler), finest first: what GenPercept's DPT head reads."""

    def __init__(self, unet):
        self.unet, self.outputs = unet, []
        for block in unet.up_blocks:
            block.register_forward_hook(lambda module, args, output: self.outputs.append(output))

    def __call__(self, latent, timestep, embedding) -> list[torch.Tensor]:
        self.outputs = []
        self.unet(latent, timestep, encoder_hidden_states=embedding)
        features, self.outputs = self.outputs[::-1], []
        return features


def without_output_layers(unet):
    """The UNet as GenPercept's DPT variant has it: no ``conv_norm_out``/``conv_out`` (its forward then returns the
    last up block's output, and the hooks of ``UpBlockFeatures`` have the rest)."""
    unet.conv_norm_out = None
    unet.conv_out = nn.Identity()
    return unet
