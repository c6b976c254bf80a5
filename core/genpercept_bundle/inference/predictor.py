"""The predictor: loads a model folder once and turns uint8 photos into maps of any of its tasks.

Per chunk of images: resize and normalise (processing.py) -> the method's encode -> perceive ->
decode (method.py) -> finish at the input size -> average with the mirrored photo where asked.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from ..choices import MIN_IMAGE_SIDE
from ..conventions import normals_from_raw
from ..errors import GenPerceptError
from ..models.embedding import resolve_embedding
from ..models.folders import ModelFolder, open_model_folder
from ..models.weights import load_model
from ..tasks import TASKS, Task, get_task
from .devices import pick_device, pick_dtype
from .method import OneStepPerceiver
from .processing import average_with_mirrored, check_processing_size, finish_prediction, normalise_rgb, resize_rgb
from .provenance import versions, weights_sha256


def as_rgb_batch(images) -> torch.Tensor:
    """uint8 RGB as [H,W,3] / [B,H,W,3] numpy, [B,3,H,W] torch, or a list of same-size [H,W,3] -> uint8 [B,3,H,W]."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise GenPerceptError("no images given")
        if len({np.asarray(i).shape for i in images}) != 1:
            raise GenPerceptError("images in one batch must share a size; predict them one by one")
        images = np.stack([np.asarray(i) for i in images])
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
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

    @cached_property
    def maps(self) -> np.ndarray:
        return normals_from_raw(self.raw) if get_task(self.task).unit_vectors else self.raw


@dataclass
class LoadedTask:
    unet: UNet2DConditionModel
    embedding: torch.Tensor  # [1,N,D]
    info: dict  # the UNet folder's name and where the embedding came from, for provenance


