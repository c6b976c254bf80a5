"""A batch job: which frames are left to do, and the worker that predicts and saves them.

The same ``FramePredictor`` runs in this process (``local``) and as Ray Data's actor class (``ray``),
so both write exactly what ``genpercept predict`` writes for an image. A frame is done when its
sidecars (written last) and every file they list exist; a rerun skips it.
"""

import fcntl
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..atomic_files import check_writable_folder, remove_partial_files
from ..errors import GenPerceptError, OutputError
from ..map_files import maps_complete, save_prediction
from ..tasks import get_task
from .frames import Frame, load_frame

LOCK_NAME = ".genpercept-batch.lock"


@dataclass(frozen=True)
class BatchOptions:
    """What to predict and how to save it (the options of ``genpercept predict``)."""

    out: Path
    tasks: tuple[str, ...] | None = None  # None: the model's (the embedded model: depth, normal, matte)
    model: str | None = None
    format: str = "png16"
    processing_res: int | None = None
    flip_average: bool | None = None
    convention: str = "opengl"
    raw: bool = False
    previews: bool = True
    batch_size: int = 1  # frames per forward pass (frames of one size only); 1 gives exactly predict's bytes
    device: str = "auto"
    dtype: str = "float32"
    vae: str | None = None
    text_encoder: str | None = None
    allow_download: bool = True
    max_pixels: int | None = None  # the largest photo read (None: images.max_pixels())
    base: str | None = None  # DMP: the Stable Diffusion folder its LoRA goes onto
    steps: int | None = None  # models that denoise (Marigold, DMP...): None = the model's default
    ensemble_size: int = 1  # models that start from noise: maps merged, with an uncertainty map
    seed: int = 0
    vae_tiling: str = "auto"  # "auto", "on" or "off" (GenPerceptPredictor.uses_tiling)
    threads: int | None = None  # CPU threads of the networks (None: torch's default)
    detail: int = 1  # > 1: N x N tiles merged into each photo's maps (inference/detail_tiles.py)

    def __post_init__(self):
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(dict.fromkeys(get_task(t).name for t in self.tasks)))
        if self.batch_size < 1:
            raise GenPerceptError(f"batch size must be at least 1, got {self.batch_size}")
        if self.detail < 1:
            raise GenPerceptError(f"the detail factor must be at least 1, got {self.detail}")

    def with_model_tasks(self) -> "BatchOptions":
        """These options with ``tasks`` filled in from the model when none were asked for."""
        if self.tasks is not None:
            return self
        from ..models.folders import open_model_folder

        folder = open_model_folder(self.model, (), self.allow_download, base=self.base)
        return replace(self, tasks=tuple(folder.default_tasks))

    @property
    def sampling(self):
        from ..inference.predictor import SamplingOptions

        return SamplingOptions(self.steps, self.ensemble_size, self.seed)


@dataclass
class Summary:
    frames: int
    skipped: int = 0  # already done by an earlier run
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    seconds: float = 0.0

    @property
    def predicted(self) -> int:
        return self.frames - self.skipped - len(self.failures)

    def __str__(self):
        rate = self.predicted / self.seconds if self.seconds else 0.0
        lines = [f"{self.predicted} frames predicted in {self.seconds:.1f} s ({rate:.2f} frames/s), "
                 f"{self.skipped} already done, {len(self.failures)} failed"]
        lines += [f"  failed: {source}: {reason}" for source, reason in self.failures]
        return "\n".join(lines)


