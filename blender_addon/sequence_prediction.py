"""A frame sequence's depth, predicted frame by frame beside Blender's UI and made steady along the motion.

Each frame's depth follows the previous frame's along the optical flow (core's ``SteadyStream``), so the relief
does not flicker. The maps are kept per frame (kept_maps) in a staging folder that becomes the sequence's depth
folder only when every frame is in: a cancelled or failed run leaves nothing behind. Predictions run inside
Blender only (the bundle must import there): steadiness needs each frame's map as it comes.
"""

import math
import shutil
import threading
import time

from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.frame_sequences import read_frames
from genpercept_bundle.inference.steady_sequence import DEFAULT_STRENGTH, SteadyStream
from genpercept_bundle.map_files import save_maps

from . import kept_maps, maps
from .prediction import BackgroundJob


class SequencePredictionJob(BackgroundJob):
    """Predicts the steady depth of every frame of ``sequence`` (a ``FrameSequence``) into its kept ``folder``.
    ``steadiness`` in [0, 1): how much of the previous frame's depth a followed pixel keeps."""

    def __init__(self, sequence, folder, model="", base="", steadiness=DEFAULT_STRENGTH):
        if not maps.bundle_in_process():
            raise maps.MapError("a moving relief is predicted inside Blender, but the GenPercept bundle (with torch "
                                "and OpenCV) does not import here; an external Python predicts single photos only")
        self.sequence, self.folder, self.model, self.base = sequence, folder, model, base
        self.steadiness = steadiness
        self.tasks = maps.model_tasks(model, ["depth"], base)  # a disparity-only model answers with disparity
        self.frames_done = 0
        self.error, self.stopped_at = None, None
        self.cancelled = threading.Event()
        self._blocks, self._blocks_per_frame = 0, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        staging = kept_maps.sequence_staging_folder(self.folder)
        try:
            shutil.rmtree(staging, ignore_errors=True)  # a run killed outright (Blender quit) left it
            self._predict_into(staging)
            self._check_interrupt()
            final = kept_maps.sequence_depth_folder(self.folder)
            shutil.rmtree(final, ignore_errors=True)  # an incomplete one (files deleted by hand)
            staging.rename(final)
        except Exception as error:  # reported in Blender's UI by the operator
            self.error = maps.Cancelled() if self.cancelled.is_set() else error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.stopped_at = time.perf_counter()

    def _predict_into(self, staging):
        try:
            predictor = maps.loaded_predictor(self.model, self.tasks, self.base)
            steady = SteadyStream(self.tasks[0], self.steadiness)
            form = kept_maps.kept_format()
            for index, frame in enumerate(read_frames(self.sequence)):
                self._blocks = 0
                [(task, prediction)] = list(predictor.iter_predictions(frame, self.tasks,
                                                                       check_interrupt=self._check_interrupt))
                values = steady.add(prediction.maps[0], frame)
                depth = 1.0 - values if task == "disparity" else values  # depth order, what a relief needs
                meta = {"source": self._source(index), "steadiness": self.steadiness, **prediction.provenance}
                save_maps(staging, kept_maps.frame_stem(index), "depth", depth, form, meta, previews=False)
                self._blocks_per_frame = self._blocks_per_frame or self._blocks
                self.frames_done = index + 1
        except GenPerceptError as error:
            raise maps.MapError(str(error)) from error

    def _source(self, index: int) -> str:
        if self.sequence.movie:
            return f"{self.sequence.movie}#frame={index}"
        return self.sequence.files[index]

    def _check_interrupt(self):
        if self.cancelled.is_set():
            raise maps.Cancelled()
        self._blocks += 1

    @property
    def progress(self) -> float:
        """0 .. 1: frames done, and network blocks of the frame running (the first frame's count sets the pace)."""
        if self._blocks_per_frame:
            within = min(self._blocks / self._blocks_per_frame, 0.99)
        else:
            within = 1.0 - math.exp(-self._blocks / 40.0)
        return min((self.frames_done + within) / self.sequence.count, 0.99)

    def status(self) -> str:
        return f"predicting depth of frame {min(self.frames_done + 1, self.sequence.count)} of {self.sequence.count}"

    def wait(self) -> list:
        """The kept depth files, one per frame (MapError "cancelled" after ``cancel``)."""
        self.join()
        return kept_maps.kept_sequence(self.folder, self.sequence.count)

    def cancel(self, wait: float = 0.0):
        """Stop before the next network block; ``wait``: seconds to wait for it to have stopped."""
        self.cancelled.set()
        if wait:
            self.thread.join(wait)