class GenPerceptPredictor:
    """Loads a model folder once and predicts any of its tasks.

    >>> predictor = GenPerceptPredictor.from_pretrained(None, tasks=["depth"])  # embedded default
    >>> depth = predictor.predict(rgb_uint8_hw3, task="depth").maps[0]         # [H,W], 0 = near
    """

    def __init__(self, model: ModelFolder, device="auto", dtype="float32", vae=None, text_encoder=None):
        self.model = model
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.vae_folder = Path(vae) if vae else model.path / "vae"
        self.text_encoder = text_encoder
        self.vae = load_model(AutoencoderKL, self.vae_folder, self.dtype, self.device)
        self.method = OneStepPerceiver(self.vae, model.settings.timestep)
        self._tasks: dict[str, LoadedTask] = {}
        self._hashes: dict[Path, str] = {}

    @classmethod
    def from_pretrained(cls, model=None, tasks=("depth",), device="auto", dtype="float32", vae=None,
                        text_encoder=None, allow_download=True, download_root=None):
        """``model``: a folder in the released layout, a hub repo id, or None for the embedded default."""
        wanted = [get_task(t) for t in tasks]
        folder = open_model_folder(model, wanted, allow_download, download_root)
        predictor = cls(folder, device, dtype, vae, text_encoder)
        for task in wanted:
            predictor.load_task(task.name)
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
        return sorted(self._tasks)

    def load_task(self, name: str) -> LoadedTask:
        """Load (once) the UNet and empty-text embedding of a task."""
        task = get_task(name)
        if task.name not in self._tasks:
            folder = self.model.unet_folder(task)
            unet = load_model(UNet2DConditionModel, folder, self.dtype, self.device)
            kind = self.model.embedding_kind(task)
            embedding, origin = resolve_embedding(self.model.path, kind, unet.config.cross_attention_dim, self.text_encoder)
            info = {"unet": folder.name, "embedding": f"{kind} {list(embedding.shape)} from {origin}"}
            loaded = LoadedTask(unet, embedding.to(self.device, self.dtype), info)
            self._self_check(task, loaded)
            self._tasks[task.name] = loaded
        return self._tasks[task.name]

    @torch.inference_mode()
    def _self_check(self, task: Task, loaded: LoadedTask):
        """Refuse a model that gives NaN or infinite values on a small grey image (in this dtype, on this device):
        its every prediction would be garbage. Costs one 64x64 pass."""
        grey = torch.zeros(1, 3, 64, 64, dtype=self.dtype, device=self.device)  # mid-grey in [-1, 1]
        decoded = self.method.decode(self.method.perceive(loaded.unet, self.method.encode(grey), loaded.embedding))
        if not torch.isfinite(decoded).all():
            raise GenPerceptError(f"the {task.name} model of {self.model.source} gives NaN or infinite values on a test "
                                  f"image ({str(self.dtype).removeprefix('torch.')} on {self.device}); it cannot be "
                                  "used: try --dtype float32, or re-download it")

    def modules(self) -> torch.nn.ModuleDict:
        """The VAE and every loaded UNet in one module, for hosts that manage devices (ComfyUI's ModelPatcher)."""
        return torch.nn.ModuleDict({"vae": self.vae, **{f"unet_{name}": t.unet for name, t in self._tasks.items()}})

    def to(self, device) -> "GenPerceptPredictor":
        """Move weights and embeddings to ``device`` (a no-op for what is already there)."""
        self.device = torch.device(device)
        self.modules().to(self.device)
        for loaded in self._tasks.values():
            loaded.embedding = loaded.embedding.to(self.device)
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
                flip_average=None, check_interrupt=None) -> Prediction:
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
        """
        return self.predict_tasks(images, [task], processing_res, batch_size, on_progress,
                                  flip_average, check_interrupt)[get_task(task).name]

    def predict_tasks(self, images, tasks, processing_res=None, batch_size=1, on_progress=None,
                      flip_average=None, check_interrupt=None) -> dict[str, Prediction]:
        """``predict`` for several tasks at once: each image is encoded by the VAE once per processing
        resolution and shared by the tasks processed at it."""
        return dict(self.iter_predictions(images, tasks, processing_res, batch_size, on_progress, flip_average,
                                          check_interrupt))

    @torch.inference_mode()
    def iter_predictions(self, images, tasks, processing_res=None, batch_size=1, on_progress=None,
                         flip_average=None, check_interrupt=None):
        """``predict_tasks`` one task at a time: (task name, Prediction) pairs. A task's full-size maps are made when
        it comes, so whoever saves and drops each in turn holds one task's maps at once (a 48 MP photo's normals
        are 576 MB). ``on_progress(done, total)`` counts chunks of images over all tasks."""
        # 1. Check inputs
        tasks = [get_task(task) for task in dict.fromkeys(tasks)]
        rgb = as_rgb_batch(images)  # [B,3,H,W] uint8
        resolutions = self._check_inputs(rgb, tasks, processing_res, batch_size, flip_average)
        averaged = {task.name: self.averages_with_mirror(task, flip_average) for task in tasks}
        for task in tasks:
            self.load_task(task.name)
        count, size = rgb.shape[0], tuple(rgb.shape[-2:])
        with self._interruptible(check_interrupt):
            # 2. Encode every chunk once per view (photo, mirror) and processing resolution: latents are small
            chunks = range(0, count, batch_size)
            latents = {(start, mirrored, resolution): self._encode(rgb[start:start + batch_size], mirrored, resolution)
                       for start in chunks for mirrored in (False, True) for resolution in set(resolutions.values())
                       if not mirrored or any(averaged[t.name] and resolutions[t.name] == resolution for t in tasks)}
            # 3. Each task in turn: perceive, decode and finish at the input size, average with the mirror
            for position, task in enumerate(tasks):
                # built by a helper, so this generator keeps no reference to the maps it has handed over
                yield task.name, self._prediction(task, latents, chunks, resolutions, averaged, size, progress=(
                    None if on_progress is None else lambda done: on_progress(position * count + done,
                                                                              len(tasks) * count)))

    def _prediction(self, task: Task, latents, chunks, resolutions, averaged, size, progress=None) -> Prediction:
        parts = []
        for start in chunks:
            parts.append(self._task_maps(task, latents, start, resolutions[task.name], averaged[task.name], size))
            if progress is not None:
                progress(min(start + chunks.step, chunks.stop))
        prediction = parts[0] if len(parts) == 1 else torch.cat(parts)  # [B,C,H,W] in [0,1]
        del parts
        raw = prediction[:, 0] if task.channels == 1 else prediction.permute(0, 2, 3, 1)
        raw = np.ascontiguousarray(raw.numpy())  # float32
        del prediction
        return Prediction(task.name, raw, self._provenance(task, resolutions[task.name], averaged[task.name]))

    def _check_inputs(self, rgb, tasks: list[Task], processing_res, batch_size, flip_average) -> dict[str, int]:
        """Every problem up front, before any weights are touched; returns each task's processing resolution."""
        if batch_size < 1:
            raise GenPerceptError(f"batch size must be at least 1, got {batch_size}")
        resolutions = {task.name: self.processing_resolution(task, processing_res) for task in tasks}
        for resolution in set(resolutions.values()):
            check_processing_size(*rgb.shape[-2:], resolution)
        if flip_average and any(task.mirror is None for task in tasks):
            names = ", ".join(task.name for task in tasks if task.mirror is None)
            raise GenPerceptError(f"{names} maps are colour codes that cannot be averaged; predict with flip averaging off")
        return resolutions

    def _encode(self, chunk, mirrored: bool, resolution: int) -> torch.Tensor:
        view = chunk.flip(-1) if mirrored else chunk
        image = normalise_rgb(resize_rgb(view, resolution), self.dtype).to(self.device)  # [b,3,h,w]
        return self.method.encode(image)  # [b,4,h/8,w/8]

    def _task_maps(self, task: Task, latents, start, resolution, averaged: bool, size) -> torch.Tensor:
        """One chunk's maps [b,C,H,W] in [0,1] of ``task``; a mirrored view is a second pass (not a doubled batch:
        the same peak memory), averaged in place."""
        own = self._finish(task, latents[(start, False, resolution)], size)
        if averaged:
            own = average_with_mirrored(own, self._finish(task, latents[(start, True, resolution)], size), task)
        return own

    def _finish(self, task: Task, rgb_latent, size) -> torch.Tensor:
        loaded = self._tasks[task.name]
        target_latent = self.method.perceive(loaded.unet, rgb_latent, loaded.embedding)
        decoded = self.method.decode(target_latent)  # [b,3,h',w']
        if not torch.isfinite(decoded).all():
            raise GenPerceptError(f"the {task.name} model of {self.model.source} produced NaN or infinite values for "
                                  "this image; its weights may be damaged (try another dtype or device, or re-download "
                                  "it)")
        return finish_prediction(decoded, task.channels, size).cpu()  # [b,C,H,W]

    @contextmanager
    def _interruptible(self, check_interrupt):
        """Call ``check_interrupt`` before every block of the VAE and of the loaded UNets while inside."""
        if check_interrupt is None:
            yield
            return
        networks = [self.vae.encoder, self.vae.decoder, *(loaded.unet for loaded in self._tasks.values())]
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

    def _provenance(self, task: Task, processing_res: int, flip_average: bool) -> dict:
        loaded = self._tasks[task.name]
        return {
            "task": task.name,
            "meaning": task.meaning,
            "model": self.model.source,
            "unet": loaded.info["unet"],
            "unet_sha256": self._hash(self.model.unet_folder(task)),
            "vae": str(self.vae_folder) if self.vae_folder != self.model.path / "vae" else "vae",
            "vae_sha256": self._hash(self.vae_folder),
            "embedding": loaded.info["embedding"],
            "processing_res": processing_res,
            "flip_average": flip_average,
            "resample": "bilinear antialias (uint8 in, float out)",
            "timestep": self.method.timestep,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "attention": type(next(iter(loaded.unet.attn_processors.values()), None)).__name__,
            "versions": versions(),
        }
