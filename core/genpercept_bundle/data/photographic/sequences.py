"""A moving camera through one photographic scene: frames with exact depth, for temporal steadiness metrics.

The layout is built once and rendered from ``frames`` cameras along a smooth hand-held path (a sideways dolly with a
slow pan and a little shake, ~1 m over the sequence). The frames are written as the split ``sequence`` in the
dataset layout (ids = frame numbers), with ``sequence.json`` beside them holding every frame's world -> camera
rotation and camera position, so consecutive depth maps can be compared after alignment.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np

from ...atomic_files import write_json
from .assets import AssetLibrary
from .cameras import camera_basis
from .layouts import random_layout
from .scenes import blender_output_silenced, build_layout, render_view

SEQUENCE_SPLIT = "sequence"
SEQUENCE_SEEDS = 900_000  # a dataset's sequence scene: seed x 1e6 + 900000, after every split's block


def camera_path(layout, frames: int, rng: np.random.Generator) -> list:
    """The layout's camera moved sideways and forward along a smooth path, its target panning with it."""
    start = layout.camera
    right, up, back = camera_basis(start)
    travel = rng.uniform(0.5, 1.2) * rng.choice([-1, 1])
    cameras = []
    for t in np.linspace(0.0, 1.0, frames):
        ease = 0.5 - 0.5 * np.cos(np.pi * t)  # starts and stops smoothly
        shake = rng.normal(0.0, 0.004, 3)
        offset = right * travel * ease - back * 0.3 * ease + up * 0.05 * np.sin(2 * np.pi * t) + shake
        target = np.asarray(start.target) + right * travel * ease * 0.6
        cameras.append(replace(start, location=tuple(np.asarray(start.location) + offset),
                               target=tuple(float(v) for v in target)))
    return cameras


def render_sequence(root: Path, seed: int, frames: int, size, assets: Path, samples: int, threads: int = 0,
                    kind: str | None = None) -> Path:
    """Render the sequence of dataset ``seed`` into ``root/sequence`` (held-out assets: it is for evaluation)."""
    from ..dataset import PHOTOGRAPHIC_FORMAT, Sample, write_sample

    scene_seed = seed * 1_000_000 + SEQUENCE_SEEDS
    library = AssetLibrary.load(Path(assets), test_pool=True)
    for attempt in range(100):  # the first seed whose layout is a room or a street (a backdrop does not move)
        layout = random_layout(scene_seed + attempt, library, size)
        if layout.kind != "backdrop" and (kind is None or layout.kind == kind):
            break
    cameras = camera_path(layout, frames, np.random.default_rng(layout.seed))
    poses = []
    with blender_output_silenced():
        built = build_layout(layout, library.root, size, samples, threads)
        for index, camera in enumerate(cameras):
            frame = render_view(layout, built, size, camera=camera, frame_index=index)
            write_sample(root, SEQUENCE_SPLIT, Sample(f"{index:06d}", frame["rgb"], frame["depth"], normal=frame["normal"],
                                                      alpha=frame["alpha"], intrinsics=frame["intrinsics"]),
                         PHOTOGRAPHIC_FORMAT)
            poses.append({"frame": index, "world_to_camera": camera_basis(camera).round(6).tolist(),
                          "position": [round(float(v), 6) for v in camera.location]})
    if not (Path(root) / "dataset.json").is_file():  # a folder of its own
        write_json(Path(root) / "dataset.json", {**PHOTOGRAPHIC_FORMAT, "size": list(size), "samples": samples,
                                                 "assets": str(assets)})
    write_json(Path(root) / SEQUENCE_SPLIT / "sequence.json", {"scene_seed": layout.seed, "kind": layout.kind,
                                                               "frames": poses})
    return Path(root) / SEQUENCE_SPLIT
