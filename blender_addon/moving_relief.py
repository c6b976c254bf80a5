"""A moving relief: one relief object whose shape follows the frames of an image sequence or a movie.

Every frame's heights (core's ``sequence_heights``: the relief controls applied to each frame, one scale for all)
are written as a numbered 16-bit PNG sequence beside the sequence's kept maps. The relief's height image is that
sequence (an Image of source SEQUENCE) and a driver sets the relief modifier's Frame input to the scene frame, so
the viewport, Cycles, EEVEE and the exporters see each frame's shape; nothing is baked per frame. The photo texture
is the frames themselves (the image sequence or the movie), following the timeline the same way.
"""

import hashlib
import json
import shutil
from pathlib import Path

import bpy
from genpercept_bundle.map_files import write_map

from . import kept_maps, maps
from .relief import FRAMES_PROPERTY


def heights_folder(kept_folder: Path, settings: dict) -> Path:
    """Where the height frames of these relief ``settings`` go: one folder per settings, so a rebuild with the same
    settings reuses the files and one with others never overwrites what another relief shows."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return kept_folder / f"heights_{digest}"


def height_file(folder: Path, index: int) -> Path:
    return folder / f"{kept_maps.frame_stem(index)}.png"


def write_height_frames(folder: Path, heights) -> list[Path]:
    """``heights`` [frames, rows, columns] in [0, 1] as 16-bit PNGs in ``folder`` (written to a staging folder
    first, so the folder is complete or absent); returns the files in frame order."""
    files = [height_file(folder, index) for index in range(len(heights))]
    if all(file.is_file() for file in files):
        return files
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for index, frame in enumerate(heights):
            write_map(height_file(staging, index), frame, "png16")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def height_sequence(name: str, first_file: Path) -> "bpy.types.Image":
    """The height frames as one image sequence, read as data (Non-Color)."""
    image = bpy.data.images.load(str(first_file), check_existing=False)
    image.name = f"{name} heights"
    image.source = "SEQUENCE"
    image.colorspace_settings.name = "Non-Color"
    return image


def drive_frame(obj, modifier, count: int):
    """The relief modifier's Frame follows the scene frame, held at the first and last frame outside 1..count."""
    item = next(i for i in modifier.node_group.interface.items_tree if getattr(i, "name", "") == "Frame")
    curve = obj.driver_add(f'modifiers["{modifier.name}"]["{item.identifier}"]')
    curve.driver.type = "SCRIPTED"
    curve.driver.expression = f"clamp(frame, 1, {count})"  # a simple expression: runs without Python auto-run
    obj[FRAMES_PROPERTY] = count


def play_frames(material, sequence):
    """The material's photo texture plays the frames (the image sequence or the movie) along the timeline."""
    node = next((link.from_node for link in material.node_tree.links
                 if link.to_socket.name == "Base Color" and link.from_node.type == "TEX_IMAGE"), None)
    if node is None:
        return
    node.image.source = "MOVIE" if sequence.movie else "SEQUENCE"
    user = node.image_user
    user.frame_duration, user.frame_start = sequence.count, 1
    user.frame_offset = 0 if sequence.movie else sequence.first_number - 1
    user.use_auto_refresh, user.use_cyclic = True, False


def set_scene_frames(scene, sequence):
    """The scene's frame range is the sequence's (from frame 1), and a movie's frame rate its own."""
    scene.frame_start, scene.frame_end = 1, sequence.count
    if sequence.fps:
        scene.render.fps = max(1, round(sequence.fps))
        scene.render.fps_base = scene.render.fps / sequence.fps  # 29.97 = 30 / 1.001
    scene.frame_set(1)


def frames_of(obj) -> int:
    """How many frames a moving relief has (0: a still relief)."""
    return int(obj.get(FRAMES_PROPERTY, 0)) if obj is not None else 0


def heights_at(obj, image, scene):
    """The heights [rows, columns] a moving relief shows at the scene's frame, read from its height frame."""
    frame = min(max(scene.frame_current, 1), frames_of(obj))
    path = height_file(Path(bpy.path.abspath(image.filepath)).parent, frame - 1)
    return maps.load_image_pixels(path)[..., 0]
