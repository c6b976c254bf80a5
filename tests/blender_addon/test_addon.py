"""The Blender add-on in real Blender (bpy as a module, headless): installed from its zip like a user does."""

import glob
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    """An empty scene in Blender's default units, the add-on with the embedded model and no external Python."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    units = bpy.context.scene.unit_settings
    units.system, units.scale_length, units.length_unit = "METRIC", 1.0, "METERS"
    addon.python_path = addon.model_folder = ""
    return bpy.context.scene


def build(**properties):
    """The build operator as a script (or Adjust Last Operation) runs it; lengths are in millimetres."""
    properties.setdefault("source", "FILES")
    return bpy.ops.genpercept.build_relief("EXEC_DEFAULT", **properties)


def mesh_objects():
    return [o for o in bpy.data.objects if o.type == "MESH"]


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


def addon_module(name):
    import importlib

    return importlib.import_module(f"{MODULE}.{name}")


def mesh_topology(vertices, faces):
    """(non-manifold edges, islands, loose vertices) of a mesh given as positions [V,3] and polygons (lists of vertex
    indices); positions are welded first, so an STL's triangle soup can be checked the same way."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, weld = np.unique(np.round(vertices, 5), axis=0, return_inverse=True)
    weld = weld.ravel()
    edges = np.array([sorted((weld[a], weld[b])) for face in faces for a, b in zip(face, np.roll(face, -1))])
    _, uses = np.unique(edges, axis=0, return_counts=True)
    count = weld.max() + 1
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    islands = connected_components(graph, directed=False)[0]
    loose = count - len(np.unique(edges))
    return int(np.sum(uses != 2)), islands - loose, loose


def evaluated_topology(obj):
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    topology = mesh_topology(co.reshape(-1, 3), [list(p.vertices) for p in mesh.polygons])
    obj.to_mesh_clear()
    return topology


def test_relief_geometry_follows_the_depth_map(scene, step_maps):
    folder, depth, _ = step_maps
    assert build(depth_file=str(folder / "shot_depth.npy"), resolution=64, edge_angle=80.0, height_mm=300.0,
                 width_mm=1000.0) == {"FINISHED"}
    obj = bpy.context.active_object
    co, faces, uv_maps = evaluated_vertices(obj)
    assert len(co) == 64 * 48  # the chosen resolution along the longest side, same aspect
    near, far = co[co[:, 0] < -0.05, 2], co[co[:, 0] > 0.05, 2]
    assert near.min() > far.max()  # height grows toward the viewer: near = high
    np.testing.assert_allclose(near.mean() - far.mean(), 0.3, atol=1e-3)  # the relief height as set, in metres
    assert faces == 63 * 47 - 47  # exactly the column of quads across the step is cut
    assert uv_maps == ["UVMap"]
    assert evaluated_topology(obj)[2] == 0  # the cut leaves no loose vertices
    # non-destructive: the modifier's height is still editable
    relief = addon_module("relief")
    modifier = relief.relief_modifier(obj)
    relief.set_inputs(modifier, {"Height": 0.6})
    obj.update_tag()
    co2, _, _ = evaluated_vertices(obj)
    np.testing.assert_allclose(co2[:, 2].max() - co2[:, 2].min(), 0.6, atol=1e-3)


def test_heights_sample_the_full_resolution_depth_without_steps(scene, tmp_path):
    """A coarse 40x30 depth ramp at 400 vertices across: every vertex its own height (no blocky steps)."""
    ramp = np.tile(np.linspace(0.0, 1.0, 40, dtype=np.float32), (30, 1))
    np.save(tmp_path / "ramp_depth.npy", ramp)
    build(depth_file=str(tmp_path / "ramp_depth.npy"), resolution=400, edge_angle=90.0)
    co, _, _ = evaluated_vertices(bpy.context.active_object)
    assert len(co) == 400 * 300
    row = co[np.isclose(co[:, 1], co[0, 1])]
    assert len(np.unique(np.round(row[:, 2], 7))) > 0.9 * 400


def test_resolution_keeps_the_aspect(scene, step_maps):
    folder, _, _ = step_maps
    build(depth_file=str(folder / "shot_depth.npy"), resolution=100, edge_angle=90.0)
    co, faces, _ = evaluated_vertices(bpy.context.active_object)
    assert len(co) == 100 * 75 and faces == 99 * 74


def test_the_matte_is_off_by_default(scene, step_maps):
    folder, _, _ = step_maps
    build(filepath=str(folder / "shot.png"), edge_angle=90.0, resolution=64)  # shot_matte.npy lies beside it
    obj = bpy.context.active_object
    assert evaluated_vertices(obj)[1] == 63 * 47
    shader = next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert not shader.inputs["Alpha"].links


