"""A prediction running beside Blender's UI: a thread in-process, the user's external Python as a process, or a
ComfyUI server through its HTTP API (core's comfyui_bridge).

Either way its maps are kept (kept_maps) as soon as they exist, from the job's own thread, so Blender's main
thread only polls ``done`` and ``progress`` and builds the relief afterwards.
"""

import json
import math
import tempfile
import threading
import time

from . import kept_maps, maps

# Network blocks per task seen in the last finished run of a model (a progress bar that moves evenly after the
# first run; before, it moves by tasks and approaches each task's end)
_BLOCKS_PER_TASK: dict[tuple, int] = {}


class BackgroundJob:
    """A job on ``self.thread`` that records its exception in ``self.error``."""

    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self):
        """Wait for the thread; its error as a MapError ("cancelled" after ``cancel``)."""
        self.thread.join()
        if isinstance(self.error, maps.Cancelled):
            raise maps.MapError("cancelled")
        if self.error:
            raise self.error if isinstance(self.error, maps.MapError) else maps.MapError(str(self.error))


class PredictionJob(BackgroundJob):
    """Predicts the ``tasks`` of ``photo`` the kept maps in ``folder`` lack (``wanted``: relief names, depth /
    normal / matte), keeping what it predicts there."""

    def __init__(self, photo, wanted, folder, model="", python="", base="", comfyui=("", "")):
        self.photo, self.folder, self.model, self.base = photo, folder, model, base
        self.server = None
        if comfyui[0]:  # predicted on a ComfyUI server: its nodes answer depth with disparity where needed
            from genpercept_bundle.comfyui_bridge import ComfyUIBridge

            self.server, self.server_model, self.tasks = ComfyUIBridge(comfyui[0]), comfyui[1], list(wanted)
        else:
            self.tasks = maps.model_tasks(model, wanted, base)  # a disparity-only model answers depth with disparity
        self.result, self.error, self.process = None, None, None
        self.cancelled = threading.Event()
        self.started = time.perf_counter()
        self._blocks = [0] * len(self.tasks)  # network blocks run, per task
        self._task = 0
        self.stopped_at = None
        if not self.server and (python or not maps.bundle_in_process()):
            self.process = maps.start_external(python, photo, self.tasks, str(folder), model, base)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            if self.server:
                predicted, provenance = self._predict_on_server()
            elif self.process:
                predicted = maps.finish_external(self.process, str(self.folder), self.photo, self.tasks)
                provenance = {}
            else:
                predicted, provenance = maps.predict_in_process(self.photo, self.tasks, self.model, self.cancelled,
                                                                self.base, on_block=self._count_block)
                _BLOCKS_PER_TASK[self._key()] = max(self._blocks)
            if self.cancelled.is_set():
                raise maps.Cancelled()
            unsaved = {task: values for task, values in predicted.items()
                       if kept_maps.file_of(self.folder, self.photo, task) is None}
            kept_maps.keep(self.folder, self.photo, unsaved, provenance)
            self.result = kept_maps.kept(self.folder, self.photo, predicted)
        except Exception as error:  # reported in Blender's UI by the operator
            self.error = maps.Cancelled() if self.cancelled.is_set() else error
        finally:
            self.stopped_at = time.perf_counter()

    def _predict_on_server(self) -> tuple[dict, dict]:
        """The maps ComfyUI predicted, and their provenance per task (its sidecars)."""
        with tempfile.TemporaryDirectory() as scratch:
            files = self.server.predict_maps(self.photo, scratch, self.tasks, self.server_model,
                                             cancelled=self.cancelled.is_set)
            provenance = {task: json.loads(path.with_suffix(".json").read_text()) for task, path in files.items()}
            predicted = maps.relief_maps({task: maps.load_map(str(path), task) for task, path in files.items()})
        return predicted, {"depth" if task == "disparity" else task: meta for task, meta in provenance.items()}

    def _key(self):
        return (self.model, self.base, tuple(self.tasks))

    def _count_block(self, task_index):
        self._task = min(task_index, len(self._blocks) - 1)
        self._blocks[self._task] += 1

    @property
    def progress(self) -> float:
        """0 .. 1: tasks done, and blocks of the running task (external runs: by elapsed time, never reaching 1)."""
        if self.process or self.server:
            return 1.0 - math.exp(-(time.perf_counter() - self.started) / 30.0)
        expected, running = _BLOCKS_PER_TASK.get(self._key()), self._blocks[self._task]
        within = min(running / expected, 0.99) if expected else 1.0 - math.exp(-running / 40.0)
        return min((self._task + within) / len(self._blocks), 0.99)

    def status(self) -> str:
        return f"predicting {', '.join(self.tasks)}"

    def wait(self) -> dict:
        self.join()
        return self.result

    def cancel(self, wait: float = 0.0):
        """Stop the prediction: the external process is terminated; in-process, the predictor stops before its next
        network block. ``wait``: seconds to wait for it to have stopped."""
        self.cancelled.set()
        if self.process and self.process.poll() is None:
            self.process.terminate()
        if wait:
            self.thread.join(wait)

