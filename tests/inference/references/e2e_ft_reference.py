"""Stand-alone reference for E2E-FT single-step inference (Marigold-family checkpoints).

Re-expressed (not copied) from reading VisualComputingInstitute/diffusion-e2e-ft at commit
4ff5aad00f686e08d49e5ee55054e161dd0a7458 (2024-12-16):

* ``Marigold/marigold/marigold_pipeline.py`` -- ``MarigoldPipeline.__call__``, ``single_infer``,
  ``encode_rgb``, ``decode_depth``, ``decode_normal`` (the authors' inference path);
* ``Marigold/run.py`` -- how the parts are loaded (``DDIMScheduler.from_pretrained(...,
  timestep_spacing="trailing")``) and the defaults ``denoise_steps=1``, ``ensemble_size=1``,
  ``noise="zeros"``;
* ``Marigold/marigold/util/image_util.py`` -- ``resize_max_res`` (a no-op at native resolution);
* ``training/train.py`` and ``training/util/unet_prep.py`` -- the training-time forward pass
  (t = 999, zero "noisy" latent, 8-channel ``conv_in``), which is the same computation.

Applies to GonzaloMG/marigold-e2e-ft-{depth,normals} and GonzaloMG/stable-diffusion-e2e-ft-{depth,normals}.
GeoWizard-E2E-FT is a different architecture and is not covered.

Only ``torch`` and ``diffusers`` are needed.  The image is processed at its own resolution
(the authors' ``processing_res=0`` path used in their benchmarks), so neither resizing nor
padding happens; H and W must be multiples of 8 (the caller uses multiples of 64).
"""

import numpy as np
import torch
from diffusers import DDIMScheduler

# The authors hard-code this constant for both the RGB and the target latents
# (``rgb_latent_scale_factor`` / ``depth_latent_scale_factor``); training uses
# ``vae.config.scaling_factor``, which is the same number for the SD VAE.
LATENT_SCALE = 0.18215


def _single_step_scheduler(scheduler):
    """The authors always build a DDIMScheduler from the checkpoint's scheduler config with
    ``timestep_spacing`` forced to ``trailing`` (run.py), whatever class or spacing the folder
    names.  With one step that gives t = num_train_timesteps - 1 = 999."""
    return DDIMScheduler.from_config(scheduler.config, timestep_spacing="trailing")


def _encode(vae, rgb):
    # Mode of the posterior (mean), not a sample, then scaled.
    moments = vae.encoder(rgb)
    if getattr(vae, "quant_conv", None) is not None:
        moments = vae.quant_conv(moments)
    mean, _logvar = torch.chunk(moments, 2, dim=1)
    return mean * LATENT_SCALE


def _decode(vae, latent):
    z = latent / LATENT_SCALE
    if getattr(vae, "post_quant_conv", None) is not None:
        z = vae.post_quant_conv(z)
    return vae.decoder(z)  # [B, 3, H, W]


@torch.no_grad()
def reference_e2e_ft_predict(unet, vae, scheduler, embedding, rgb_uint8, task):
    """One E2E-FT prediction, exactly as the authors' pipeline produces ``depth_np`` / ``normal_np``.

    Args:
        unet: diffusers ``UNet2DConditionModel`` with 8 input channels ([rgb_latent, target_latent]).
        vae: diffusers ``AutoencoderKL``.
        scheduler: any diffusers scheduler built from the checkpoint's scheduler config.
        embedding: empty-prompt text embedding ``[1, N, D]`` (authors: N = 2, tokenised with
            ``padding="do_not_pad"``; D = 1024 for the SD2 text encoder).
        rgb_uint8: ``[1, 3, H, W]`` uint8 tensor.
        task: ``"depth"`` or ``"normals"``.

    Returns:
        numpy float32: depth ``[H, W]`` in [0, 1] (per-image min-max normalised, affine-invariant
        depth, 0 = nearest, 1 = farthest); normals ``[H, W, 3]`` unit vectors clipped to [-1, 1]
        in the authors' frame (+X left, +Y up, +Z toward the viewer; the authors' own ``.npy`` is
        channel-first ``[3, H, W]``).
    """
    if task not in ("depth", "normals"):
        raise ValueError(f"unknown task {task!r}")
    if rgb_uint8.dim() != 4 or rgb_uint8.shape[0] != 1 or rgb_uint8.shape[1] != 3:
        raise ValueError(f"expected [1, 3, H, W] uint8, got {tuple(rgb_uint8.shape)}")

    device, dtype = unet.device, unet.dtype

    # Preprocess: [0, 255] -> [-1, 1]; no resize, no padding at native resolution.
    rgb = rgb_uint8.to(device)
    rgb = (rgb / 255.0 * 2.0 - 1.0).to(dtype)

    # Single trailing DDIM step: t = 999.
    ddim = _single_step_scheduler(scheduler)
    ddim.set_timesteps(1, device=device)
    t = ddim.timesteps[0]
    assert int(t) == ddim.config.num_train_timesteps - 1

    rgb_latent = _encode(vae, rgb)
    target_latent = torch.zeros_like(rgb_latent)  # noise="zeros"
    unet_input = torch.cat([rgb_latent, target_latent], dim=1)  # image latent first
    text = embedding.to(device=device, dtype=dtype).repeat(rgb_latent.shape[0], 1, 1)
    model_out = unet(unet_input, t, encoder_hidden_states=text).sample

    # x0 estimate from the scheduler step (v-prediction for all released checkpoints:
    # x0 = sqrt(acp[999]) * 0 - sqrt(1 - acp[999]) * v).
    x0 = ddim.step(model_out, t, target_latent).pred_original_sample

    decoded = _decode(vae, x0)

    if task == "depth":
        depth = decoded.mean(dim=1, keepdim=True)
        depth = torch.clip(depth, -1.0, 1.0)
        depth = (depth + 1.0) / 2.0
        pred = depth.squeeze()  # [H, W]
        lo, hi = torch.min(pred), torch.max(pred)
        if hi == lo:
            pred = torch.zeros_like(pred)
        else:
            pred = (pred - lo) / (hi - lo)
        # (resize back to the input size is the identity here)
        out = pred.float().cpu().numpy().clip(0, 1)
        return out.astype(np.float32)

    normal = decoded / (torch.norm(decoded, p=2, dim=1, keepdim=True) + 1e-5)  # in single_infer
    pred = normal.squeeze()  # [3, H, W]
    pred = pred / (torch.norm(pred, p=2, dim=0, keepdim=True) + 1e-5)  # again in __call__
    out = pred.float().cpu().numpy().clip(-1.0, 1.0)
    return np.ascontiguousarray(out.transpose(1, 2, 0)).astype(np.float32)
