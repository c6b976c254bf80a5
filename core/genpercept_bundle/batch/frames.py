"""The frames of a batch job: every image of the inputs, and every frame of every video.

A frame's outputs are named by its stem: an image's own stem (as ``genpercept predict`` names
them), ``<video stem>_<frame:06d>`` for a video's frames. Videos are decoded with OpenCV.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GenPerceptError
from ..map_files import check_unique_stems

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass(frozen=True)
class Frame:
    stem: str  # the outputs' names: <stem>_<task>.<ext>
    path: str  # the image or video file
    index: int = -1  # the frame of a video; -1 for an image

    @property
    def source(self) -> str:
        """The ``source`` of the sidecar JSON: the image path, or ``<video>#frame=<n>``."""
        return self.path if self.index < 0 else f"{self.path}#frame={self.index}"


def list_frames(patterns) -> list[Frame]:
    """Frames of files, folders (their images and videos, sorted) and glob patterns; GenPerceptError if there are
    none, or if two would write the same output names."""
    from ..images import IMAGE_SUFFIXES, list_inputs

    frames = []
    for file in list_inputs(patterns, IMAGE_SUFFIXES | VIDEO_SUFFIXES, "images or videos"):
        if file.suffix.lower() in VIDEO_SUFFIXES:
            frames += [Frame(f"{file.stem}_{index:06d}", str(file), index) for index in range(_frame_count(file))]
        else:
            frames.append(Frame(file.stem, str(file)))
    check_unique_stems((frame.stem, frame.source) for frame in frames)
    return frames


def load_frame(frame: Frame, pixel_cap: int | None = None) -> np.ndarray:
    """The frame as uint8 RGB [H,W,3]; GenPerceptError if it cannot be read or has more pixels than ``pixel_cap``
    (default: ``images.max_pixels()``)."""
    from ..images import check_pixel_count, load_image, max_pixels

    if frame.index < 0:
        return load_image(frame.path, pixel_cap)
    import cv2

    video = cv2.VideoCapture(frame.path)
    try:
        size = int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
        check_pixel_count(*size, frame.source, max_pixels(pixel_cap))
        video.set(cv2.CAP_PROP_POS_FRAMES, frame.index)
        ok, bgr = video.read()
    finally:
        video.release()
    if not ok:
        raise GenPerceptError(f"cannot decode frame {frame.index} of {frame.path}")
    return np.ascontiguousarray(bgr[..., ::-1])


def _frame_count(video: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise GenPerceptError(f"cannot open {video} as a video (is it corrupt, or a codec OpenCV lacks?)")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if count <= 0:
        raise GenPerceptError(f"{video} holds no frames")
    return count
