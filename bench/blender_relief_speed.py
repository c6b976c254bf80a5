"""Time to build a 2048x2048-vertex relief in headless Blender (bpy), editable and as a plain mesh.

    python bench/blender_relief_speed.py [--resolution 2048]

Run it with a Python that has bpy==5.0.1. Imports the add-on's functions directly (no UI).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp())
import bpy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from blender_addon.relief import bake, orthographic_relief  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=2048)
    args = parser.parse_args()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    n = args.resolution
    y, x = np.mgrid[0:n, 0:n] / n
    depth = (0.5 + 0.3 * np.sin(8 * x) * np.cos(6 * y)).astype(np.float32)
    depth[:, n // 2:] += 0.2  # a step edge to cut
    matte = np.ones_like(depth)
    timings = {}
    started = time.perf_counter()
    obj = orthographic_relief("bench", depth, matte, resolution=n, height=0.2)
    bpy.context.collection.objects.link(obj)
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    timings["editable_relief_s"] = round(time.perf_counter() - started, 2)
    vertices = len(mesh.vertices)
    obj.to_mesh_clear()
    started = time.perf_counter()
    bake(obj)
    timings["bake_to_plain_mesh_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps({"vertices": vertices, "faces": len(obj.data.polygons), **timings}, indent=2))


if __name__ == "__main__":
    main()
