"""What each node does, on tensors in ComfyUI's layouts, without needing ComfyUI.

IMAGE: float32 [B,H,W,3] in 0..1; MASK: float32 [B,H,W] in 0..1. Maps payloads
(GENPERCEPT_MAPS) hold the documented conventions: depth [B,H,W] with 0 = near,
normals [B,H,W,3] unit vectors (+X right, +Y up, +Z toward the viewer), matte
[B,H,W] alpha.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genpercept_bundle.choices import MAX_PROCESSING_RESOLUTION, flip_average_choice, processing_resolution_choice
from genpercept_bundle.conventions import (DEPTH_COLORMAPS, DEPTH_NORMALISATIONS, NORMAL_CONVENTIONS, colorize_depth,
                                          near_bright, normalise_depth_batch, normals_to_rgb)
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.inference.processing import check_processing_size
from genpercept_bundle.map_files import save_maps as save_map_files

DEPTH_MODES = ("auto", *DEPTH_NORMALISATIONS)
RESOLUTION_STEP = 8  # the VAE works on multiples of 8; the widget steps by it and the API is held to it
SMALL_IMAGE_SIDE = 64  # below this a map holds little the model could see: warned, still predicted
# what a prediction node does with an RGBA image's alpha: the model sees RGB only
ALPHA_CHOICES = ("over grey", "ignore", "as matte")


@dataclass
class Maps:
    """The GENPERCEPT_MAPS payload: full-precision maps of one task for a batch."""

    task: str
    values: torch.Tensor  # [B,H,W] or [B,H,W,3], float32, documented convention
    provenance: dict = field(default_factory=dict)
    uncertainty: torch.Tensor | None = None  # [B,H,W] >= 0 with an ensemble (Marigold...), else None

    def uncertainty_mask(self) -> torch.Tensor:
        """The uncertainty as a MASK (0 = the ensemble's members agree; clipped to 1); zeros without an ensemble."""
        if self.uncertainty is None:
            return torch.zeros(self.values.shape[:3])
        return self.uncertainty.clamp(0, 1)


def check_processing_resolution(value: int) -> str | None:
    """Why ``value`` is not a processing resolution a node accepts (-1, 0 or a multiple of RESOLUTION_STEP), or None."""
    if value > MAX_PROCESSING_RESOLUTION:
        return f"processing_resolution can be at most {MAX_PROCESSING_RESOLUTION}, got {value}"
    if value in (-1, 0) or (value > 0 and value % RESOLUTION_STEP == 0):
        return None
    lower = max(RESOLUTION_STEP, value - value % RESOLUTION_STEP)
    return (f"processing_resolution must be -1 (the model's default), 0 (native) or a multiple of {RESOLUTION_STEP}, "
            f"got {value}: use {lower} or {lower + RESOLUTION_STEP}")


def size_warning(images: torch.Tensor) -> str | None:
    """A warning for images too small to give useful maps (they are still predicted), or None."""
    height, width = images.shape[1:3]
    if min(height, width) < SMALL_IMAGE_SIDE:
        return (f"the image is only {width}x{height} pixels: maps of images under {SMALL_IMAGE_SIDE} px a side show "
                "little; upscale it or use a larger crop")
    return None


def split_alpha(images: torch.Tensor, choice: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An IMAGE batch -> (the RGB the model sees [B,H,W,3], the alpha [B,H,W] or None).

    RGB images pass as they are. For RGBA (``choice``, ALPHA_CHOICES): "over grey" composites the image over mid-grey
    (what lies under transparent pixels is often black or garbage), "ignore" drops the alpha, "as matte" also drops it
    from the RGB but hands it back so a matte node can return it instead of predicting one. A fully opaque alpha counts
    as no alpha."""
    if choice not in ALPHA_CHOICES:
        raise GenPerceptError(f"alpha handling must be one of {', '.join(ALPHA_CHOICES)}, got {choice!r}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 4:
        return images, None
    rgb, alpha = images[..., :3], images[..., 3].clamp(0, 1)
    if bool((alpha >= 1).all()):
        return rgb, None
    if choice == "over grey":
        rgb = rgb * alpha[..., None] + 0.5 * (1 - alpha[..., None])
    return rgb, alpha


def images_to_rgb8(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [B,H,W,C] float 0..1 -> uint8 [B,3,H,W] for the predictor (alpha, if any, dropped)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise GenPerceptError(f"expected an IMAGE batch [B,H,W,3], got {getattr(images, 'shape', type(images))}")
    if images.shape[0] == 0:
        raise GenPerceptError("the IMAGE batch is empty")
    if images.shape[-1] not in (3, 4):
        raise GenPerceptError(
            f"GenPercept needs RGB images, got {images.shape[-1]} channel(s); convert a mask or grey image "
            "to RGB first (e.g. with 'Convert Mask to Image')"
        )
    rgb = images[..., :3].detach().float().clamp(0, 1)
    return (rgb * 255.0).round().to(torch.uint8).permute(0, 3, 1, 2).cpu().contiguous()


def predict(model, images: torch.Tensor, task: str, processing_resolution: int = -1, batch_size: int = 1,
            on_progress=None, flip_average: str = "auto", check_interrupt=None, sampling=None,
            alpha: str = "over grey") -> Maps:
    """Run one task over an IMAGE batch, ``batch_size`` images at a time; maps come back at the input size.

    ``processing_resolution``: longest side the model sees; -1 = the model's own default, 0 = native size
    (``choices.processing_resolution_choice``).
    ``flip_average``: "on" also predicts the mirrored image and averages; "auto" = the model's default.
    ``on_progress(done, total)`` is called after each chunk and may raise to interrupt; ``check_interrupt()``
    before every network block (ComfyUI's Cancel stops within a block, even inside one large image).
    ``sampling``: steps, ensemble size and seed (``SamplingOptions``) for models that denoise or start from noise.
    ``alpha``: what an RGBA batch's alpha does (``split_alpha``; "as matte" predicts from the RGB alone).
    A depth request of a disparity-only model (Lotus v2, GenPercept's DPT head) gives its disparity maps.
    """
    images, _ = split_alpha(images, "ignore" if alpha == "as matte" else alpha)
    averaging = flip_average_choice(flip_average)
    task = model.task_for(task)
    predictor = model.ready(task)
    resolution = predictor.processing_resolution(task, processing_resolution_choice(processing_resolution))
    if images.ndim == 4:
        check_processing_size(images.shape[1], images.shape[2], resolution)  # before any big conversion
    rgb = images_to_rgb8(images)
    prediction = predictor.predict(rgb, task, resolution, batch_size, on_progress, averaging, check_interrupt, sampling)
    uncertainty = None if prediction.uncertainty is None else torch.from_numpy(prediction.uncertainty.copy())
    return Maps(prediction.task, torch.from_numpy(prediction.maps.copy()), prediction.provenance, uncertainty)


STEADY_CHOICES = ("auto", "on", "off")


def steady(maps: Maps, images: torch.Tensor, choice: str = "auto") -> Maps:
    """A batch's maps made steady along the motion of its frames (core's ``steady_maps``): "on", "off", or "auto" =
    on when the batch looks like consecutive frames of one shot (not unrelated photos)."""
    from genpercept_bundle.inference.steady_sequence import looks_like_one_shot, steady_maps

    if choice not in STEADY_CHOICES:
        raise GenPerceptError(f"steady_video must be one of {', '.join(STEADY_CHOICES)}, got {choice!r}")
    if choice == "off" or maps.values.shape[0] < 2:
        return maps
    frames = images_to_rgb8(split_alpha(images, "over grey")[0]).permute(0, 2, 3, 1).numpy()
    if choice == "auto" and not looks_like_one_shot(frames):
        return maps
    values = torch.from_numpy(steady_maps(maps.task, maps.values.numpy(), frames))
    return Maps(maps.task, values, {**maps.provenance, "steady_video": True}, maps.uncertainty)


def matte_from_alpha(images: torch.Tensor) -> Maps | None:
    """An RGBA batch's own alpha as matte maps (no prediction), or None when there is no alpha (or it is opaque)."""
    _, alpha = split_alpha(images, "as matte")
    if alpha is None:
        return None
    return Maps("matte", alpha.float().cpu().contiguous(), {"task": "matte", "meaning": "alpha, 0 = background, "
                "1 = foreground", "source": "the input image's alpha channel (no prediction)"})


def render_depth(maps: Maps, normalisation: str = "auto", invert: bool = False) -> torch.Tensor:
    """Depth (or disparity) -> IMAGE, near = bright (ControlNet's polarity); ``invert`` gives far = bright.

    normalisation: 'auto' = 'sequence' for batches (video frames keep one depth scale), 'per_image' for one
    image; 'none' = the model's own [0,1] values.
    """
    depth = _stretched(maps, normalisation)
    near_is_bright = maps.task == "disparity"  # disparity is already near = bright
    shown = depth if invert != near_is_bright else near_bright(depth)
    return torch.from_numpy(np.repeat(shown[..., None], 3, axis=-1).astype(np.float32))


def render_depth_preview(maps: Maps, colormap: str = "turbo", normalisation: str = "auto") -> torch.Tensor:
    """Depth (or disparity) -> IMAGE in a colour map (DEPTH_COLORMAPS, near = the warm / bright end), stretched as
    ``render_depth`` stretches it."""
    depth = _stretched(maps, normalisation)
    if maps.task == "disparity":  # 1 = near: as depth, 0 = near
        depth = near_bright(depth)
    return torch.from_numpy(colorize_depth(depth, colormap).astype(np.float32) / 255.0)


def render_normals(maps: Maps, convention: str = "opengl") -> torch.Tensor:
    """Normals -> IMAGE as (n + 1) / 2: R = +X right, G = +Y up (OpenGL) or down (DirectX), B = +Z toward the viewer."""
    _expect(maps, "normal")
    if convention not in NORMAL_CONVENTIONS:
        raise GenPerceptError(f"normal convention must be one of {NORMAL_CONVENTIONS}, got {convention!r}")
    return torch.from_numpy(normals_to_rgb(maps.values.numpy(), convention))


def render_matte(maps: Maps, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Matte -> (MASK [B,H,W] alpha, IMAGE [B,H,W,3] foreground premultiplied over black)."""
    _expect(maps, "matte")
    alpha = maps.values.float().clamp(0, 1)
    if tuple(images.shape[:3]) != tuple(alpha.shape):
        raise GenPerceptError(f"the matte is {tuple(alpha.shape)} but the images are {tuple(images.shape[:3])}; feed the same batch")
    return alpha, images[..., :3].float() * alpha[..., None]


def output_prefix(output_root, filename_prefix: str) -> Path:
    """The path ``filename_prefix`` names under ``output_root``; GenPerceptError if it is empty or leads out of it.
    The Save Maps node checks it before the graph runs."""
    root = Path(output_root).resolve()
    target = (root / filename_prefix).resolve()
    if not filename_prefix.strip() or root not in target.parents:
        raise GenPerceptError(f"filename prefix {filename_prefix!r} must name a file inside the output folder")
    return target


@dataclass
class SavedMaps:
    maps: list[Path] = field(default_factory=list)  # one full-precision map file per frame
    previews: list[Path] = field(default_factory=list)  # 8-bit PNGs to show (colour depth, normals, alpha)


def save_maps(maps: Maps, output_root, filename_prefix: str, format: str, previews: bool = True) -> SavedMaps:
    """Write each map of the batch as <prefix>_<frame>_<task>.<ext> with its sidecar JSON, by the core's map-file
    contract (the Blender add-on and ``find_maps`` read them), and its preview PNGs; ``filename_prefix`` may hold
    sub-folders of ``output_root`` but must stay inside it."""
    target = output_prefix(output_root, filename_prefix)
    saved = SavedMaps()
    for index, values in enumerate(maps.values.numpy()):
        uncertainty = None if maps.uncertainty is None else maps.uncertainty[index].numpy()
        files = save_map_files(target.parent, f"{target.name}_{index:05d}", maps.task, values, format,
                               {**maps.provenance, "frame": index, "format": format}, previews=previews,
                               uncertainty=uncertainty)
        saved.maps.append(files[0])
        saved.previews += [path for path in files if path.name.endswith("_preview.png")]
    return saved


def output_entries(files: list[Path], output_root) -> list[dict]:
    """ComfyUI's description of saved files: filename, subfolder (under the output folder, "" at its top) and type."""
    root, entries = Path(output_root).resolve(), []
    for path in files:
        folder = path.resolve().parent.relative_to(root).as_posix()
        entries.append({"filename": path.name, "subfolder": "" if folder == "." else folder, "type": "output"})
    return entries


def _stretched(maps: Maps, normalisation: str) -> np.ndarray:
    """Depth or disparity maps stretched for display: 'auto' = 'sequence' for batches, 'per_image' for one image."""
    _expect(maps, "depth", "disparity")
    mode = ("sequence" if maps.values.shape[0] > 1 else "per_image") if normalisation == "auto" else normalisation
    return normalise_depth_batch(maps.values.numpy(), mode)


def _expect(maps: Maps, *tasks: str):
    if not isinstance(maps, Maps) or maps.task not in tasks:
        raise GenPerceptError(f"this node renders {' or '.join(tasks)} maps, got "
                              f"{getattr(maps, 'task', type(maps).__name__)}")
