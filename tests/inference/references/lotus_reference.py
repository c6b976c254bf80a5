"""Standalone reference for one-step Lotus inference (Lotus-G and Lotus-D), for tests.

Written from a reading of EnVision-Research/Lotus at commit b737e12238d2a41fc582ee8c6c6b1104d318d799
(files: pipeline.py -- classes LotusGPipeline / LotusDPipeline and DirectDiffusionPipeline.encode_prompt /
prepare_latents; infer.py; app.py; train_lotus_g.py / train_lotus_d.py for the task switcher and the empty
prompt; utils/image_utils.py; utils/hypersim_dataset.py, utils/vkitti_dataset.py, utils/depth2normal.py and
eval.py for the meaning of the outputs). Re-expressed here, not copied. Depends only on torch and diffusers.

What the authors' code does, and this function repeats, at native resolution (their ``processing_res=0``):

1. RGB uint8 -> float32, ``x / 127.5 - 1`` (range [-1, 1]).
2. Lotus-G only: draw the target-latent noise FIRST, ``randn(B, 4, H/8, W/8)`` from ``generator``
   (diffusers ``randn_tensor``; with ``generator=None`` the global torch RNG). It is multiplied by the
   scheduler's ``init_noise_sigma``, which is 1.0 for the DDPM-family schedulers these checkpoints ship, so
   it is used as drawn.
3. ``vae.encode(x).latent_dist.sample()`` -- called WITHOUT a generator, so the posterior noise comes from
   the global torch RNG (``torch.randn(mean.shape)`` on the VAE's device/dtype), after step 2's draw; times
   ``vae.config.scaling_factor``.
4. UNet input: Lotus-G ``cat([rgb_latent, noise], dim=1)`` (8 channels, RGB first); Lotus-D ``rgb_latent``.
5. One UNet call at timestep 999 (0-d long tensor), ``encoder_hidden_states`` = CLIP embedding of the empty
   prompt tokenised with ``padding="do_not_pad"`` (2 tokens: BOS, EOS -> shape [1, 2, 1024] for the SD2
   text encoder), ``class_labels`` = task switcher ``[sin 1, sin 0, cos 1, cos 0]`` (shape [1, 4]; the
   "annotation" switch [1, 0]; [0, 1] would be RGB reconstruction, used only in training).
6. The UNet output IS the x0 latent (prediction_type "sample"); no scheduler.step for a single timestep.
7. ``vae.decode(pred / scaling_factor)``, then ``clamp(img / 2 + 0.5, 0, 1)``, to HWC float32.
8. depth / disparity: mean over the 3 channels (after the clamp) -> [H, W] in [0, 1].
   Depth models (v1-0): affine-invariant depth, 0 = near, 1 = far. Disparity models (v2-x-disparity):
   affine-invariant disparity, 1 = near, 0 = far. The output is not renormalised per image.
   normals: the [H, W, 3] array in [0, 1] as infer.py saves it; the unit-ish vector is ``2 * p - 1`` (not
   renormalised by the authors). Its axes: x = LEFT, y = UP, z = toward the viewer, i.e. the OpenGL camera
   outward normal with X negated (equivalently the OpenCV-axes vector pointing into the surface, DSINE's
   evaluation convention). To OpenGL (+X right, +Y up, +Z to viewer): ``n_gl = (-n_x, n_y, n_z)``.

The authors run under ``torch.autocast`` (and usually fp16 weights); this reference runs in the dtype of the
modules given, without autocast.
"""

from __future__ import annotations

import numpy as np
import torch

LOTUS_TIMESTEP = 999


def lotus_task_switcher(batch_size: int = 1, device=None, dtype=torch.float32) -> torch.Tensor:
    """The class label Lotus passes at inference: sin/cos of the one-hot [1, 0], shape [B, 4]."""
    switch = torch.tensor([[1.0, 0.0]], dtype=torch.float32)
    label = torch.cat([torch.sin(switch), torch.cos(switch)], dim=-1)
    return label.repeat(batch_size, 1).to(device=device, dtype=dtype)