def test_matte_cut_and_plain_mesh(scene, step_maps):
    folder, _, matte = step_maps
    build(filepath=str(folder / "shot.png"), matte_mode="CUT", matte_threshold=0.5, edge_angle=90.0, resolution=64,
          plain_mesh=True, width_mm=1000.0)
    obj = bpy.context.active_object
    assert not obj.modifiers  # baked to a real mesh
    centres = np.array([p.center[:] for p in obj.data.polygons])
    # grid index -> pixel coordinates (the relief spans the image from edge to edge)
    column = (centres[:, 0] * 63 + 31.5) / 63 * 64 - 0.5
    row = (23.5 - centres[:, 1] * 63) / 47 * 48 - 0.5
    radius = np.hypot(column - 32, row - 24)
    assert radius.max() < 16.5 and 0.8 * math.pi * 15**2 < len(centres) < 1.2 * math.pi * 15**2
    assert not [v for v in obj.data.vertices if not any(v.index in p.vertices for p in obj.data.polygons)]


@pytest.mark.parametrize("case,message", [
    ("matte", "matte covers 0.7% of the photo"),
    ("edge_angle", "edge cut angle .* left 0 of 2961 faces"),
    ("perspective", "edge cut left 0 of 2961 faces"),
])
def test_a_build_leaving_almost_nothing_is_cancelled_with_the_reason(scene, step_maps, case, message):
    folder, _, _ = step_maps
    speck = np.zeros((48, 64), np.float32)
    speck[10:14, 10:15] = 1.0  # 20 of 3072 pixels
    np.save(folder / "shot_matte.npy", speck)
    depth = np.random.default_rng(0).random((48, 64)).astype(np.float32)  # every face steep
    np.save(folder / "noise_depth.npy", depth)
    properties = {"matte": dict(filepath=str(folder / "shot.png"), matte_mode="CUT", resolution=64),
                  "edge_angle": dict(depth_file=str(folder / "noise_depth.npy"), edge_angle=0.0, resolution=64),
                  "perspective": dict(depth_file=str(folder / "noise_depth.npy"), projection="PERSPECTIVE",
                                      edge_tolerance=0.0001, resolution=64, near_far_from_photo=False, near=1.0,
                                      far=9.0)}[case]
    with pytest.raises(RuntimeError, match=message):
        build(**properties)
    assert not mesh_objects()  # nothing half-built


def test_material_alpha_from_a_matte_that_covers_enough(scene, step_maps):
    folder, _, _ = step_maps
    from PIL import Image

    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(folder / "shot.png")
    build(filepath=str(folder / "shot.png"), matte_mode="ALPHA")
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


def test_perspective_camera_matches_the_focal_length_and_keeps_no_loose_vertices(scene, step_maps):
    folder, _, _ = step_maps
    build(depth_file=str(folder / "shot_depth.npy"), projection="PERSPECTIVE", fov_from_photo=False, fov=50.0,
          near_far_from_photo=False, near=2.0, far=6.0, resolution=64)
    obj = bpy.context.active_object
    camera = bpy.context.scene.camera
    assert camera is not None and camera.data.sensor_fit == "HORIZONTAL"
    assert math.isclose(camera.data.angle_x, math.radians(50.0), rel_tol=1e-4)
    from bpy_extras.object_utils import world_to_camera_view

    bpy.context.view_layer.update()
    mesh = obj.data
    for vertex in (mesh.vertices[0], mesh.vertices[-1]):  # vertices project back onto their pixel centres
        projected = world_to_camera_view(bpy.context.scene, camera, obj.matrix_world @ vertex.co)
        column = projected.x * 64 - 0.5
        row = (1 - projected.y) * 48 - 0.5
        assert abs(column - round(column)) < 1e-3 and abs(row - round(row)) < 1e-3
    distances = sorted({round(-v.co.z, 3) for v in mesh.vertices})
    assert distances[0] == pytest.approx(2.0 + 0.2 * 4.0, abs=1e-3) and distances[-1] == pytest.approx(2.0 + 0.8 * 4.0, abs=1e-3)
    assert len(mesh.polygons) == 63 * 47 - 47  # the step edge is cut...
    assert len(mesh.vertices) == 64 * 48  # ...and each side keeps its vertices: none loose
    assert mesh_topology(np.array([v.co[:] for v in mesh.vertices]), [list(p.vertices) for p in mesh.polygons])[2] == 0


