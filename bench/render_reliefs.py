"""Render the README's reliefs: a room, a street and a portrait through the add-on with its default settings, Cycles.

    PYTHONPATH=core python bench/render_reliefs.py [--out-dir docs] [--samples 24]

Each photo goes through the build operator exactly as a user's click does (embedded model, in-process prediction,
default settings), then an oblique camera frames the relief. Prints, per photo, the share of the frame the relief
covers and the share of its pixels that are see-through (material alpha): none may be mostly transparent.
Photos: TUM RGB-D office (CC BY 4.0), nuScenes front camera (CC BY-NC-SA 4.0, /work/shared/eval/real_dev),
examples/astronaut.jpg (NASA, public domain).
"""

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp())
import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from blender_addon import ui  # noqa: E402

EVAL = Path("/work/shared/eval")
PHOTOS = {
    "room": EVAL / "rgbd_open3d_samples" / "real" / "TUM_color.png",
    "street": EVAL / "real_dev" / "depth" / "nuscenes_cam_front_rgb.jpg",
    "portrait": REPO / "examples" / "astronaut.jpg",
}


def oblique_camera(obj, scene):
    """A camera in front of and above the relief, looking down at it at 50 degrees, framing its width."""
    corners = np.array([obj.matrix_world @ Vector(c) for c in obj.bound_box])
    centre, size = corners.mean(0), np.ptp(corners, 0)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    tilt = math.radians(50)
    distance = 1.25 * max(size[0], size[1])
    camera.location = (centre[0], centre[1] - distance * math.sin(tilt), centre[2] + distance * math.cos(tilt))
    camera.rotation_euler = (tilt, 0.0, 0.0)
    camera.data.lens = 40
    camera.data.clip_start, camera.data.clip_end = distance / 100, distance * 10
    scene.collection.objects.link(camera)
    scene.camera = camera


def render(name, photo, out_dir: Path, samples: int) -> dict:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ui.register()
    try:
        assert bpy.ops.genpercept.build_relief("EXEC_DEFAULT", filepath=str(photo)) == {"FINISHED"}
        scene, relief = bpy.context.scene, bpy.context.active_object
        oblique_camera(relief, scene)
        sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
        sun.rotation_euler, sun.data.energy = (math.radians(35), math.radians(-20), 0.0), 3.5
        scene.collection.objects.link(sun)
        scene.world = bpy.data.worlds.new("world")
        scene.world.color = (0.05, 0.05, 0.06)
        scene.render.engine, scene.cycles.device, scene.cycles.samples = "CYCLES", "CPU", samples
        scene.render.resolution_x, scene.render.resolution_y = 480, 320
        scene.render.film_transparent = True  # alpha = where the relief is, and how opaque
        scene.render.image_settings.color_mode = "RGBA"
        raw = Path(tempfile.mkdtemp()) / f"{name}.png"
        scene.render.filepath = str(raw)
        bpy.ops.render.render(write_still=True)
    finally:
        ui.unregister()
    from PIL import Image

    rgba = np.asarray(Image.open(raw).convert("RGBA"), np.float32) / 255.0
    alpha = rgba[..., 3:]
    covered = alpha[..., 0] > 0.01
    background = np.array([0.13, 0.13, 0.15], np.float32)
    flat = rgba[..., :3] * alpha + background * (1 - alpha)
    out = out_dir / f"relief_{name}.png"
    Image.fromarray(np.round(flat * 255).astype(np.uint8)).save(out, optimize=True)
    return {"photo": str(photo), "render": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
            "frame_covered": round(float(covered.mean()), 3),
            "see_through_share_of_relief": round(float((alpha[covered, 0] < 0.5).mean()), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--samples", type=int, default=24)
    args = parser.parse_args()
    report = {name: render(name, photo, args.out_dir, args.samples) for name, photo in PHOTOS.items()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
