"""A photographic scene from its seed: layout -> Blender scene -> Cycles renders -> composite -> camera.

``render_scene(seed, assets, size)`` returns the same frame dict as the numpy renderer (synthetic.render): uint8
"rgb", "depth" in metres (0 = sky / far), camera-space "normal", the subject's "alpha" (0 everywhere without a
subject) and the pinhole "intrinsics" (+ "k1" with lens distortion).
"""

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import GenPerceptError
from .assets import AssetLibrary
from .camera_effects import develop, distort_maps
from .cameras import Camera, camera_basis
from .composites import Layer, composite, without_subject
from .layouts import SceneLayout, random_layout
from .lighting import build_lamps, build_world
from .materials import build_material
from .models import clear_model_cache, import_model
from .render_passes import configure_cycles, render_geometry, render_photo
from .subjects import build_subject

DEFAULT_SAMPLES = 32
DEFAULT_ASSETS = Path(os.environ.get("GENPERCEPT_ASSETS", Path.home() / ".cache" / "genpercept" / "photographic-assets"))
_libraries: dict[tuple, AssetLibrary] = {}  # per worker process: (assets folder, test pool) -> catalogue


def prepare_dataset_options(root: Path, options: dict, workers: int) -> dict:
    """Check that Blender and the assets are there (one clear message, before any worker starts) and fill in the
    defaults of ``generate_dataset(renderer="cycles")``'s options; the assets' attribution list goes to ``root``."""
    try:
        import bpy  # noqa: F401
    except ImportError as error:
        raise GenPerceptError("--renderer cycles needs Blender as a Python module: pip install bpy==5.0.1 "
                              "(Python 3.11)") from error
    assets = Path(options.get("assets") or DEFAULT_ASSETS)
    AssetLibrary.load(assets, test_pool=False)  # raises with the fetch command if the catalogue is missing
    Path(root).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(assets / "ATTRIBUTION.md", Path(root) / "ATTRIBUTION.md")
    threads = options.get("threads") or max(1, (os.cpu_count() or 1) // max(workers, 1))
    return {"assets": assets, "samples": int(options.get("samples") or DEFAULT_SAMPLES), "threads": threads}


def render_dataset_scene(seed: int, split: str, size, assets: Path, samples: int, threads: int) -> dict:
    """Scene ``seed`` of ``split``: test splits draw from the held-out assets (backgrounds never seen in training)."""
    key = (str(assets), split != "train")
    if key not in _libraries:
        _libraries[key] = AssetLibrary.load(Path(assets), test_pool=key[1])
    with blender_output_silenced():
        frame = render_scene(seed, _libraries[key], size, samples, threads)
    if frame["layout"].kind == "backdrop":
        # an HDRI is a photo of a place (ground, buildings) at no depth: writing it as sky (far) taught the ground of
        # real photos to be far, so a backdrop scene has no depth map (its subject's normals are kept, the rest of
        # the normal map is invalid already)
        frame["depth"] = None
    return frame


@contextmanager
def blender_output_silenced():
    """Blender's C code prints every render, import and missing texture of the catalogue's OBJ files to stdout and
    stderr: send them to /dev/null meanwhile (Python exceptions still propagate)."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def render_scene(seed: int, assets, size=(256, 192), samples: int = DEFAULT_SAMPLES, threads: int = 0,
                 effects: bool = True) -> dict:
    layout = random_layout(seed, assets, size)
    return render_layout(layout, assets.root, size, samples, threads, effects)


def render_layout(layout: SceneLayout, assets_root, size, samples: int = DEFAULT_SAMPLES, threads: int = 0,
                  effects: bool = True) -> dict:
    built = build_layout(layout, assets_root, size, samples, threads)
    return render_view(layout, built, size, effects)


@dataclass
class BuiltScene:
    """The Blender objects of a layout: the scene camera, the background's objects and the subject's."""
    camera: object
    background: list
    subject: list


def build_layout(layout: SceneLayout, assets_root, size, samples: int, threads: int) -> BuiltScene:
    new_blender_scene()
    configure_cycles(size, samples, threads)
    camera = new_camera()
    build_world(layout.world, assets_root)
    build_lamps(layout.lamps)
    background = build_background(layout, assets_root)
    subject = build_subject(layout.subject, assets_root) if layout.subject is not None else []
    return BuiltScene(camera, background, subject)


def render_view(layout: SceneLayout, built: BuiltScene, size, effects: bool = True, camera: Camera | None = None,
                frame_index: int = 0) -> dict:
    """Render ``built`` from ``camera`` (default: the layout's): the background, then the subject alone and composited
    over it, then the camera's effects (``frame_index`` varies the sensor noise of a sequence's frames)."""
    camera = camera or layout.camera
    intrinsics = place_camera(built.camera, camera, size)
    world_to_camera = camera_basis(camera)
    # 1. the background, the subject hidden
    _show(built.background, visible_camera=True)
    _show(built.subject, render=False)
    background = Layer(render_photo(), *render_geometry(world_to_camera, intrinsics))
    # 2. the subject alone, lit by the same world with the background hidden from the camera only
    focus = None
    if built.subject:
        _show(built.subject, render=True)
        _show(built.background, visible_camera=False)
        subject = Layer(render_photo(transparent=True), *render_geometry(world_to_camera, intrinsics))
        frame = composite(subject, background)
        if (subject.depth > 0).any():
            focus = float(np.median(subject.depth[subject.depth > 0]))
    else:
        frame = without_subject(background)
    # 3. the camera: lens distortion (photo and maps alike), then image-only effects on the photo
    if effects and "k1" in layout.effects:
        frame.update(distort_maps({k: frame[k] for k in ("rgb", "alpha", "depth", "normal")}, layout.effects["k1"],
                                  intrinsics))
        intrinsics = {**intrinsics, "k1": layout.effects["k1"]}
    settings = {**layout.effects, "seed": layout.effects["seed"] + frame_index} if effects else NEUTRAL_EFFECTS
    frame["rgb"] = develop(frame["rgb"], frame["depth"], settings, focus)
    frame["intrinsics"] = intrinsics
    frame["layout"] = layout
    return frame


def _show(objects: list, render: bool | None = None, visible_camera: bool | None = None):
    for obj in objects:
        if render is not None:
            obj.hide_render = not render
        if visible_camera is not None:
            obj.visible_camera = visible_camera


NEUTRAL_EFFECTS = {"exposure_ev": 0.0, "white_balance": [1, 1, 1], "vignetting": 0.0, "shot_noise": 0.0,
                   "read_noise": 0.0, "tone": "filmic", "contrast": 1.0, "jpeg_quality": None, "seed": 0}


def new_blender_scene():
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    clear_model_cache()


def new_camera():
    import bpy

    data = bpy.data.cameras.new("camera")
    data.sensor_fit = "HORIZONTAL"
    data.clip_start, data.clip_end = 0.05, 1000.0
    obj = bpy.data.objects.new("camera", data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.scene.camera = obj
    return obj


def place_camera(obj, camera: Camera, size) -> dict:
    """Put the camera object where ``camera`` says (horizontal field of view ``camera.fov``); its pinhole
    intrinsics in pixels."""
    from mathutils import Matrix

    width, height = size
    obj.data.angle = np.radians(camera.fov)
    matrix = np.eye(4)
    matrix[:3, :3] = camera_basis(camera).T  # columns: the camera's axes in the world
    matrix[:3, 3] = camera.location
    obj.matrix_world = Matrix(matrix.tolist())
    focal = width / 2 / np.tan(np.radians(camera.fov) / 2)
    return {"fx": float(focal), "fy": float(focal), "cx": width / 2, "cy": height / 2}


def build_background(layout: SceneLayout, assets_root) -> list:
    import bmesh
    import bpy

    objects, materials = [], {}
    for slab in layout.slabs:
        mesh = bpy.data.meshes.new(slab.name)
        geometry = bmesh.new()
        bmesh.ops.create_cube(geometry, size=1.0)
        bmesh.ops.scale(geometry, vec=slab.size, verts=geometry.verts)
        geometry.to_mesh(mesh)
        geometry.free()
        normal_axis = int(np.argmin(slab.size)) if slab.name != "building" else 0
        key = (id(slab.material), normal_axis)
        if key not in materials:
            materials[key] = build_material(slab.material, assets_root, slab.name, normal_axis)
        mesh.materials.append(materials[key])
        obj = bpy.data.objects.new(slab.name, mesh)
        obj.location = slab.centre
        obj.rotation_euler = (0.0, 0.0, slab.yaw)
        bpy.context.scene.collection.objects.link(obj)
        objects.append(obj)
    for model in layout.models:
        objects.append(import_model(assets_root, model.asset, model.location, model.yaw, model.size))
    return objects