def test_perspective_field_of_view_from_exif_and_suggested_near_far(scene, step_maps):
    folder, _, _ = step_maps
    from PIL import Image

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 85  # a portrait lens, 35 mm equivalent
    Image.new("RGB", (64, 48)).save(folder / "shot.jpg", exif=exif.tobytes())
    for name in ("depth", "normal"):
        (folder / f"shot_{name}.npy").rename(folder / f"shotj_{name}.npy")
    build(filepath=str(folder / "shot.jpg"), depth_file=str(folder / "shotj_depth.npy"), projection="PERSPECTIVE",
          resolution=64)
    expected = math.degrees(2 * math.atan(math.tan(math.atan(43.2666 / 170)) * 64 / 80))
    assert math.isclose(bpy.context.scene.camera.data.angle_x, math.radians(expected), rel_tol=1e-3)
    from genpercept_bundle.photo_camera import suggested_near_far

    near, far = suggested_near_far(expected)
    assert 1.0 < far / near < 1.5  # a long lens: a shallow scene, not an 8 m streak
    distances = sorted({round(-v.co.z, 4) for v in bpy.context.active_object.data.vertices})
    assert distances[0] == pytest.approx(near + 0.2 * (far - near), abs=1e-3)
    assert distances[-1] == pytest.approx(near + 0.8 * (far - near), abs=1e-3)


def test_closed_solid_is_one_watertight_piece_in_millimetres(scene, step_maps, tmp_path):
    folder, _, _ = step_maps
    build(depth_file=str(folder / "shot_depth.npy"), solid=True, width_mm=120.0, height_mm=20.0, base_mm=4.0,
          resolution=64)
    obj = bpy.context.active_object
    assert bpy.context.scene.unit_settings.scale_length == pytest.approx(0.001)  # 1 unit = 1 mm
    non_manifold, islands, loose = evaluated_topology(obj)
    assert (non_manifold, islands, loose) == (0, 1, 0)
    import bmesh

    mesh = bmesh.new()
    mesh.from_mesh(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh())
    assert mesh.calc_volume(signed=True) > 0  # faces point outwards
    assert bpy.ops.genpercept.export_relief("EXEC_DEFAULT", filepath=str(tmp_path / "relief.stl"), format="STL") == {"FINISHED"}
    triangles = read_binary_stl(tmp_path / "relief.stl")
    size = np.ptp(triangles.reshape(-1, 3), axis=0)
    np.testing.assert_allclose(size, [120.0, 120.0 * 47 / 63, 24.0], atol=1e-3)  # millimetres, as set
    assert mesh_topology(triangles.reshape(-1, 3), np.arange(len(triangles) * 3).reshape(-1, 3))[:2] == (0, 1)


def read_binary_stl(path):
    data = Path(path).read_bytes()
    count = int(np.frombuffer(data[80:84], np.uint32)[0])
    records = np.frombuffer(data[84:84 + 50 * count], np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]))
    return records["v"].astype(np.float64)


