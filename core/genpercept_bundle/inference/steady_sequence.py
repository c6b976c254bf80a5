"""Steady maps for video: each frame's map follows the previous frame's along the optical flow, so depth does not
flip between near and far, nor normals swing, from one frame to the next.

A one-step perceiver sees every frame on its own; small changes in the image can flip what it sees. For each frame
after the first:

1. the optical flow from this frame back to the previous one (OpenCV's DIS) carries the previous frame's steady map
   onto this frame; pixels the flow cannot follow (they fail a forward-backward check, or come from outside the
   image) are left to the frame's own prediction;
2. the frame's own map is fitted to that carried map (depth and disparity: scale and shift; normals: rotation), so
   the sequence keeps one depth scale and one orientation;
3. where the flow holds, the two are mixed: ``strength`` of the carried map, the rest from the frame, an exponential
   average along the motion that keeps the frame's detail and lets real changes through over a few frames.
"""

import numpy as np

from ..alignment import fit_depth_onto, fit_rotation
from ..errors import GenPerceptError
from ..tasks import get_task

DEFAULT_STRENGTH = 0.7
FLOW_SIDE = 512  # the flow is computed on frames at most this large (speed), then scaled to the map's size
# consecutive frames whose mean grey difference (0..255, at FLOW_SIDE) is below this look like one shot
SAME_SHOT_DIFFERENCE = 40.0


def _cv2():
    import cv2

    return cv2


def _grey(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    cv2 = _cv2()
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, size[::-1], interpolation=cv2.INTER_AREA) if grey.shape != size else grey


def _flow_size(height: int, width: int) -> tuple[int, int]:
    factor = min(1.0, FLOW_SIDE / max(height, width))
    return max(8, round(height * factor)), max(8, round(width * factor))


def looks_like_one_shot(frames: np.ndarray) -> bool:
    """Whether uint8 RGB frames [B,H,W,3] look like consecutive frames of one shot (not a batch of unrelated
    photos): every neighbouring pair differs little."""
    if frames.shape[0] < 2:
        return False
    size = _flow_size(*frames.shape[1:3])
    greys = [_grey(frame, size).astype(np.float32) for frame in frames]
    return all(float(np.abs(a - b).mean()) < SAME_SHOT_DIFFERENCE for a, b in zip(greys, greys[1:]))


def flow_to_previous(frame: np.ndarray, previous: np.ndarray, size: tuple[int, int]):
    """(where each pixel of ``frame`` was in ``previous`` as absolute coordinates [h,w,2] at the maps' size,
    the pixels whose flow is trustworthy [h,w] float 0..1)."""
    cv2 = _cv2()
    work = _flow_size(*frame.shape[:2])
    current, before = _grey(frame, work), _grey(previous, work)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    backward = dis.calc(current, before, None)  # [h,w,2]: this frame -> previous
    forward = dis.calc(before, current, None)
    rows, columns = np.mgrid[0:work[0], 0:work[1]].astype(np.float32)
    x, y = columns + backward[..., 0], rows + backward[..., 1]
    returned = cv2.remap(forward, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    error = np.linalg.norm(backward + returned, axis=-1)
    inside = (x >= 0) & (x <= work[1] - 1) & (y >= 0) & (y <= work[0] - 1)
    trusted = (inside & (error < 0.5 + 0.05 * np.linalg.norm(backward, axis=-1))).astype(np.float32)
    trusted = cv2.GaussianBlur(cv2.erode(trusted, np.ones((3, 3), np.uint8)), (0, 0), 1.5)  # soft edges
    height, width = size
    scale = np.array([width / work[1], height / work[0]], np.float32)
    coordinates = cv2.resize(np.stack([x, y], -1) * scale + (scale - 1) / 2, (width, height),
                             interpolation=cv2.INTER_LINEAR)
    return coordinates, cv2.resize(trusted, (width, height), interpolation=cv2.INTER_LINEAR)


class SteadyStream:
    """``steady_maps`` one frame at a time (a long movie's maps are never held together): ``add`` each frame's map
    with its frame, in order, and get the frame's steady map back."""

    def __init__(self, task, strength: float = DEFAULT_STRENGTH):
        self.task = get_task(task)
        if not 0 <= strength < 1:
            raise GenPerceptError(f"steadiness must be at least 0 and below 1, got {strength}")
        if self.task.mirror is None:
            raise GenPerceptError(f"{self.task.name} maps are colour codes that cannot be mixed between frames")
        self.strength = strength
        self._previous = None  # (the previous frame, its steady map before clipping)

    def add(self, own: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """The steady map of ``own`` (this frame's map, the documented convention) given this uint8 RGB ``frame``."""
        own = own.astype(np.float32)
        if self._previous is not None and self.strength > 0:
            own = self._follow(own, frame, *self._previous)
        self._previous = (frame, own)
        return own if self.task.unit_vectors else np.clip(own, 0.0, 1.0)

    def _follow(self, own, frame, previous_frame, previous_steady):
        cv2 = _cv2()
        coordinates, trusted = flow_to_previous(frame, previous_frame, own.shape[:2])
        carried = cv2.remap(previous_steady, coordinates[..., 0], coordinates[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        if self.task.unit_vectors:
            carried /= np.maximum(np.linalg.norm(carried, axis=-1, keepdims=True), 1e-6)
            own = own @ fit_rotation(own, carried, trusted).T
        elif self.task.name in ("depth", "disparity"):
            fitted = fit_depth_onto(own, carried, weights=trusted)
            own = own if fitted is None else fitted
        weight = (self.strength * trusted)[..., None] if own.ndim == 3 else self.strength * trusted
        mixed = own + weight * (carried - own)
        if self.task.unit_vectors:
            mixed /= np.maximum(np.linalg.norm(mixed, axis=-1, keepdims=True), 1e-6)
        return mixed.astype(np.float32)


def steady_maps(task, maps: np.ndarray, frames: np.ndarray, strength: float = DEFAULT_STRENGTH) -> np.ndarray:
    """A sequence's maps [B,H,W] or [B,H,W,3] in the documented convention (depth / disparity in [0,1], unit normals,
    mattes) made steady along the motion of its uint8 RGB ``frames`` [B,h,w,3] (see the module doc); the same shape.
    ``strength`` in [0, 1): how much of the previous frame's map a followed pixel keeps (0 = off)."""
    stream = SteadyStream(task, strength)
    if maps.shape[0] != frames.shape[0]:
        raise GenPerceptError(f"{maps.shape[0]} maps for {frames.shape[0]} frames; give one frame per map")
    return np.stack([stream.add(own, frame) for own, frame in zip(maps, frames)])
