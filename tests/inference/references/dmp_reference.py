"""Stand-alone reference for DMP inference ("Exploiting Diffusion Prior for Generalizable Dense
Prediction", Lee et al., CVPR 2024, arXiv 2311.18832), for pinning the bundle's "dmp" method in tests.

Written (re-expressed, not copied) from the authors' repository github.com/shinying/dmp (Apache-2.0) at
commit 69b4b18e4d55a1167d75a316d5eace9e5dbf43c4 (2024-04-19), files ``pipeline.py`` (``Pipeline.__init__``,
``define_and_load_lora``, ``prepare_infer``, ``__call__``, ``infer_batch``, ``decode_latents``),
``ddim.py`` (their "oracle" DDIMScheduler.step), ``infer.py``, ``app.py``, ``config.yaml``, ``data.py``,
and from diffusers v0.20.0 (the version they pin): ``LoRAAttnProcessor``/``LoRALinearLayer``,
``UNet2DConditionLoadersMixin.load_attn_procs``/``save_attn_procs``, ``DDIMScheduler``.
Depends on torch and diffusers only.

What the authors do, per image (``Pipeline.__call__``, 5 steps):
  * rgb -> [0,1] -> (x-0.5)/0.5; their ``__call__`` first resizes the short side to 512 (bicubic) and
    resizes the output back; this reference works at native resolution (H, W multiples of 64, no resize).
  * latent = vae.encode(x).latent_dist.sample() * scaling_factor   (a *sample*, global RNG, no generator).
    Here: ``generator=None`` -> posterior mode (mean, deterministic); pass a generator to sample as they do.
  * DDIM scheduler = SD 1.4's scheduler config (scaled_linear 0.00085..0.012, steps_offset 1,
    set_alpha_to_one False, clip_sample False, "leading" spacing) with prediction_type set to v_prediction;
    5 steps -> timesteps [801, 601, 401, 201, 1]; last step goes to alphas_cumprod[0].
  * x_T := the image latent itself (no noise).  For each t: v = UNet(x_t, t, emb)  (4 input channels,
    unconditional/empty-prompt embedding for "-notext" checkpoints; with prompts: CFG over
    [cond, uncond] with scale 2), then one eta=0 DDIM step in v-prediction:
        x0 = sqrt(a_t) x_t - sqrt(1-a_t) v
        eps = sqrt(a_t) v + sqrt(1-a_t) x_t          ("original" DDIM, used for the paper's numbers)
        eps = image latent                            ("oracle" DDIM, --use-oracle-ddim)
        x_prev = sqrt(a_prev) x0 + sqrt(1-a_prev) eps
    The result is the final x_prev (the *prev_sample*, not pred_original_sample).
  * decode: vae.decode(latent / scaling_factor).sample, then
        depth  ("F" mode): mean over RGB, /2+0.5, clamp(min=0), * target_scale
               (1 in Pipeline.__call__ -> depth/8; 8 in infer.py's .npz -> ZoeDepth-like metres; larger = farther)
        others ("RGB" mode: normal, albedo, shading, segmentation colours): (x/2+0.5).clamp(0,1)
               (they then quantise to uint8 with round(x*255) and save a PNG).

LoRA: rank 4 on every attention's to_q, to_k, to_v and to_out.0 (self- and cross-attention, down, mid and up
blocks), no alpha (scale 1): ``proj(x) + up(down(x))``.  Released files are diffusers ``save_attn_procs``
output whose keys look like
    ``down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight``  [4, in]
    ``...attn2.processor.to_k_lora.up.weight``                                                 [out, 4]
``apply_reference_lora`` below attaches such a state dict the way those processors compute it.
"""

import numpy as np
import torch
from torch import nn

#: CompVis/stable-diffusion-v1-4 scheduler/scheduler_config.json (a PNDMScheduler config the authors load
#: into DDIMScheduler via from_pretrained); prediction_type is then overridden to v_prediction.
SD14_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "clip_sample": False,
    "skip_prk_steps": True,  # PNDM-only key, ignored by DDIM
}

#: task -> the authors' decode mode ("F": single-channel float map, "RGB": 3-channel image)
TASK_MODES = {"depth": "F", "normal": "RGB", "normals": "RGB", "albedo": "RGB", "shading": "RGB",
              "segmentation": "RGB"}

_LORA_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out")


