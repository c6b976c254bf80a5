"""The predictor: loads a model folder once and turns uint8 photos into maps of any of its tasks.

Per chunk of images: resize and normalise as the model's family does (processing.py) -> the method's encode ->
perceive -> decode (methods/) -> merge an ensemble (ensembles.py) -> finish at the input size -> average with the
mirrored photo where asked.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from ..choices import MIN_IMAGE_SIDE
from ..conventions import normals_from_raw
from ..errors import GenPerceptError
from ..models.folders import ModelFolder, open_model_folder
from ..models.weights import load_model
from ..tasks import TASKS, Task, get_task
from .devices import pick_device, pick_dtype
from .ensembles import ENSEMBLE_TASKS, ensemble_maps
from .methods import load_method
from .processing import (average_with_mirrored, check_processing_size, finish_normals, finish_prediction, prepare_image,
                         processing_size)
from .provenance import versions, weights_sha256

VAE_TILING_CHOICES = ("auto", "on", "off")
# Above this many processed pixels "auto" tiles the VAE: the release's default 768 x 768 stays untiled (6.4 GB peak for an
# SD2.1-size model here), 1024 x 1024 untiled already peaks at 8.2 GB and the VAE's activations grow with the square of
# the side (docs/performance.md)
VAE_TILING_PIXELS = 768 * 768


def as_rgb_batch(images) -> torch.Tensor:
    """uint8 RGB as [H,W,3] / [B,H,W,3] numpy, [B,3,H,W] torch, or a list of same-size [H,W,3] -> uint8 [B,3,H,W]."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise GenPerceptError("no images given")
        if len({np.asarray(i).shape for i in images}) != 1:
            raise GenPerceptError("images in one batch must share a size; predict them one by one")
        images = np.stack([np.asarray(i) for i in images])
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        images = np.require(images, requirements="W")  # np.asarray(PIL image) is read-only; torch warns on those
        images = torch.from_numpy(images[None] if images.ndim == 3 else images).permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = list(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise GenPerceptError(f"expected RGB images as [B,3,H,W] uint8 (or [H,W,3] arrays), got {shape}")
    if images.dtype != torch.uint8:
        raise GenPerceptError(f"expected uint8 RGB values 0-255, got {images.dtype}; convert with (x * 255).round()")
    if images.shape[0] == 0:
        raise GenPerceptError("the image batch is empty")
    if min(images.shape[-2:]) < MIN_IMAGE_SIDE:
        raise GenPerceptError(f"the image is {images.shape[-1]}x{images.shape[-2]} pixels; the model needs at least "
                              f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    return images.contiguous()


@dataclass
class Prediction:
    """One task's output for a batch.

    ``raw``: float32 in [0,1], [B,H,W] (scalar tasks) or [B,H,W,3], exactly the
    reference pipeline's output. ``maps``: the same in the documented
    convention (unit vectors for normals; identical to ``raw`` otherwise). With flip
    averaging ``raw`` is the mean of that output and the mirrored photo's, mirrored back.
    """

    task: str
    raw: np.ndarray
    provenance: dict = field(default_factory=dict)
    # [B,H,W] float32, >= 0: how much an ensemble's members disagreed (None without an ensemble)
    uncertainty: np.ndarray | None = None

    @cached_property
    def maps(self) -> np.ndarray:
        return normals_from_raw(self.raw) if get_task(self.task).unit_vectors else self.raw


@dataclass(frozen=True)
class SamplingOptions:
    """For methods that start from noise (Marigold, LCM, Lotus-G): the denoising ``steps`` (None: the model's
    default), the ``ensemble_size`` (maps merged into one, with an uncertainty map) and the ``seed``."""

    steps: int | None = None
    ensemble_size: int = 1
    seed: int = 0


class GenPerceptPredictor:
    """Loads a model folder once and predicts any of its tasks, whatever its family (GenPercept, Marigold, E2E-FT,
    Lotus...: models/families.py).

    >>> predictor = GenPerceptPredictor.from_pretrained(None, tasks=["depth"])  # embedded default
    >>> depth = predictor.predict(rgb_uint8_hw3, task="depth").maps[0]         # [H,W], 0 = near
    """

    def __init__(self, model: ModelFolder, device="auto", dtype="float32", vae=None, text_encoder=None,
                 vae_tiling="auto"):
        if vae_tiling not in VAE_TILING_CHOICES:
            raise GenPerceptError(f"VAE tiling must be one of {', '.join(VAE_TILING_CHOICES)}, got {vae_tiling!r}")
        self.vae_tiling = vae_tiling
        self.model = model
        self.family = model.family
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.vae_folder = Path(vae) if vae else model.vae_folder
        self.text_encoder = text_encoder
        self.vae = load_model(AutoencoderKL, self.vae_folder, self.dtype, self.device)
        self._methods: dict[str, object] = {}
        self._hashes: dict[Path, str] = {}

    @classmethod
    def from_pretrained(cls, model=None, tasks=("depth",), device="auto", dtype="float32", vae=None,
                        text_encoder=None, allow_download=True, download_root=None, base=None, vae_tiling="auto"):
        """``model``: a model folder of any supported family, a hub repo id, or None for the embedded default.
        ``tasks``: what to load; for a one-task model (Marigold, E2E-FT, Lotus, DMP) None loads its task.
        ``base``: DMP only, the Stable Diffusion v1.4 folder or hub id its LoRA goes onto.
        ``vae_tiling``: "auto" (tiles above VAE_TILING_PIXELS processed pixels), "on" or "off" (see ``uses_tiling``)."""
        wanted = [get_task(t) for t in tasks] if tasks else []
        folder = open_model_folder(model, wanted, allow_download, download_root, base)
        predictor = cls(folder, device, dtype, vae, text_encoder, vae_tiling)
        for task in predictor.tasks if tasks is None else wanted:
            predictor.load_task(get_task(task).name)
        return predictor

    def processing_resolution(self, task, requested: int | None = None) -> int:
        """The longest side ``task`` is processed at: ``requested`` if given (0 = native), else the model's default
        (768 for the release; the embedded model works at the size each task was trained at)."""
        return self.model.settings.processing_resolution(task) if requested is None else requested

    @property
    def tasks(self) -> list[str]:
        return self.model.available_tasks(TASKS.values())

    @property
    def loaded_tasks(self) -> list[str]:
        return sorted(self._methods)

    @property
    def stochastic(self) -> bool:
        """Whether this model starts from noise (a seed matters, ensembles help): Marigold, LCM, Lotus-G."""
        return self.family.stochastic

    def load_task(self, name: str):
        """Load (once) the networks of a task; returns its method (methods/)."""
        task = get_task(name)
        if task.name not in self._methods:
            method = load_method(self.model, task, self.vae, self.dtype, self.device, self.text_encoder)
            self._self_check(task, method)
            self._methods[task.name] = method
        return self._methods[task.name]

    @torch.inference_mode()
    def _self_check(self, task: Task, method):
        """Refuse a model that gives NaN or infinite values on a small grey image (in this dtype, on this device):
        its every prediction would be garbage. Costs one 64x64 pass."""
        grey = torch.zeros(1, 3, 64, 64, dtype=self.dtype, device=self.device)  # mid-grey in [-1, 1]
        latent = method.encode(grey)
        generator = torch.Generator(self.device).manual_seed(0)
        decoded = method.decode(method.perceive(latent, method.initial_noise(latent, generator), generator))
        if not torch.isfinite(decoded).all():
            raise GenPerceptError(f"the {task.name} model of {self.model.source} gives NaN or infinite values on a test "
                                  f"image ({str(self.dtype).removeprefix('torch.')} on {self.device}); it cannot be "
                                  "used: try --dtype float32, or re-download it")

    def modules(self) -> torch.nn.ModuleDict:
        """The VAE and every loaded network in one module, for hosts that manage devices (ComfyUI's ModelPatcher)."""
        return torch.nn.ModuleDict({"vae": self.vae, **{f"{part}_{name}": module for name, method in self._methods.items()
                                                         for part, module in method.modules().items()}})

    def to(self, device) -> "GenPerceptPredictor":
        """Move weights and embeddings to ``device`` (a no-op for what is already there)."""
        self.device = torch.device(device)
        self.modules().to(self.device)
        for method in self._methods.values():
            method.embedding = method.embedding.to(self.device)
            if getattr(method, "class_labels", None) is not None:
                method.class_labels = method.class_labels.to(self.device)
        return self

    @property
    def flip_average_tasks(self) -> list[str]:
        """The tasks this model averages with the mirrored photo unless told otherwise."""
        return list(self.model.settings.flip_average_tasks)

    def averages_with_mirror(self, task, flip_average=None) -> bool:
        """Whether ``predict`` averages ``task`` with the mirrored photo, given its ``flip_average`` argument."""
        task = get_task(task)
        wanted = task.name in self.flip_average_tasks if flip_average is None else bool(flip_average)
        return wanted and task.mirror is not None

    def predict(self, images, task="depth", processing_res=None, batch_size=1, on_progress=None,
                flip_average=None, check_interrupt=None, sampling: SamplingOptions | None = None) -> Prediction:
        """Predict ``task`` for uint8 RGB ``images`` (see ``as_rgb_batch``), ``batch_size`` at a time.

        ``processing_res``: longest side the model sees (None: the model's default for
        the task, see ``processing_resolution``; 0: native size). Outputs are always at the input size.
        ``flip_average``: also predict the mirrored photo and average the two (twice the
        time, steadier maps); None: the model's default (``flip_average_tasks``: every
        task for the embedded model, nothing for released checkpoints, whose
        reference pipeline does not do it).
        ``on_progress(done, total)`` is called after each chunk; raising in it stops the run.
        ``check_interrupt()`` is called before every block of the VAE and the UNet; raising in it stops the run
        within a block's time, even inside one large image.
        ``sampling``: steps, ensemble size and seed for models that start from noise (SamplingOptions).
        """
        return self.predict_tasks(images, [task], processing_res, batch_size, on_progress,
                                  flip_average, check_interrupt, sampling)[get_task(task).name]

    def predict_tasks(self, images, tasks, processing_res=None, batch_size=1, on_progress=None,
                      flip_average=None, check_interrupt=None, sampling: SamplingOptions | None = None
                      ) -> dict[str, Prediction]:
        """``predict`` for several tasks at once: each image is encoded by the VAE once per processing
        resolution and shared by the tasks processed at it."""
        return dict(self.iter_predictions(images, tasks, processing_res, batch_size, on_progress, flip_average,
                                          check_interrupt, sampling))

    @torch.inference_mode()
    def iter_predictions(self, images, tasks, processing_res=None, batch_size=1, on_progress=None,
                         flip_average=None, check_interrupt=None, sampling: SamplingOptions | None = None):
        """``predict_tasks`` one task at a time: (task name, Prediction) pairs. A task's full-size maps are made when
        it comes, so whoever saves and drops each in turn holds one task's maps at once (a 48 MP photo's normals
        are 576 MB). ``on_progress(done, total)`` counts chunks of images over all tasks."""
        # 1. Check inputs
        tasks = [get_task(task) for task in dict.fromkeys(tasks)]
        sampling = sampling or SamplingOptions()
        rgb = as_rgb_batch(images)  # [B,3,H,W] uint8
        resolutions = self._check_inputs(rgb, tasks, processing_res, batch_size, flip_average, sampling)
        averaged = {task.name: self.averages_with_mirror(task, flip_average) for task in tasks}
        for task in tasks:
            self.load_task(task.name)
        count, size = rgb.shape[0], tuple(rgb.shape[-2:])
        run = _Run(size, sampling, torch.Generator(self.device).manual_seed(sampling.seed))
        if any(self.uses_tiling(size, resolution) for resolution in set(resolutions.values())):
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()
        with self._interruptible(check_interrupt):
            # 2. Encode every chunk once per view (photo, mirror) and processing resolution: latents are small
            chunks = range(0, count, batch_size)
            for start in chunks:
                for resolution in set(resolutions.values()):
                    for mirrored in (False, True):
                        if not mirrored or any(averaged[t.name] and resolutions[t.name] == resolution for t in tasks):
                            run.latents[(start, mirrored, resolution)] = self._encode(
                                rgb[start:start + batch_size], mirrored, resolution, tasks[0], run.generator)
            # 3. Each task in turn: perceive, decode and finish at the input size, average with the mirror
            for position, task in enumerate(tasks):
                # built by a helper, so this generator keeps no reference to the maps it has handed over
                yield task.name, self._prediction(task, run, chunks, resolutions, averaged, progress=(
                    None if on_progress is None else lambda done: on_progress(position * count + done,
                                                                              len(tasks) * count)))

    def _prediction(self, task: Task, run, chunks, resolutions, averaged, progress=None) -> Prediction:
        parts, doubts = [], []
        for start in chunks:
            maps, doubt = self._task_maps(task, run, start, resolutions[task.name], averaged[task.name])
            parts.append(maps)
            doubts.append(doubt)
            if progress is not None:
                progress(min(start + chunks.step, chunks.stop))
        prediction = parts[0] if len(parts) == 1 else torch.cat(parts)  # [B,C,H,W] in [0,1]
        del parts
        raw = prediction[:, 0] if task.channels == 1 else prediction.permute(0, 2, 3, 1)
        raw = np.ascontiguousarray(raw.numpy())  # float32
        del prediction
        uncertainty = None if doubts[0] is None else np.ascontiguousarray(torch.cat(doubts)[:, 0].numpy())
        provenance = self._provenance(task, resolutions[task.name], averaged[task.name], run.sampling)
        return Prediction(task.name, raw, provenance, uncertainty)

    def _check_inputs(self, rgb, tasks: list[Task], processing_res, batch_size, flip_average,
                      sampling: SamplingOptions) -> dict[str, int]:
        """Every problem up front, before any weights are touched; returns each task's processing resolution."""
        if batch_size < 1:
            raise GenPerceptError(f"batch size must be at least 1, got {batch_size}")
        if sampling.ensemble_size < 1 or (sampling.steps is not None and sampling.steps < 1):
            raise GenPerceptError(f"ensemble size and steps must be at least 1, got {sampling.ensemble_size} and "
                                  f"{sampling.steps}")
        if sampling.ensemble_size > 1 and not self.stochastic:
            raise GenPerceptError(f"{self.family.title} is deterministic: every member of an ensemble would be the "
                                  "same map; use an ensemble size of 1 (ensembles are for Marigold, LCM and Lotus-G)")
        if sampling.ensemble_size > 1 and any(task.name not in ENSEMBLE_TASKS for task in tasks):
            raise GenPerceptError(f"ensembles merge {', '.join(ENSEMBLE_TASKS[:-1])} and {ENSEMBLE_TASKS[-1]} maps only")
        resolutions = {task.name: self.processing_resolution(task, processing_res) for task in tasks}
        for resolution in set(resolutions.values()):
            check_processing_size(*rgb.shape[-2:], resolution)
        if flip_average and any(task.mirror is None for task in tasks):
            names = ", ".join(task.name for task in tasks if task.mirror is None)
            raise GenPerceptError(f"{names} maps are colour codes that cannot be averaged; predict with flip averaging off")
        return resolutions

    def _encode(self, chunk, mirrored: bool, resolution: int, task: Task, generator):
        """A chunk's photo latents [b,4,h/8,w/8] and the padding its family's processing added."""
        view = chunk.flip(-1) if mirrored else chunk
        image, padding = prepare_image(view, resolution, self.family.processing, self.dtype)
        return self._methods[task.name].encode(image.to(self.device), generator), padding

    def _task_maps(self, task: Task, run, start, resolution, averaged: bool):
        """One chunk's maps [b,C,H,W] in [0,1] of ``task`` and their uncertainty [b,1,H,W] (None without an
        ensemble); a mirrored view is a second pass (not a doubled batch: the same peak memory), averaged in place."""
        own, doubt = self._finish(task, run, *run.latents[(start, False, resolution)])
        if averaged:
            other, other_doubt = self._finish(task, run, *run.latents[(start, True, resolution)])
            own = average_with_mirrored(own, other, task)
            if doubt is not None:
                doubt = average_with_mirrored(doubt, other_doubt, "depth")
        return own, doubt

    def _finish(self, task: Task, run, rgb_latent, padding):
        method, ensemble = self._methods[task.name], run.sampling.ensemble_size
        latents = rgb_latent.repeat_interleave(ensemble, dim=0) if ensemble > 1 else rgb_latent  # [b*E,4,h,w]
        noise, steps = method.initial_noise(latents, run.generator), run.sampling.steps
        if ensemble > 1:  # one member at a time, as diffusers' Marigold does with batch size 1: the same numbers
            members = torch.cat([method.decode(method.perceive(latents[i:i + 1], noise[i:i + 1], run.generator, steps))
                                 for i in range(latents.shape[0])])
        else:
            members = method.decode(method.perceive(latents, noise, run.generator, steps))  # [b*E,C,h',w'] in [0,1]
        if not torch.isfinite(members).all():
            raise GenPerceptError(f"the {task.name} model of {self.model.source} produced NaN or infinite values for "
                                  "this image; its weights may be damaged (try another dtype or device, or re-download "
                                  "it)")
        style, doubt = self.family.processing, None
        vectors = task.unit_vectors and getattr(method, "normals_as_vectors", False)  # n in [-1, 1], not (n + 1) / 2
        if ensemble > 1:
            bottom, right = padding
            members = members[..., :members.shape[-2] - bottom, :members.shape[-1] - right]
            merged = [ensemble_maps(group, task, *method.invariance, vectors) for group in members.split(ensemble)]
            members = torch.cat([m for m, _ in merged])
            doubt = finish_prediction(torch.cat([d for _, d in merged]), run.size, (0, 0), style).cpu()
            padding = (0, 0)
        if vectors:
            return finish_normals(members, run.size, padding, style).cpu(), doubt
        return finish_prediction(members, run.size, padding, style).cpu(), doubt  # [b,C,H,W]

    def uses_tiling(self, size: tuple[int, int], processing_res: int) -> bool:
        """Whether the VAE encodes and decodes in overlapping tiles (diffusers' tiling, tiles of the VAE's sample size,
        25 % overlap, blended): bounded memory at any resolution, for slightly different maps (docs/performance.md).
        "auto" tiles when more than VAE_TILING_PIXELS go through the model."""
        if self.vae_tiling != "auto":
            return self.vae_tiling == "on"
        height, width = processing_size(*size, processing_res)
        return height * width > VAE_TILING_PIXELS

    @contextmanager
    def _interruptible(self, check_interrupt):
        """Call ``check_interrupt`` before every block of the VAE and of the loaded networks while inside."""
        if check_interrupt is None:
            yield
            return
        networks = [self.vae.encoder, self.vae.decoder, *(module for method in self._methods.values()
                                                          for module in method.modules().values())]
        blocks = [block for network in networks
                  for name in ("down_blocks", "mid_block", "up_blocks") if getattr(network, name, None) is not None
                  for block in (getattr(network, name) if name != "mid_block" else [network.mid_block])]
        handles = [block.register_forward_pre_hook(lambda *_: check_interrupt()) for block in blocks]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _hash(self, folder: Path) -> str:
        if folder not in self._hashes:
            self._hashes[folder] = weights_sha256(folder)
        return self._hashes[folder]

    def _provenance(self, task: Task, processing_res: int, flip_average: bool, sampling: SamplingOptions) -> dict:
        method = self._methods[task.name]
        details = method.provenance()
        if sampling.steps is not None and "steps" in details:
            details["steps"] = sampling.steps
        stochastic = {"ensemble_size": sampling.ensemble_size, "seed": sampling.seed} if self.stochastic else {}
        return {
            "task": task.name,
            "meaning": task.meaning,
            "model": self.model.source,
            "family": self.family.name,
            **details,
            "unet_sha256": self._hash(self.model.unet_folder(task)),
            "vae": str(self.vae_folder) if self.vae_folder != self.model.path / "vae" else "vae",
            "vae_sha256": self._hash(self.vae_folder),
            **stochastic,
            "processing_res": processing_res,
            "vae_tiling": bool(self.vae.use_tiling),
            "flip_average": flip_average,
            "resample": ("bilinear antialias (uint8 in, float out)" if self.family.processing == "genpercept"
                         else "bilinear antialias in, bilinear out (diffusers' Marigold processing)"),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            "attention": type(next(iter(method.unet.attn_processors.values()), None)).__name__,
            "versions": versions(),
        }


@dataclass
class _Run:
    """What one ``iter_predictions`` call carries through its chunks."""

    size: tuple[int, int]
    sampling: SamplingOptions
    generator: torch.Generator
    latents: dict = field(default_factory=dict)  # (chunk start, mirrored, resolution) -> (latent, padding)