@torch.no_grad()
def lotus_empty_prompt_embedding(tokenizer, text_encoder) -> torch.Tensor:
    """Embedding of "" the way Lotus builds it (no padding to 77: 2 tokens), shape [1, 2, D]."""
    ids = tokenizer("", padding="do_not_pad", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def _is_generative(unet) -> bool:
    channels = int(unet.config.in_channels)
    if channels not in (4, 8):
        raise ValueError(f"Lotus UNets take 8 (G) or 4 (D) input channels, this one takes {channels}")
    return channels == 8


@torch.no_grad()
def reference_lotus_predict(unet, vae, embedding, rgb_uint8, task, generator=None, noise=None,
                            posterior_noise=None, use_posterior_mean=False, timestep=LOTUS_TIMESTEP):
    """One-step Lotus prediction at the input's own resolution.

    unet: diffusers UNet2DConditionModel with ``class_embed_type="projection"``,
        ``projection_class_embeddings_input_dim=4``; 8 input channels = Lotus-G, 4 = Lotus-D.
    vae: diffusers AutoencoderKL.
    embedding: [1, N, D] empty-prompt embedding (see ``lotus_empty_prompt_embedding``; Lotus uses N = 2).
    rgb_uint8: [1, 3, H, W] uint8 tensor, H and W multiples of 64 here (no resizing is done).
    task: "depth", "disparity" (both give [H, W]) or "normal"/"normals" ([H, W, 3]).
    generator: used, as in the authors' pipeline, only for Lotus-G's target noise when ``noise`` is None.
    noise: Lotus-G target-latent noise [1, 4, H/8, W/8] to use instead of drawing it.
    posterior_noise: standard-normal tensor shaped like the VAE posterior mean; the latent is then
        ``mean + std * posterior_noise``. When None (and not ``use_posterior_mean``) the posterior is sampled
        as the authors do, ``latent_dist.sample()`` with no generator, i.e. from the global torch RNG after
        the G noise draw. To match the authors' pipeline bit for bit, seed the global RNG identically
        (``torch.manual_seed``) before each side's call and pass the same ``generator`` seed or ``noise``.
    use_posterior_mean: use the posterior mean instead of a sample (deterministic; not what the authors do).
    Returns numpy float32: [H, W] for depth/disparity, [H, W, 3] in [0, 1] for normals.
    """
    task = str(task).lower()
    if task not in ("depth", "disparity", "normal", "normals"):
        raise ValueError(f"unknown Lotus task {task!r}")
    if rgb_uint8.ndim != 4 or rgb_uint8.shape[0] != 1 or rgb_uint8.shape[1] != 3:
        raise ValueError(f"expected rgb_uint8 of shape [1, 3, H, W], got {tuple(rgb_uint8.shape)}")
    generative = _is_generative(unet)
    device = next(vae.parameters()).device
    vae_dtype = next(vae.parameters()).dtype
    unet_dtype = next(unet.parameters()).dtype

    image = rgb_uint8.to(device=device, dtype=torch.float32) / 127.5 - 1.0
    image = image.to(vae_dtype)
    height, width = image.shape[-2:]
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent_shape = (1, int(unet.config.in_channels) // 2, height // factor, width // factor)

    target_noise = None
    if generative:  # drawn before the posterior sample, as in the authors' pipeline
        if noise is None:
            draw_device = generator.device if generator is not None else device
            target_noise = torch.randn(latent_shape, generator=generator, device=draw_device,
                                       dtype=embedding.dtype)
        else:
            if tuple(noise.shape) != latent_shape:
                raise ValueError(f"noise must have shape {latent_shape}, got {tuple(noise.shape)}")
            target_noise = noise
        target_noise = target_noise.to(device=device, dtype=unet_dtype)

    posterior = vae.encode(image).latent_dist
    if use_posterior_mean:
        rgb_latent = posterior.mean
    elif posterior_noise is not None:
        rgb_latent = posterior.mean + posterior.std * posterior_noise.to(posterior.mean)
    else:
        rgb_latent = posterior.sample()
    rgb_latent = (rgb_latent * vae.config.scaling_factor).to(unet_dtype)

    model_input = torch.cat([rgb_latent, target_noise], dim=1) if generative else rgb_latent
    t = torch.tensor(int(timestep), dtype=torch.long, device=device)
    context = embedding.to(device=device, dtype=unet_dtype)
    switch = lotus_task_switcher(1, device=device, dtype=unet_dtype)
    x0_latent = unet(model_input, t, encoder_hidden_states=context, class_labels=switch,
                     return_dict=False)[0]

    decoded = vae.decode((x0_latent / vae.config.scaling_factor).to(vae_dtype), return_dict=False)[0]
    decoded = (decoded / 2 + 0.5).clamp(0, 1)
    hwc = decoded[0].permute(1, 2, 0).float().cpu().numpy()
    if task in ("depth", "disparity"):
        return hwc.mean(axis=-1).astype(np.float32)
    return hwc.astype(np.float32)
