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

from genpercept_bundle.choices import flip_average_choice, processing_resolution_choice
from genpercept_bundle.conventions import (DEPTH_NORMALISATIONS, NORMAL_CONVENTIONS, near_bright, normalise_depth_batch,
                                          normals_to_rgb)
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.inference.processing import check_processing_size
from genpercept_bundle.map_files import save_maps as save_map_files

DEPTH_MODES = ("auto", *DEPTH_NORMALISATIONS)


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
            on_progress=None, flip_average: str = "auto", check_interrupt=None, sampling=None) -> Maps:
    """Run one task over an IMAGE batch, ``batch_size`` images at a time; maps come back at the input size.

    ``processing_resolution``: longest side the model sees; -1 = the model's own default, 0 = native size
    (``choices.processing_resolution_choice``).
    ``flip_average``: "on" also predicts the mirrored image and averages; "auto" = the model's default.
    ``on_progress(done, total)`` is called after each chunk and may raise to interrupt; ``check_interrupt()``
    before every network block (ComfyUI's Cancel stops within a block, even inside one large image).
    ``sampling``: steps, ensemble size and seed (``SamplingOptions``) for models that denoise or start from noise.
    A depth request of a disparity-only model (Lotus v2, GenPercept's DPT head) gives its disparity maps.
    """
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


def render_depth(maps: Maps, normalisation: str = "auto", invert: bool = False) -> torch.Tensor:
    """Depth (or disparity) -> IMAGE, near = bright (ControlNet's polarity); ``invert`` gives far = bright.

    normalisation: 'auto' = 'sequence' for batches (video frames keep one depth scale), 'per_image' for one
    image; 'none' = the model's own [0,1] values.
    """
    _expect(maps, "depth", "disparity")
    mode = ("sequence" if maps.values.shape[0] > 1 else "per_image") if normalisation == "auto" else normalisation
    depth = normalise_depth_batch(maps.values.numpy(), mode)
    near_is_bright = maps.task == "disparity"  # disparity is already near = bright
    shown = depth if invert != near_is_bright else near_bright(depth)
    return torch.from_numpy(np.repeat(shown[..., None], 3, axis=-1).astype(np.float32))


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


def save_maps(maps: Maps, output_root, filename_prefix: str, format: str) -> list[Path]:
    """Write each map of the batch as <prefix>_<frame>_<task>.<ext> with its sidecar JSON, by the core's map-file
    contract (the Blender add-on and ``find_maps`` read them); ``filename_prefix`` may hold sub-folders of
    ``output_root`` but must stay inside it. Returns the map files."""
    target = output_prefix(output_root, filename_prefix)
    written = []
    for index, values in enumerate(maps.values.numpy()):
        uncertainty = None if maps.uncertainty is None else maps.uncertainty[index].numpy()
        files = save_map_files(target.parent, f"{target.name}_{index:05d}", maps.task, values, format,
                               {**maps.provenance, "frame": index, "format": format}, previews=False,
                               uncertainty=uncertainty)
        written.append(files[0])
    return written


def _expect(maps: Maps, *tasks: str):
    if not isinstance(maps, Maps) or maps.task not in tasks:
        raise GenPerceptError(f"this node renders {' or '.join(tasks)} maps, got "
                              f"{getattr(maps, 'task', type(maps).__name__)}")
