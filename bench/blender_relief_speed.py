"""Relief build times in headless Blender (bpy): a 2048 x 2048-vertex relief, and a rebuild from kept maps.

    PYTHONPATH=core python bench/blender_relief_speed.py [--resolution 2048] [--photo-size 4000x3000]

- build: heights from a full-resolution depth map (core relief_heights) + the Geometry Nodes relief evaluated, as a
  sheet and as a closed solid, and applied as a plain mesh;
- rebuild: the build operator on a photo whose maps are kept (what Adjust Last Operation runs): no prediction, maps
  from memory, default settings (512 vertices across) and at 2048.
Run it with a Python that has bpy==5.0.1. Prints JSON.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from genpercept_bundle.relief_heights import grid_shape, relief_heights  # noqa: E402

from blender_addon import kept_maps, ui  # noqa: E402
from blender_addon.relief import bake, evaluated_face_count, orthographic_relief  # noqa: E402


def synthetic_depth(height, width):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 0.5 + 0.3 * np.sin(8 * x / width) * np.cos(6 * y / height)
    depth[:, width // 2:] += 0.2  # a step edge to cut
    return np.clip(depth, 0, 1).astype(np.float32)


def timed(work):
    started = time.perf_counter()
    result = work()
    return result, round(time.perf_counter() - started, 2)


def build_times(resolution):
    depth = synthetic_depth(resolution, resolution)
    results = {}
    for solid in (False, True):
        heights, heights_s = timed(lambda: relief_heights(depth, *grid_shape(*depth.shape, resolution)))

        def make():
            obj = orthographic_relief("bench", heights, height=15.0, width=100.0, base=3.0, solid=solid)
            bpy.context.collection.objects.link(obj)
            return obj, evaluated_face_count(obj)

        (obj, faces), relief_s = timed(make)
        _, bake_s = timed(lambda: bake(obj))
        results["solid" if solid else "sheet"] = {"faces": faces, "heights_s": heights_s, "relief_s": relief_s,
                                                  "build_total_s": round(heights_s + relief_s, 2),
                                                  "plain_mesh_s": bake_s}
        bpy.data.objects.remove(obj)
    return results


def rebuild_times(photo_size):
    """The operator on a photo whose maps are kept in memory, as Adjust Last Operation re-runs it."""
    width, height = photo_size
    work = Path(tempfile.mkdtemp())
    photo = work / "large.png"
    from PIL import Image

    Image.new("RGB", (width, height), (120, 110, 100)).save(photo)
    folder = kept_maps.folder_for(str(photo))
    normals = np.zeros((height, width, 3), np.float32)
    normals[..., 2] = 1
    kept_maps.keep(folder, str(photo), {"depth": synthetic_depth(height, width), "normal": normals})
    ui.register()
    times = {}
    for resolution in (512, 2048):
        _, times[f"rebuild_{resolution}_s"] = timed(lambda: bpy.ops.genpercept.build_relief(
            "EXEC_DEFAULT", filepath=str(photo), resolution=resolution))
    kept_maps.clear_memory()
    _, times["rebuild_512_from_kept_files_s"] = timed(lambda: bpy.ops.genpercept.build_relief(
        "EXEC_DEFAULT", filepath=str(photo), resolution=512))
    ui.unregister()
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=2048)
    parser.add_argument("--photo-size", default="4000x3000", help="the kept maps' size for the rebuild, WxH")
    args = parser.parse_args()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    report = {"resolution": args.resolution, **build_times(args.resolution), "photo_size": args.photo_size,
              **rebuild_times(tuple(int(v) for v in args.photo_size.split("x")))}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
