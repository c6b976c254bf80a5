"""Render the README's relief preview: examples/photo.jpg -> embedded model -> relief -> Cycles (CPU).

    python bench/render_relief_preview.py [--out docs/relief_preview.png]
"""

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp())
import bpy  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from blender_addon.maps import predict_in_process  # noqa: E402
from blender_addon.material import relief_material  # noqa: E402
from blender_addon.relief import orthographic_relief  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "docs" / "relief_preview.png"))
    args = parser.parse_args()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    photo = str(REPO / "examples" / "photo.jpg")
    maps = predict_in_process(photo, ["depth", "normal", "matte"])
    relief = orthographic_relief("coffee", maps["depth"], resolution=384, height=0.25, width=1.5, edge_angle=85.0,
                                 material=relief_material("coffee", photo, maps["normal"]))
    scene = bpy.context.scene
    scene.collection.objects.link(relief)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.location, camera.rotation_euler = (0.0, -1.55, 1.25), (math.radians(52), 0.0, 0.0)
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.rotation_euler, sun.data.energy = (math.radians(40), math.radians(-25), 0.0), 3.5
    for item in (camera, sun):
        scene.collection.objects.link(item)
    scene.camera = camera
    scene.world = bpy.data.worlds.new("world")
    scene.world.color = (0.05, 0.05, 0.06)
    scene.render.engine, scene.cycles.device, scene.cycles.samples = "CYCLES", "CPU", 32
    scene.render.resolution_x, scene.render.resolution_y = 640, 400
    scene.render.filepath = args.out
    bpy.ops.render.render(write_still=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