def build_reference_scheduler():
    """DDIMScheduler as ``Pipeline.prepare_infer`` builds it, with the v_prediction override of ``infer_batch``."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(SD14_SCHEDULER_CONFIG)
    scheduler.register_to_config(prediction_type="v_prediction")
    return scheduler


class _LoRAProjection(nn.Module):
    """The frozen projection plus an additive rank-r branch, as diffusers 0.20's LoRAAttnProcessor computes
    ``attn.to_q(x) + scale * to_q_lora(x)`` with scale 1 and no network_alpha."""

    def __init__(self, base: nn.Linear, down: torch.Tensor, up: torch.Tensor):
        super().__init__()
        if down.shape[1] != base.in_features or up.shape[0] != base.out_features or up.shape[1] != down.shape[0]:
            raise ValueError(f"LoRA shapes down {tuple(down.shape)} / up {tuple(up.shape)} do not fit "
                             f"Linear({base.in_features}, {base.out_features})")
        self.base = base
        self.down = nn.Linear(base.in_features, down.shape[0], bias=False)
        self.up = nn.Linear(down.shape[0], base.out_features, bias=False)
        with torch.no_grad():
            self.down.weight.copy_(down)
            self.up.weight.copy_(up)
        self.down.to(device=base.weight.device, dtype=base.weight.dtype)
        self.up.to(device=base.weight.device, dtype=base.weight.dtype)

    @property
    def weight(self):
        return self.base.weight

    @property
    def bias(self):
        return self.base.bias

    def forward(self, x):
        lora = self.up(self.down(x.to(self.down.weight.dtype))).to(x.dtype)
        return self.base(x) + lora


def apply_reference_lora(unet, lora_state_dict, rank=4):
    """Attach a DMP LoRA (old diffusers attn-procs key format, see module docstring) to ``unet`` in place.

    Every key must be ``<attention module path>.processor.<proj>_lora.<down|up>.weight``; an optional leading
    ``unet.`` is stripped.  All four projections of every attention named in the file get their branch; the
    rank is read from the tensors and checked against ``rank`` (None: any).  Returns ``unet``."""
    grouped = {}
    for key, value in lora_state_dict.items():
        name = key[len("unet."):] if key.startswith("unet.") else key
        parts = name.split(".")
        if len(parts) < 5 or parts[-4] != "processor" or not parts[-3].endswith("_lora") \
                or parts[-2] not in ("down", "up") or parts[-1] != "weight":
            raise ValueError(f"not a DMP/diffusers attn-procs LoRA key: {key}")
        module_path, proj = ".".join(parts[:-4]), parts[-3][: -len("_lora")]
        if proj not in _LORA_PROJECTIONS:
            raise ValueError(f"unexpected LoRA projection {proj!r} in {key}")
        grouped.setdefault(module_path, {}).setdefault(proj, {})[parts[-2]] = value
    modules = dict(unet.named_modules())
    for module_path, projections in grouped.items():
        attn = modules.get(module_path)
        if attn is None or not hasattr(attn, "to_q"):
            raise ValueError(f"{module_path} is not an attention module of this UNet")
        if set(projections) != set(_LORA_PROJECTIONS):
            raise ValueError(f"{module_path}: LoRA for {sorted(projections)}, expected {list(_LORA_PROJECTIONS)}")
        for proj, weights in projections.items():
            if set(weights) != {"down", "up"}:
                raise ValueError(f"{module_path}.{proj}: needs both down and up weights")
            if rank is not None and weights["down"].shape[0] != rank:
                raise ValueError(f"{module_path}.{proj}: rank {weights['down'].shape[0]}, expected {rank}")
            if proj == "to_out":
                attn.to_out[0] = _LoRAProjection(attn.to_out[0], weights["down"], weights["up"])
            else:
                setattr(attn, proj, _LoRAProjection(getattr(attn, proj), weights["down"], weights["up"]))
    return unet


def _ddim_v_step(scheduler, v, t, sample, image_latent, oracle):
    """One eta=0 DDIM step for v-prediction as diffusers' DDIMScheduler.step (original) or the authors'
    ddim.py (oracle: the noise estimate is the image latent)."""
    t = int(t)
    prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alpha_t = scheduler.alphas_cumprod[t]
    alpha_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
    beta_t = 1 - alpha_t
    x0 = (alpha_t ** 0.5) * sample - (beta_t ** 0.5) * v
    eps = image_latent if oracle else (alpha_t ** 0.5) * v + (beta_t ** 0.5) * sample
    if scheduler.config.clip_sample:  # False for SD 1.4's config; kept to honour the config as diffusers does
        x0 = x0.clamp(-scheduler.config.clip_sample_range, scheduler.config.clip_sample_range)
    return (alpha_prev ** 0.5) * x0 + (1 - alpha_prev) ** 0.5 * eps


@torch.no_grad()
def reference_dmp_predict(unet, vae, scheduler, embedding, rgb_uint8, task, steps=5, *,
                          cond_embedding=None, guidance_scale=2.0, oracle_ddim=False, generator=None,
                          target_scale=1.0):
    """DMP prediction for one image, in the authors' output convention.

    unet: UNet2DConditionModel with the task LoRA applied (``apply_reference_lora``); vae: AutoencoderKL;
    scheduler: ``build_reference_scheduler()`` (any DDIMScheduler: its alphas, timesteps and clip_sample are
    used, the step is always v-prediction as in the authors' pipeline); embedding: [1, N, D] text-encoder
    output for the empty prompt ("" padded to 77 tokens); rgb_uint8: [1, 3, H, W] uint8, H and W multiples
    of 64, processed at native size.  cond_embedding: [1, N, D] caption embedding for prompted (non-"-notext")
    checkpoints -> classifier-free guidance with ``guidance_scale`` (theirs: 2).  oracle_ddim: their
    --use-oracle-ddim step.  generator: None -> VAE posterior mode; a torch.Generator -> posterior sample (the
    authors sample, with the global RNG).  target_scale: depth multiplier (1 = Pipeline.__call__, 8 = infer.py).

    Returns float32 numpy: depth [H, W] = mean(decoded)/2+0.5 clamped at 0, times target_scale (ZoeDepth depth/8
    for scale 1; not inverse depth, larger = farther); other tasks [H, W, 3] in [0, 1] (the PNG they save is
    round(255 * this)); normals are Omnidata-encoded colours, decode with 2*c-1.
    """
    mode = TASK_MODES.get(task)
    if mode is None:
        raise ValueError(f"unknown DMP task {task!r}; known: {sorted(TASK_MODES)}")
    if rgb_uint8.dtype != torch.uint8 or rgb_uint8.ndim != 4 or rgb_uint8.shape[:2] != (1, 3):
        raise ValueError("rgb_uint8 must be a [1, 3, H, W] uint8 tensor")
    if rgb_uint8.shape[-1] % 64 or rgb_uint8.shape[-2] % 64:
        raise ValueError("H and W must be multiples of 64")

    device, vae_dtype, unet_dtype = vae.device, vae.dtype, unet.dtype
    x = rgb_uint8.to(device=device, dtype=torch.float32) / 255.0  # torchvision to_tensor
    x = (x - 0.5) / 0.5  # torchvision normalize(mean=0.5, std=0.5)
    posterior = vae.encode(x.to(vae_dtype)).latent_dist
    latent = posterior.sample(generator) if generator is not None else posterior.mode()
    latent = latent * vae.config.scaling_factor
    image_latent = latent

    uncond = embedding.to(device=unet.device, dtype=unet_dtype)
    if cond_embedding is not None:
        both = torch.cat([cond_embedding.to(device=unet.device, dtype=unet_dtype), uncond])

    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        if cond_embedding is None:
            v = unet(latent.to(unet_dtype), t, encoder_hidden_states=uncond).sample
        else:
            out = unet(latent.repeat(2, 1, 1, 1).to(unet_dtype), t, encoder_hidden_states=both).sample
            v_cond, v_uncond = out.chunk(2)
            v = v_uncond + guidance_scale * (v_cond - v_uncond)
        latent = _ddim_v_step(scheduler, v.to(latent.dtype), t, latent, image_latent, oracle_ddim)

    decoded = vae.decode((latent / vae.config.scaling_factor).to(vae_dtype)).sample
    if mode == "F":
        depth = (decoded.float().mean(dim=1) / 2 + 0.5).clamp(min=0)
        if target_scale > 0:
            depth = depth * target_scale
        else:  # their target_scale <= 0: per-image min-max normalisation
            lo, hi = depth.amin(dim=(1, 2), keepdim=True), depth.amax(dim=(1, 2), keepdim=True)
            depth = (depth - lo) / (hi - lo)
        return depth[0].cpu().numpy().astype(np.float32)
    image = (decoded.float() / 2 + 0.5).clamp(0, 1)
    return image[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