@pytest.mark.parametrize("form", ["STL", "OBJ", "GLB", "USD"])
def test_exports_apply_the_relief_modifier(scene, step_maps, tmp_path, form):
    folder, _, _ = step_maps
    build(depth_file=str(folder / "shot_depth.npy"), resolution=64, edge_angle=90.0, width_mm=1000.0)
    out = tmp_path / ("relief.usda" if form == "USD" else "relief.out")  # USD as text, to count its points
    assert bpy.ops.genpercept.export_relief("EXEC_DEFAULT", filepath=str(out), format=form) == {"FINISHED"}
    written = next(tmp_path.glob("relief.*[!t]"))
    assert written.stat().st_size > 10_000
    if form == "STL":
        assert len(read_binary_stl(written)) == 2 * 63 * 47
    elif form == "OBJ":
        lines = written.read_text().splitlines()
        assert sum(line.startswith("v ") for line in lines) == 64 * 48
        xs = [float(line.split()[1]) for line in lines if line.startswith("v ")]
        assert max(xs) - min(xs) == pytest.approx(1000.0, abs=1e-2)  # millimetres
    elif form == "GLB":
        import json
        import struct

        data = written.read_bytes()
        length = struct.unpack("<I", data[12:16])[0]
        document = json.loads(data[20:20 + length])
        position = document["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
        accessor = document["accessors"][position]
        assert accessor["count"] >= 64 * 48
        assert accessor["max"][0] - accessor["min"][0] == pytest.approx(1.0, abs=1e-3)  # metres
    else:
        text = written.read_text()
        points = text[text.index("point3f[] points = [") + 20:].split("]", 1)[0]
        assert points.count("(") == 64 * 48
        assert "metersPerUnit = 1" in text


@pytest.mark.parametrize("form", ["PNG16", "EXR"])
def test_height_map_export_for_cnc(scene, step_maps, tmp_path, form):
    folder, _, _ = step_maps
    build(depth_file=str(folder / "shot_depth.npy"), resolution=64)
    bpy.ops.genpercept.export_height_map("EXEC_DEFAULT", filepath=str(tmp_path / "heights"), format=form)
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    written = next(tmp_path.glob("heights.*"))
    pixels = cv2.imread(str(written), cv2.IMREAD_UNCHANGED)
    pixels = pixels if pixels.ndim == 2 else pixels[..., 0]
    assert pixels.shape == (48, 64)
    assert pixels.dtype == (np.uint16 if form == "PNG16" else np.float32)
    top = 65535 if form == "PNG16" else 1.0
    assert np.all(pixels[:, :32] == top) and np.all(pixels[:, 32:] == 0)  # near = white


def test_relief_controls_change_the_heights(scene, tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:60, 0:80] / 80.0
    depth = (0.5 + 0.4 * x + 0.02 * rng.standard_normal((60, 80))).astype(np.float32)
    np.save(tmp_path / "scene_depth.npy", depth)
    normals = np.zeros((60, 80, 3), np.float32)
    normals[..., 0] = 0.3 * np.sin(x * 80)
    normals[..., 2] = 1.0
    np.save(tmp_path / "scene_normal.npy", normals / np.linalg.norm(normals, axis=-1, keepdims=True))
    export = addon_module("export")

    def heights(**controls):
        build(filepath=str(tmp_path / "scene.png"), resolution=80, edge_angle=90.0, **controls)
        return export.relief_heights_of(bpy.context.active_object)

    plain = heights()
    assert plain.min() == 0.0 and plain.max() == 1.0
    assert heights(compression="GAMMA", compression_strength=1.0).mean() < plain.mean() - 0.1
    assert heights(compression="LOG", compression_strength=1.0).mean() > plain.mean() + 0.1
    assert np.isfinite(heights(compression="GRADIENT", compression_strength=2.0)).all()
    assert np.abs(np.diff(heights(smoothing=2.0), axis=1)).mean() < 0.5 * np.abs(np.diff(plain, axis=1)).mean()
    detailed = heights(detail=2.0)
    assert np.corrcoef((detailed - plain)[5:-5, 5:-5].ravel(), np.cos(x * 80)[5:-5, 5:-5].ravel())[0, 1] > 0.3 or \
        np.abs(detailed - plain).max() > 0.01


def test_settings_are_operator_properties_for_the_redo_panel(addon):
    operator = bpy.types.GENPERCEPT_OT_build_relief
    assert {"REGISTER", "UNDO"} <= set(operator.bl_options)
    names = set(bpy.ops.genpercept.build_relief.get_rna_type().properties.keys())
    assert {"resolution", "width_mm", "height_mm", "base_mm", "solid", "compression", "smoothing", "detail",
            "matte_mode", "fov", "near", "far"} <= names
    assert not hasattr(bpy.types.Scene, "genpercept")  # nothing kept on the scene


def test_file_import_and_add_mesh_entries(addon):
    ui = addon_module("ui")
    for menu, entry in ui.MENUS:
        assert entry in getattr(bpy.types, menu)._dyn_ui_initialize()


def test_displace_an_existing_mesh(scene, step_maps):
    folder, _, _ = step_maps
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=63, y_subdivisions=47, size=2.0, calc_uvs=True)
    plane = bpy.context.active_object
    assert bpy.ops.genpercept.displace_mesh("EXEC_DEFAULT", source="FILES", depth_file=str(folder / "shot_depth.npy"),
                                            resolution=64, height_mm=250.0) == {"FINISHED"}
    co, _, _ = evaluated_vertices(plane)
    assert np.ptp(co[:, 2]) == pytest.approx(0.25, abs=1e-3)
    assert plane.modifiers["GenPercept Displace"].type == "DISPLACE"
    plane.data.uv_layers.remove(plane.data.uv_layers[0])
    with pytest.raises(RuntimeError, match="no UV map"):
        bpy.ops.genpercept.displace_mesh("EXEC_DEFAULT", source="FILES", depth_file=str(folder / "shot_depth.npy"))


@pytest.mark.parametrize("external", [False, True])
def test_predicts_from_a_photo_with_the_embedded_model(scene, addon, external, tmp_path):
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes((REPO / "examples" / "photo.jpg").read_bytes())
    if external:
        addon.python_path = sys.executable  # a Python with the bundle installed, run as a subprocess
    assert build(source="PHOTO", filepath=str(photo), resolution=96) == {"FINISHED"}
    co, faces, _ = evaluated_vertices(bpy.context.active_object)
    assert len(co) == 96 * 64 and faces > 0 and np.ptp(co[:, 2]) > 0.001
    folder = addon_module("kept_maps").folder_for(str(photo))
    kept = sorted(p.name for p in folder.iterdir())
    assert "coffee_depth.exr" in kept and "coffee_normal.exr" in kept  # kept at full resolution
    assert addon_module("maps").load_map(str(folder / "coffee_depth.exr"), "depth").shape == (400, 600)


