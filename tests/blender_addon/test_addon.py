"""The Blender add-on in real Blender (bpy as a module, headless): installed from its zip like a user does."""

import glob
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="genpercept_blender_user_"))
bpy = pytest.importorskip("bpy")

REPO = Path(__file__).resolve().parents[2]
MODULE = "bl_ext.user_default.genpercept_relief"


@pytest.fixture(scope="module")
def addon(tmp_path_factory):
    """Build the extension zip as a user does (the core as a wheel, Blender's own builder), install it from disk and
    enable it."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    out = tmp_path_factory.mktemp("addon")
    subprocess.run([sys.executable, str(REPO / "blender_addon" / "build_extension.py"), "--output-dir", str(out)],
                   check=True, capture_output=True)
    bpy.ops.extensions.package_install_files(filepath=glob.glob(str(out / "*.zip"))[0], repo="user_default",
                                             enable_on_install=True)
    assert MODULE in bpy.context.preferences.addons
    return bpy.context.preferences.addons[MODULE].preferences


def test_the_extension_installs_the_core_as_a_wheel(addon):
    site_packages = Path(bpy.utils.user_resource("EXTENSIONS", path=".local")).glob("lib/python*/site-packages")
    installed = [folder / "genpercept_bundle" for folder in site_packages]
    assert any((folder / "map_files.py").is_file() and (folder / "conventions.py").is_file() for folder in installed)


@pytest.fixture
def scene(addon):
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    settings = bpy.context.scene.genpercept
    for name in ("photo", "depth_file", "normal_file", "matte_file"):
        setattr(settings, name, "")
    settings.source, settings.projection, settings.matte_mode, settings.plain_mesh = "FILES", "RELIEF", "NONE", False
    addon.python_path = ""
    return settings


def evaluated_vertices(obj):
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3), len(mesh.polygons), list(mesh.uv_layers.keys())


@pytest.fixture
def step_maps(tmp_path):
    """A 48x64 depth map: near left half, far right half (a step edge); a matte disc; normals facing the viewer."""
    depth = np.full((48, 64), 0.8, np.float32)
    depth[:, :32] = 0.2
    y, x = np.mgrid[0:48, 0:64]
    matte = (((x - 32) ** 2 + (y - 24) ** 2) < 15**2).astype(np.float32)
    normals = np.zeros((48, 64, 3), np.float32)
    normals[..., 2] = 1
    for name, values in (("depth", depth), ("matte", matte), ("normal", normals)):
        np.save(tmp_path / f"shot_{name}.npy", values)
    return tmp_path, depth, matte


def test_relief_geometry_follows_the_depth_map(scene, step_maps):
    folder, depth, _ = step_maps
    scene.depth_file, scene.resolution, scene.edge_angle, scene.height = str(folder / "shot_depth.npy"), 64, 80.0, 0.3
    assert bpy.ops.genpercept.build_relief("EXEC_DEFAULT") == {"FINISHED"}
    obj = bpy.context.active_object
    co, faces, uv_maps = evaluated_vertices(obj)
    assert len(co) == 64 * 48  # the chosen resolution along the longest side, same aspect
    near, far = co[co[:, 0] < -0.05, 2], co[co[:, 0] > 0.05, 2]
    assert near.min() > far.max()  # height grows toward the viewer: near = high
    np.testing.assert_allclose(near.mean() - far.mean(), 0.3 * (0.8 - 0.2), atol=1e-3)
    assert faces == 63 * 47 - 47  # exactly the column of quads across the step is cut
    assert uv_maps == ["UVMap"]
    # non-destructive: the modifier's height is still editable
    modifier = obj.modifiers["GenPercept Relief"]
    height_id = next(i.identifier for i in modifier.node_group.interface.items_tree if getattr(i, "name", "") == "Height")
    modifier[height_id] = 0.6
    obj.update_tag()
    co2, _, _ = evaluated_vertices(obj)
    np.testing.assert_allclose(co2[:, 2].max() - co2[:, 2].min(), 0.6 * 0.6, atol=1e-3)


def test_matte_cut_and_plain_mesh(scene, step_maps):
    folder, _, matte = step_maps
    scene.photo = str(folder / "shot.png")  # maps are found next to it by name
    scene.matte_mode, scene.matte_threshold, scene.edge_angle, scene.resolution = "CUT", 0.5, 90.0, 64
    scene.plain_mesh = True
    bpy.ops.genpercept.build_relief("EXEC_DEFAULT")
    obj = bpy.context.active_object
    assert not obj.modifiers  # baked to a real mesh
    centres = np.array([p.center[:] for p in obj.data.polygons])
    # grid index -> pixel coordinates (the relief spans the image from edge to edge)
    column = (centres[:, 0] * 63 + 31.5) / 63 * 64 - 0.5
    row = (23.5 - centres[:, 1] * 63) / 47 * 48 - 0.5
    radius = np.hypot(column - 32, row - 24)
    assert radius.max() < 16.5 and 0.8 * math.pi * 15**2 < len(centres) < 1.2 * math.pi * 15**2


def test_perspective_camera_matches_the_focal_length(scene, step_maps):
    folder, _, _ = step_maps
    scene.depth_file, scene.projection, scene.fov, scene.near, scene.far, scene.resolution = (
        str(folder / "shot_depth.npy"), "PERSPECTIVE", 50.0, 2.0, 6.0, 64)
    bpy.ops.genpercept.build_relief("EXEC_DEFAULT")
    obj = bpy.context.active_object
    camera = bpy.context.scene.camera
    assert camera is not None and camera.data.sensor_fit == "HORIZONTAL"
    assert math.isclose(camera.data.angle_x, math.radians(50.0), rel_tol=1e-4)
    from bpy_extras.object_utils import world_to_camera_view

    bpy.context.view_layer.update()
    mesh = obj.data
    for index in (0, 5 * 64 + 10, 47 * 64 + 63):  # vertices project back onto their pixel centres
        row, column = divmod(index, 64)
        projected = world_to_camera_view(bpy.context.scene, camera, obj.matrix_world @ mesh.vertices[index].co)
        np.testing.assert_allclose([projected.x, projected.y], [(column + 0.5) / 64, 1 - (row + 0.5) / 48], atol=1e-4)
    distances = sorted({round(-v.co.z, 3) for v in mesh.vertices})
    assert distances[0] == pytest.approx(2.0 + 0.2 * 4.0, abs=1e-3) and distances[-1] == pytest.approx(2.0 + 0.8 * 4.0, abs=1e-3)
    assert len(mesh.polygons) < 63 * 47  # the step edge is cut


def test_material_links_and_colour_spaces(scene, step_maps):
    folder, _, _ = step_maps
    from PIL import Image

    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(folder / "shot.png")
    scene.photo, scene.matte_mode = str(folder / "shot.png"), "ALPHA"
    bpy.ops.genpercept.build_relief("EXEC_DEFAULT")
    obj = bpy.context.active_object
    material = obj.data.materials[0]
    rendered = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    assert rendered.materials[rendered.polygons[0].material_index].original == material  # nodes-made geometry carries it
    assert "UVMap" in rendered.uv_layers
    shader = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")

    def source(socket):
        return shader.inputs[socket].links[0].from_node

    assert source("Base Color").image.colorspace_settings.name == "sRGB"
    normal_map = source("Normal")
    assert normal_map.type == "NORMAL_MAP" and normal_map.space == "OBJECT"
    assert normal_map.inputs["Color"].links[0].from_node.image.colorspace_settings.name == "Non-Color"
    assert source("Alpha").image.colorspace_settings.name == "Non-Color"


@pytest.mark.parametrize("external", [False, True])
def test_predicts_from_a_photo_with_the_embedded_model(scene, addon, external, tmp_path, monkeypatch):
    scene.source, scene.photo, scene.matte_mode, scene.resolution = "PHOTO", str(REPO / "examples" / "photo.jpg"), "ALPHA", 96
    if external:
        addon.python_path = sys.executable  # a Python with the bundle installed, run as a subprocess
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the external predictor's folder is made
    assert bpy.ops.genpercept.build_relief("EXEC_DEFAULT") == {"FINISHED"}
    co, faces, _ = evaluated_vertices(bpy.context.active_object)
    assert len(co) == 96 * 64 and faces > 0 and np.ptp(co[:, 2]) > 0.01
    assert not list(tmp_path.glob("genpercept_*"))  # the predictor's temporary folder is gone


@pytest.mark.parametrize("family", ["marigold", "dpt"])
def test_predicts_with_a_model_of_another_family(scene, addon, family, tmp_path):
    """A Marigold depth model (depth only: no normals to ask for) and GenPercept's DPT head (disparity only: turned
    into depth order for the relief), in their released layouts, through the add-on's in-process prediction."""
    from genpercept_bundle.models.architectures import write_random_dpt_checkpoint, write_random_pipeline

    folder = (write_random_pipeline(tmp_path / "marigold-depth-v1-1", "marigold", "depth") if family == "marigold"
              else write_random_dpt_checkpoint(tmp_path / "genpercept-disparity-dpt-head"))
    scene.source, scene.photo, scene.matte_mode, scene.resolution = "PHOTO", str(REPO / "examples" / "photo.jpg"), "NONE", 96
    addon.model_folder = str(folder)
    try:
        assert bpy.ops.genpercept.build_relief("EXEC_DEFAULT") == {"FINISHED"}
    finally:
        addon.model_folder = ""
    co, faces, _ = evaluated_vertices(bpy.context.active_object)
    assert len(co) == 96 * 64 and faces > 0 and np.ptp(co[:, 2]) > 0.001


