"""The Ray engine: Ray Data streams the frames through a pool of actors, each holding one model.

frames -> ``map`` (decode on CPU tasks) -> ``map_batches(RayFramePredictor, ActorPoolStrategy)``
(predict and save, one model per actor, ``num_gpus`` each) -> a status row per frame. Ray Data's own
backpressure bounds how many decoded frames wait; nothing here schedules work by hand.
"""

import sys

import numpy as np

from ..errors import GenPerceptError
from .frames import Frame
from .job import BatchOptions, FramePredictor, read_frames


def _decode(row: dict, pixel_cap: int | None = None) -> dict:
    frame = Frame(str(row["stem"]), str(row["path"]), int(row["index"]))
    readable, images, failures = read_frames([frame], pixel_cap)
    row["image"] = images[0] if readable else np.zeros((0, 0, 3), np.uint8)
    row["error"] = failures[0][1] if failures else ""
    return row


class RayFramePredictor:
    """Ray Data's stateful transform: the model is loaded once per actor."""

    def __init__(self, options: BatchOptions):
        self.worker = FramePredictor(options)

    def __call__(self, batch: dict) -> dict:
        frames = [Frame(str(s), str(p), int(i)) for s, p, i in zip(batch["stem"], batch["path"], batch["index"])]
        errors = [str(e) for e in batch["error"]]
        readable = [k for k, error in enumerate(errors) if not error]
        reasons = self.worker.save([frames[k] for k in readable], [np.asarray(batch["image"][k]) for k in readable])
        for k, reason in zip(readable, reasons):
            errors[k] = reason
        return {"source": np.array([frame.source for frame in frames]), "error": np.array(errors)}


def predict_frames_on_ray(frames: list[Frame], options: BatchOptions, address=None, workers: int = 2,
                          gpus_per_worker: float = 0.0, progress=True) -> list[tuple[str, str]]:
    """Predict ``frames`` on a Ray cluster (``address``; None starts one on this machine with a CPU per worker and
    one for decoding); returns the failures."""
    try:
        import ray
        from ray.data import ActorPoolStrategy
    except ImportError as error:
        raise GenPerceptError("the ray engine needs Ray Data: pip install 'genpercept-bundle[ray]'") from error
    if workers < 1:
        raise GenPerceptError(f"--workers must be at least 1, got {workers}")
    from tqdm import tqdm

    started_here = not ray.is_initialized()
    if started_here:
        local = {} if address else {"num_cpus": workers + 1}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False, **local)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        rows = [{"stem": frame.stem, "path": frame.path, "index": frame.index} for frame in frames]
        statuses = (ray.data.from_items(rows)
                    .map(_decode, num_cpus=0.5, fn_kwargs={"pixel_cap": options.max_pixels})
                    .map_batches(RayFramePredictor, compute=ActorPoolStrategy(size=workers), batch_size=options.batch_size,
                                 num_cpus=1, num_gpus=gpus_per_worker or None, batch_format="numpy",
                                 fn_constructor_kwargs={"options": options}))
        failures = []
        with tqdm(total=len(frames), unit="frame", desc=f"predicting on ray ({workers} workers)",
                  disable=None if progress else True) as bar:
            for status in statuses.iter_rows():
                if status["error"]:
                    failures.append((str(status["source"]), str(status["error"])))
                    bar.write(f"genpercept: skipped {status['source']}: {status['error']}", file=sys.stderr)
                bar.update()
        return failures
    finally:
        if started_here:
            ray.shutdown()