def test_kept_maps_are_reused_until_the_photo_changes(scene, addon, tmp_path, monkeypatch):
    photo = tmp_path / "cup.jpg"
    photo.write_bytes((REPO / "examples" / "photo.jpg").read_bytes())
    assert build(source="PHOTO", filepath=str(photo), resolution=64) == {"FINISHED"}
    maps, kept_maps = addon_module("maps"), addon_module("kept_maps")

    def no_prediction(*args, **kwargs):
        raise maps.MapError("predicted again")

    monkeypatch.setattr(maps, "predict_in_process", no_prediction)
    for resolution in (32, 80):  # rebuilding (Adjust Last Operation) predicts nothing
        assert build(source="PHOTO", filepath=str(photo), resolution=resolution, compression="LOG") == {"FINISHED"}
    kept_maps.clear_memory()  # a new session: the kept files are read
    assert build(source="PHOTO", filepath=str(photo), resolution=48) == {"FINISHED"}
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**9))  # the photo changed
    with pytest.raises(RuntimeError, match="predicted again"):
        build(source="PHOTO", filepath=str(photo), resolution=48)


def test_prediction_job_reports_progress_and_stops_on_cancel(addon, tmp_path):
    import threading
    import time

    prediction = addon_module("prediction")
    job = prediction.PredictionJob(str(REPO / "examples" / "photo.jpg"), ["depth", "normal"], tmp_path / "kept")
    while job.progress == 0.0 and not job.done():  # cancel once the networks run
        time.sleep(0.01)
    job.cancel(wait=10.0)
    assert job.done() and job.stopped_at is not None
    with pytest.raises(addon_module("maps").MapError, match="cancelled"):
        job.wait()
    assert isinstance(job.cancelled, threading.Event)
    finished = prediction.PredictionJob(str(REPO / "examples" / "photo.jpg"), ["depth"], tmp_path / "kept2")
    progress = []
    while not finished.done():
        progress.append(finished.progress)
        time.sleep(0.005)
    assert finished.wait()["depth"].shape == (400, 600)
    assert progress == sorted(progress) and 0.0 <= progress[0] < 1.0


@pytest.mark.parametrize("family", ["marigold", "dpt"])
def test_predicts_with_a_model_of_another_family(scene, addon, family, tmp_path):
    """A Marigold depth model (depth only: no normals to ask for) and GenPercept's DPT head (disparity only: turned
    into depth order for the relief), in their released layouts, through the add-on's in-process prediction."""
    from genpercept_bundle.models.architectures import write_random_dpt_checkpoint, write_random_pipeline

    folder = (write_random_pipeline(tmp_path / "marigold-depth-v1-1", "marigold", "depth") if family == "marigold"
              else write_random_dpt_checkpoint(tmp_path / "genpercept-disparity-dpt-head"))
    addon.model_folder = str(folder)
    try:
        assert build(source="PHOTO", filepath=str(REPO / "examples" / "photo.jpg"), resolution=96) == {"FINISHED"}
    finally:
        addon.model_folder = ""
    co, faces, _ = evaluated_vertices(bpy.context.active_object)
    assert len(co) == 96 * 64 and faces > 0 and np.ptp(co[:, 2]) > 0.0001


def test_a_photo_named_like_an_option_reaches_the_predictor_as_a_photo(addon, tmp_path):
    command = addon_module("maps").predictor_command("python", "-rf.jpg", ["depth"], str(tmp_path))
    assert command[-2:] == ["--", "-rf.jpg"]