def test_a_photo_named_like_an_option_reaches_the_predictor_as_a_photo(addon, tmp_path):
    from bl_ext.user_default.genpercept_relief import maps

    command = maps.predictor_command("python", "-rf.jpg", ["depth"], str(tmp_path))
    assert command[-2:] == ["--", "-rf.jpg"]


@pytest.mark.parametrize("case,message", [
    ("no_photo", "choose a photo first"),
    ("corrupt_photo", "cannot read .*as an image"),
    ("corrupt_depth", "cannot read"),
    ("missing_depth", "map file not found"),
    ("size_mismatch", "use maps of the same photo"),
    ("one_pixel_depth", "1x1 pixels; a relief needs at least 8x8"),
])
def test_errors_are_reported_not_raised_as_tracebacks(scene, step_maps, case, message):
    folder, _, _ = step_maps
    if case == "no_photo":
        scene.source = "PHOTO"
    elif case == "corrupt_photo":
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
        scene.source, scene.photo = "PHOTO", str(folder / "broken.jpg")
    elif case == "one_pixel_depth":
        np.save(folder / "tiny_depth.npy", np.zeros((1, 1), np.float32))
        scene.depth_file = str(folder / "tiny_depth.npy")
    elif case == "corrupt_depth":
        (folder / "bad_depth.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        scene.depth_file = str(folder / "bad_depth.png")
    elif case == "missing_depth":
        scene.depth_file = str(folder / "nope.exr")
    else:
        np.save(folder / "small_normal.npy", np.zeros((10, 10, 3), np.float32) + [0, 0, 1])
        scene.depth_file, scene.normal_file = str(folder / "shot_depth.npy"), str(folder / "small_normal.npy")
    with pytest.raises(RuntimeError, match=message):  # Blender turns an operator's ERROR report into this
        bpy.ops.genpercept.build_relief("EXEC_DEFAULT")
    assert not [o for o in bpy.data.objects if o.type == "MESH"]  # nothing half-built


def test_check_setup_reports_a_bad_python(addon, tmp_path):
    addon.python_path = str(tmp_path / "no-python")
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.genpercept.check_setup("EXEC_DEFAULT")
    addon.python_path = sys.executable
    assert bpy.ops.genpercept.check_setup("EXEC_DEFAULT") == {"FINISHED"}


def test_render_preview(scene, step_maps, tmp_path):
    folder, _, _ = step_maps
    scene.depth_file, scene.projection, scene.resolution = str(folder / "shot_depth.npy"), "PERSPECTIVE", 64
    bpy.ops.genpercept.build_relief("EXEC_DEFAULT")
    render = bpy.context.scene.render
    render.engine = "CYCLES"
    bpy.context.scene.cycles.device, bpy.context.scene.cycles.samples = "CPU", 4
    render.resolution_percentage = 100
    light = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    light.rotation_euler, light.data.energy = (math.pi / 2, 0.0, 0.0), 3.0  # shining along the view (+Y)
    bpy.context.collection.objects.link(light)
    render.filepath = str(tmp_path / "preview.png")
    bpy.ops.render.render(write_still=True)
    from PIL import Image

    image = np.asarray(Image.open(tmp_path / "preview.png").convert("L"), dtype=np.float32)
    assert image.shape == (48, 64) and image.std() > 1.0