class FramePredictor:
    """Loads the model once, then predicts and saves frames; returns a reason per frame ("" when saved)."""

    def __init__(self, options: BatchOptions):
        from ..inference.predictor import GenPerceptPredictor

        self.options = options = options.with_model_tasks()
        if options.threads:
            import torch

            torch.set_num_threads(options.threads)
        self.predictor = GenPerceptPredictor.from_pretrained(
            options.model, options.tasks, device=options.device, dtype=options.dtype, vae=options.vae,
            text_encoder=options.text_encoder, allow_download=options.allow_download, base=options.base,
            vae_tiling=options.vae_tiling)

    def save(self, frames: list[Frame], images: list[np.ndarray]) -> list[str]:
        reasons, start = [], 0
        while start < len(frames):  # runs of same-size frames, at most batch_size at a time
            end = start + 1
            while end < len(frames) and end - start < self.options.batch_size and images[end].shape == images[start].shape:
                end += 1
            reasons += self._save_run(frames[start:end], images[start:end])
            start = end
        return reasons

    def _predictions(self, images: np.ndarray):
        """Each task's Prediction for a run of same-size images, one task at a time where it can."""
        options, predictor = self.options, self.predictor
        if options.detail > 1:
            from ..inference.detail_tiles import predict_with_detail
            from ..inference.predictor import as_rgb_batch

            yield from predict_with_detail(predictor, as_rgb_batch(images), options.tasks, options.detail,
                                           options.processing_res, options.flip_average, options.sampling).values()
            return
        for _, prediction in predictor.iter_predictions(images, options.tasks, options.processing_res,
                                                        options.batch_size, flip_average=options.flip_average,
                                                        sampling=options.sampling):
            yield prediction

    def _save_run(self, frames, images) -> list[str]:
        """Predict one run of same-size frames and save each task's maps as soon as they are made (a large photo
        then holds one task's full-size maps at once)."""
        options = self.options
        try:
            for prediction in self._predictions(np.stack(images)):
                for index, frame in enumerate(frames):
                    save_prediction(options.out, frame.stem, frame.source, prediction, options.format,
                                    options.convention, options.raw, options.previews, index)
                del prediction
        except OutputError:
            raise  # the next frames could not be written either
        except GenPerceptError as error:
            if len(frames) > 1:  # find which frame it was
                return [reason for frame, image in zip(frames, images) for reason in self._save_run([frame], [image])]
            return [str(error)]
        return [""] * len(frames)


def read_frames(frames: list[Frame], pixel_cap: int | None = None):
    """Decode ``frames``: (the readable ones, their images, (source, reason) of the others)."""
    readable, images, failures = [], [], []
    for frame in frames:
        try:
            images.append(load_frame(frame, pixel_cap))
            readable.append(frame)
        except GenPerceptError as error:
            failures.append((frame.source, str(error)))
    return readable, images, failures


def predict_frames(frames: list[Frame], options: BatchOptions, progress=True) -> list[tuple[str, str]]:
    """The local engine: every frame in this process, ``batch_size`` at a time; returns the failures."""
    from tqdm import tqdm

    predictor = FramePredictor(options)
    options = predictor.options
    failures = []
    with tqdm(total=len(frames), unit="frame", desc="predicting", disable=None if progress else True) as bar:
        for start in range(0, len(frames), options.batch_size):
            readable, images, unreadable = read_frames(frames[start:start + options.batch_size], options.max_pixels)
            for failure in unreadable:
                bar.write(f"genpercept: skipped: {failure[1]}", file=sys.stderr)
            failures += unreadable
            for frame, reason in zip(readable, predictor.save(readable, images)):
                if reason:
                    bar.write(f"genpercept: skipped {frame.source}: {reason}", file=sys.stderr)
                    failures.append((frame.source, reason))
            bar.update(len(readable) + len(unreadable))
    return failures


def run_batch(frames: list[Frame], options: BatchOptions, engine: str = "local", progress=True, **engine_options) -> Summary:
    """Predict the frames not done yet into ``options.out`` with ``engine`` ("local" or "ray": see ray_engine.py).
    The output folder is locked for the run; temporary files an earlier, killed run left there are removed."""
    summary = Summary(len(frames))
    options = options.with_model_tasks()
    with output_folder_lock(options.out):
        remove_partial_files(options.out)
        pending = [frame for frame in frames if not maps_complete(options.out, frame.stem, options.tasks)]
        summary.skipped = len(frames) - len(pending)
        started = time.perf_counter()
        if pending and engine == "ray":
            from .ray_engine import predict_frames_on_ray

            summary.failures = predict_frames_on_ray(pending, options, progress=progress, **engine_options)
        elif pending:
            summary.failures = predict_frames(pending, options, progress)
        summary.seconds = time.perf_counter() - started
    return summary


class output_folder_lock:
    """Hold an exclusive lock on the output folder (released when the process ends, however it ends)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __enter__(self):
        self.handle = open(check_writable_folder(self.folder, create=True) / LOCK_NAME, "w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise GenPerceptError(f"another batch job is writing to {self.folder}; wait for it or choose another "
                                  "output folder") from None
        return self

    def __exit__(self, *exc):
        (self.folder / LOCK_NAME).unlink(missing_ok=True)
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