@pytest.mark.parametrize("case,message", [
    ("no_photo", "choose a photo first"),
    ("corrupt_photo", "cannot read .*as an image"),
    ("corrupt_depth", "cannot read"),
    ("missing_depth", "map file not found"),
    ("size_mismatch", "use maps of the same photo"),
    ("one_pixel_depth", "1x1 pixels; a relief needs at least 8x8"),
    ("near_beyond_far", "far .* must be farther than near"),
])
def test_errors_are_reported_not_raised_as_tracebacks(scene, step_maps, case, message):
    folder, _, _ = step_maps
    properties = {"depth_file": str(folder / "shot_depth.npy")}
    if case == "no_photo":
        properties = {"source": "PHOTO"}
    elif case == "corrupt_photo":
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
        properties = {"source": "PHOTO", "filepath": str(folder / "broken.jpg")}
    elif case == "one_pixel_depth":
        np.save(folder / "tiny_depth.npy", np.zeros((1, 1), np.float32))
        properties = {"depth_file": str(folder / "tiny_depth.npy")}
    elif case == "corrupt_depth":
        (folder / "bad_depth.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        properties = {"depth_file": str(folder / "bad_depth.png")}
    elif case == "missing_depth":
        properties = {"depth_file": str(folder / "nope.exr")}
    elif case == "size_mismatch":
        np.save(folder / "small_normal.npy", np.zeros((10, 10, 3), np.float32) + [0, 0, 1])
        properties["normal_file"] = str(folder / "small_normal.npy")
    else:
        properties.update(projection="PERSPECTIVE", near_far_from_photo=False, near=5.0, far=2.0)
    with pytest.raises(RuntimeError, match=message):  # Blender turns an operator's ERROR report into this
        build(**properties)
    assert not mesh_objects()  # nothing half-built


def test_check_setup_reports_a_bad_python(addon, tmp_path):
    addon.python_path = str(tmp_path / "no-python")
    with pytest.raises(RuntimeError, match="not found"):
        bpy.ops.genpercept.check_setup("EXEC_DEFAULT")
    addon.python_path = sys.executable
    assert bpy.ops.genpercept.check_setup("EXEC_DEFAULT") == {"FINISHED"}
    addon.python_path = ""


def test_render_preview(scene, step_maps, tmp_path):
    folder, _, _ = step_maps
    build(depth_file=str(folder / "shot_depth.npy"), projection="PERSPECTIVE", resolution=64)
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


def test_predicts_on_a_comfyui_server_when_one_is_set(scene, addon, comfyui_server, tmp_path):
    """The Blender <-> ComfyUI bridge against a real ComfyUI on 127.0.0.1 (skipped unless one is configured, see
    tests/conftest.py): the photo goes to the server, its maps come back kept, the relief is built from them."""
    url, _ = comfyui_server
    photo = tmp_path / "remote.png"
    Image.open(REPO / "examples" / "photo.jpg").save(photo)
    addon.comfyui_url, addon.comfyui_model = url, "embedded small model (offline default)"
    try:
        assert bpy.ops.genpercept.check_setup() == {"FINISHED"}
        assert build(source="PHOTO", filepath=str(photo), resolution=64) == {"FINISHED"}
        co, faces, _ = evaluated_vertices(bpy.context.active_object)
        assert faces > 0 and np.ptp(co[:, 2]) > 0.001
        folder = addon_module("kept_maps").folder_for(str(photo), f"ComfyUI {url} {addon.comfyui_model}")
        sidecar = json.loads((folder / "remote_depth.json").read_text())
        assert sidecar["predicted_by"] == f"ComfyUI at {url}"
        addon.comfyui_model = "not-there"
        with pytest.raises(RuntimeError, match="no GenPercept model 'not-there'"):
            bpy.ops.genpercept.check_setup()
    finally:
        addon.comfyui_url = ""


# ---------------------------------------------------------------- moving reliefs (image sequences and movies)

BOX_SIDE, BOX_STEP = 12, 8  # the box in the synthetic frames: 12 pixels wide, 8 pixels further right each frame


def box_frame(index: int) -> np.ndarray:
    """Frame ``index`` (from 0) of a 64x48 shot: a bright box sliding right over a dark textured background."""
    rng = np.random.default_rng(7)  # the same background every frame: only the box moves
    rgb = rng.integers(20, 70, (48, 64, 3)).astype(np.uint8)
    left = 8 + BOX_STEP * index
    rgb[18:18 + BOX_SIDE, left:left + BOX_SIDE] = 230
    return rgb


@pytest.fixture
def box_frames(tmp_path):
    """Four numbered PNG frames of the sliding box (numbered from 11, as a cut from a longer shot is)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(box_frame(index)).save(folder / f"box_{index + 11:04d}.png")
    return folder


class BrightIsNear:
    """A stand-in predictor whose depth is the frame's darkness (the box is near), so where the relief must rise
    is known; it runs a few 'network blocks' per frame, as the real one, for progress and Esc."""

    def __init__(self, block_seconds=0.0):
        self.calls, self.block_seconds = 0, block_seconds

    def iter_predictions(self, frame, tasks, check_interrupt=None):
        import time
        from types import SimpleNamespace

        self.calls += 1
        for _ in range(3):
            time.sleep(self.block_seconds)
            check_interrupt()
        depth = 1.0 - frame.mean(axis=-1).astype(np.float32) / 255.0
        yield tasks[0], SimpleNamespace(maps=depth[None], provenance={"model": "bright is near"})


@pytest.fixture
def bright_is_near(monkeypatch):
    fake = BrightIsNear()
    monkeypatch.setattr(addon_module("maps"), "loaded_predictor", lambda *args, **kwargs: fake)
    return fake


def build_moving(**properties):
    properties.setdefault("edge_angle", 90.0)
    return bpy.ops.genpercept.build_moving_relief("EXEC_DEFAULT", **properties)


def heights_on_grid(obj, frame, rows=48, columns=64):
    """The evaluated relief's vertex heights at ``frame`` as a [rows, columns] image (row 0 = top), from the vertices'
    x, y (a 1 m wide relief)."""
    bpy.context.scene.frame_set(frame)
    co, _, _ = evaluated_vertices(obj)
    column = np.round(co[:, 0] * (columns - 1) + (columns - 1) / 2).astype(int)
    row = np.round((rows - 1) / 2 - co[:, 1] * (columns - 1)).astype(int)
    grid = np.full((rows, columns), np.nan, np.float32)
    grid[row, column] = co[:, 2]
    return grid


def box_columns(index: int) -> slice:
    """The columns well inside the box in frame ``index``."""
    left = 8 + BOX_STEP * index
    return slice(left + 2, left + BOX_SIDE - 2)


def test_moving_relief_follows_the_frames_on_the_timeline(scene, box_frames, bright_is_near, tmp_path):
    assert build_moving(filepath=str(box_frames / "box_0012.png"), resolution=64, width_mm=1000.0,
                        height_mm=100.0) == {"FINISHED"}
    assert bright_is_near.calls == 4  # one prediction per frame
    reliefs = mesh_objects()
    assert len(reliefs) == 1 and bpy.context.active_object == reliefs[0]  # one object for the whole sequence
    obj = reliefs[0]
    assert (scene.frame_start, scene.frame_end, scene.frame_current) == (1, 4, 1)
    first, third = heights_on_grid(obj, 1), heights_on_grid(obj, 3)
    assert not np.isnan(first).any() and np.nanmax(first) == pytest.approx(0.1, abs=1e-3)
    rows = slice(20, 28)
    # the box is high where it is in each frame, and the relief is low there when it has moved on
    assert first[rows, box_columns(0)].mean() > third[rows, box_columns(0)].mean() + 0.05
    assert third[rows, box_columns(2)].mean() > first[rows, box_columns(2)].mean() + 0.05
    background = (slice(2, 12), slice(2, 60))  # outside the box's path: the same in both frames
    np.testing.assert_allclose(first[background], third[background], atol=0.01)
    # the colour plays the frames: frame 1 of the timeline is the file numbered 11
    shader = next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    photo = shader.inputs["Base Color"].links[0].from_node
    assert photo.image.source == "SEQUENCE" and photo.image_user.frame_offset == 10
    assert photo.image_user.frame_duration == 4 and photo.image_user.use_auto_refresh
    # the steady depth of every frame is kept at full resolution, with its provenance
    kept = sorted(p.name for p in obj_kept_folder().glob("depth/*.exr"))
    assert kept == [f"frame_{n:06d}_depth.exr" for n in range(1, 5)]


def obj_kept_folder():
    image = addon_module("relief").modifier_input(addon_module("relief").relief_modifier(bpy.context.active_object),
                                                  "Heights")
    return Path(bpy.path.abspath(image.filepath)).parents[1]


def test_moving_relief_rebuilds_from_its_kept_maps_and_exports_the_current_frame(scene, box_frames, bright_is_near,
                                                                                 tmp_path):
    assert build_moving(filepath=str(box_frames), resolution=64, width_mm=120.0, height_mm=20.0) == {"FINISHED"}
    calls = bright_is_near.calls
    # rebuilt with other settings (Adjust Last Operation does this): the kept maps, no prediction
    assert build_moving(filepath=str(box_frames), resolution=64, width_mm=120.0, height_mm=20.0, solid=True,
                        base_mm=4.0, compression="LOG", smoothing=1.0) == {"FINISHED"}
    assert bright_is_near.calls == calls
    obj = bpy.context.active_object
    assert scene.unit_settings.scale_length == pytest.approx(0.001)  # a solid: 1 unit = 1 mm
    export = addon_module("export")
    for frame in (1, 3):
        scene.frame_set(frame)
        assert evaluated_topology(obj) == (0, 1, 0)  # a watertight solid on every frame
        stl = tmp_path / f"frame{frame}.stl"
        assert bpy.ops.genpercept.export_relief("EXEC_DEFAULT", filepath=str(stl), format="STL") == {"FINISHED"}
        co, _, _ = evaluated_vertices(obj)
        written = np.unique(np.round(read_binary_stl(stl).reshape(-1, 3), 3), axis=0)
        np.testing.assert_allclose(written, np.unique(np.round(co.astype(np.float64), 3), axis=0), atol=2e-3)
        heights = export.relief_heights_of(obj)
        assert heights.shape == (48, 64) and heights[20:28, box_columns(frame - 1)].mean() > 0.5
    assert not np.allclose(read_binary_stl(tmp_path / "frame1.stl"), read_binary_stl(tmp_path / "frame3.stl"))


def test_moving_relief_from_a_movie_with_the_embedded_model(scene, tmp_path):
    cv2 = pytest.importorskip("cv2")
    movie = tmp_path / "slide.mp4"
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    for index in range(4):
        writer.write(box_frame(index)[..., ::-1])
    writer.release()
    assert build_moving(filepath=str(movie), resolution=64, width_mm=1000.0) == {"FINISHED"}
    obj = bpy.context.active_object
    assert (scene.frame_start, scene.frame_end) == (1, 4)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(12.0)
    first, third = heights_on_grid(obj, 1), heights_on_grid(obj, 3)
    assert np.ptp(first) > 0.001 and np.abs(first - third).max() > 0.001  # the shape changes with the frames
    shader = next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert shader.inputs["Base Color"].links[0].from_node.image.source == "MOVIE"
    sidecar = json.loads(next(obj_kept_folder().glob("depth/frame_000003_depth.json")).read_text())
    assert sidecar["source"] == f"{movie}#frame=2" and sidecar["steadiness"] == pytest.approx(0.7)


def test_cancelling_a_sequence_prediction_keeps_nothing(addon, box_frames, monkeypatch, tmp_path):
    import time

    from genpercept_bundle.frame_sequences import open_sequence

    slow = BrightIsNear(block_seconds=0.05)
    monkeypatch.setattr(addon_module("maps"), "loaded_predictor", lambda *args, **kwargs: slow)
    sequence_prediction, kept_maps = addon_module("sequence_prediction"), addon_module("kept_maps")
    folder = tmp_path / "kept"
    job = sequence_prediction.SequencePredictionJob(open_sequence(str(box_frames)), folder)
    while job.frames_done < 2 and not job.done():  # cancel with frames already predicted
        time.sleep(0.01)
    assert 0.4 < job.progress < 1.0
    job.cancel(wait=10.0)
    assert job.done()
    with pytest.raises(addon_module("maps").MapError, match="cancelled"):
        job.wait()
    assert kept_maps.kept_sequence(folder, 4) is None
    assert not list(folder.rglob("*")) if folder.exists() else True  # no depth folder, no staging folder


@pytest.mark.parametrize("case,message", [
    ("empty_folder", "holds no images"),
    ("unreadable_movie", "cannot open .* as a movie"),
    ("sizes_differ", r"frame 3 \(box_0013.png\) is 32x24 but the first frame is 64x48"),
    ("nothing_chosen", "choose a movie, a folder of numbered frames"),
])
def test_moving_relief_input_errors_are_reported_and_build_nothing(scene, box_frames, bright_is_near, tmp_path,
                                                                  case, message):
    path = str(box_frames)
    if case == "empty_folder":
        path = str(tmp_path / "empty")
        os.mkdir(path)
    elif case == "unreadable_movie":
        path = str(tmp_path / "broken.mov")
        Path(path).write_bytes(b"\x00\x00\x00\x14ftypqt  not a movie at all")
    elif case == "sizes_differ":
        Image.fromarray(box_frame(2)[::2, ::2]).save(box_frames / "box_0013.png")
    elif case == "nothing_chosen":
        path = ""
    with pytest.raises(RuntimeError, match=message):
        build_moving(filepath=path)
    assert not mesh_objects()
    if case == "sizes_differ":  # two frames were predicted before the odd one: none of them is kept
        from genpercept_bundle.frame_sequences import open_sequence

        folder = addon_module("kept_maps").sequence_folder_for(open_sequence(path), 0.7)
        assert not folder.exists() or not list(folder.rglob("*"))


def test_cycles_renders_each_frame_of_a_moving_relief(scene, box_frames, bright_is_near, tmp_path):
    """Seen from above by an orthographic camera, raking light from the left: the box's walls cast their shading
    where the box is in the frame rendered."""
    build_moving(filepath=str(box_frames), resolution=64, width_mm=1000.0, height_mm=150.0)
    obj = bpy.context.active_object
    obj.data.materials.clear()  # shading only: the frames' colours would show the box without any relief
    camera = bpy.data.objects.new("top", bpy.data.cameras.new("top"))
    camera.data.type, camera.data.ortho_scale, camera.location = "ORTHO", 1.0, (0.0, 0.0, 2.0)
    light = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    light.rotation_euler = (0.0, math.radians(75.0), 0.0)  # from +X, low
    for item in (camera, light):
        bpy.context.collection.objects.link(item)
    render = scene.render
    scene.camera, render.engine = camera, "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", 1
    render.resolution_x, render.resolution_y, render.resolution_percentage = 64, 48, 100
    images = {}
    for frame in (1, 3):
        scene.frame_set(frame)
        render.filepath = str(tmp_path / f"frame{frame}.png")
        bpy.ops.render.render(write_still=True)
        images[frame] = np.asarray(Image.open(render.filepath).convert("L"), dtype=np.float32)
    changed = np.abs(images[1] - images[3]) > 20
    assert changed.sum() > 100  # the relief rendered differs between the frames...
    path = np.zeros_like(changed)  # ...on the box's path, from its left edge in frame 1 to its right edge in frame 3
    path[18 - 2:18 + BOX_SIDE + 2, 8 - 4:8 + 2 * BOX_STEP + BOX_SIDE + 2] = True  # (its shadow falls left)
    assert changed[path].sum() > 0.9 * changed.sum()


def test_a_moving_relief_made_plain_keeps_the_current_frame(scene, box_frames, bright_is_near):
    build_moving(filepath=str(box_frames), resolution=64, width_mm=1000.0)
    obj = bpy.context.active_object
    shown = heights_on_grid(obj, 3)
    assert bpy.ops.genpercept.bake_relief("EXEC_DEFAULT") == {"FINISHED"}
    assert not obj.modifiers and not obj.animation_data.drivers  # no driver left pointing at nothing
    np.testing.assert_allclose(heights_on_grid(obj, 1), shown)  # frame 3's shape, on every frame
