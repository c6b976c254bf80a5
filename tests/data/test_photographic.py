"""Photographic scenes (Cycles through bpy): exact ground truth, the dataset layout, determinism.

Tiny renders (48x36 or 64x48, a few samples) of hand-made layouts with known geometry, and of random layouts drawn
from a minimal assets folder (Blender's own studio-light HDRIs, no models or textures).
"""

import json
import shutil

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from genpercept_bundle import GenPerceptError  # noqa: E402
from genpercept_bundle.data.dataset import generate_dataset, read_sample, read_settings, sample_ids  # noqa: E402
from genpercept_bundle.data.photographic.assets import AssetLibrary  # noqa: E402
from genpercept_bundle.data.photographic.cameras import Camera  # noqa: E402
from genpercept_bundle.data.photographic.layouts import SceneLayout, Slab, World, random_layout  # noqa: E402
from genpercept_bundle.data.photographic.render_passes import pixel_rays  # noqa: E402
from genpercept_bundle.data.photographic.scenes import render_layout  # noqa: E402

SIZE = (64, 48)
GREY = {"kind": "paint", "colour": [0.5, 0.5, 0.5], "colour2": [0.4, 0.4, 0.4], "roughness": 0.8, "bump": 0.1,
        "scale": 1.0}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """An assets folder holding only the HDRIs that ship inside the bpy wheel."""
    root = tmp_path_factory.mktemp("assets")
    source = bpy.utils.system_resource("DATAFILES", path="studiolights/world")
    hdris = []
    for name in ("city", "forest", "interior", "studio", "sunset", "courtyard"):
        shutil.copyfile(f"{source}/{name}.exr", root / f"blender-{name}.exr")
        hdris.append({"name": f"blender-{name}", "file": f"blender-{name}.exr", "licence": "CC0-1.0"})
    (root / "catalog.json").write_text(json.dumps({"hdris": hdris, "furniture": [], "textures": []}))
    (root / "ATTRIBUTION.md").write_text("none\n")
    return root


def _studio(assets):
    return World("blender-studio.exr", 0.0, 1.0)


def test_a_wall_facing_the_camera_has_its_distance_as_depth_and_faces_it(assets):
    wall = Slab("wall", (0.0, 3.05, 1.5), (20.0, 0.1, 20.0), GREY)  # its front face 3 m ahead of the camera
    layout = SceneLayout("room", 0, Camera((0.0, 0.0, 1.5), (0.0, 5.0, 1.5), 60.0), _studio(assets), [wall])
    frame = render_layout(layout, assets, SIZE, samples=4, effects=False)
    np.testing.assert_allclose(frame["depth"], 3.0, atol=1e-4)
    np.testing.assert_allclose(frame["normal"].reshape(-1, 3), [[0.0, 0.0, 1.0]] * (SIZE[0] * SIZE[1]), atol=1e-4)
    assert frame["alpha"].max() == 0.0
    assert frame["intrinsics"]["fx"] == pytest.approx(SIZE[0] / 2 / np.tan(np.radians(30)))


def test_the_floor_back_projects_to_a_plane_at_camera_height_with_the_normals_of_its_pixels(assets):
    floor = Slab("floor", (0.0, 0.0, -0.05), (400.0, 400.0, 0.1), GREY)
    layout = SceneLayout("street", 0, Camera((0.0, 0.0, 1.6), (0.0, 10.0, 0.6), 70.0, roll=4.0), _studio(assets),
                         [floor])
    frame = render_layout(layout, assets, SIZE, samples=4, effects=False)
    depth, normal = frame["depth"], frame["normal"]
    hit = depth > 0
    assert hit[-1].all() and not hit[0].any()  # floor at the bottom of the image, sky at the top
    points = pixel_rays(frame["intrinsics"], *depth.shape)[hit] * depth[hit][:, None]  # camera space, metres
    centred = points - points.mean(axis=0)
    plane_normal = np.linalg.svd(centred)[2][-1]
    plane_normal *= np.sign(plane_normal @ normal[hit].mean(axis=0))
    np.testing.assert_allclose(normal[hit], np.broadcast_to(plane_normal, normal[hit].shape), atol=2e-3)
    assert abs(points @ plane_normal).std() < 2e-3  # flat
    assert -(points @ plane_normal).mean() == pytest.approx(1.6, abs=5e-3)  # 1.6 m below the camera
    assert plane_normal[1] > 0.9  # the floor's normal points up in camera space (+Y up)


def test_alpha_is_one_on_an_opaque_subject_and_zero_around_it_and_its_depth_is_in_front(assets):
    wall = Slab("wall", (0.0, 4.05, 1.5), (20.0, 0.1, 20.0), GREY)
    layout = SceneLayout("room", 0, Camera((0.0, 0.0, 1.0), (0.0, 5.0, 1.0), 50.0), _studio(assets), [wall])
    layout.subject = {"kind": "object", "asset": None, "shape": "ball", "size": 0.6, "colour": [0.8, 0.2, 0.1],
                      "opacity": 1.0, "wire": 0.0, "seed": 0, "location": [0.0, 2.0, 0.7], "yaw": 0.0}
    frame = render_layout(layout, assets, SIZE, samples=8, effects=False)
    rays = pixel_rays(frame["intrinsics"], SIZE[1], SIZE[0])
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    centre = np.array([0.0, 0.0, -2.0])  # the ball's centre in camera space: 2 m ahead at eye height
    closest = np.linalg.norm(np.cross(rays, centre), axis=-1)  # each pixel ray's distance from the centre
    inside, outside = closest < 0.3 - 0.06, closest > 0.3 + 0.06  # 2 px margins: the pixel filter is 1.5 px wide
    assert inside.sum() > 50 and frame["alpha"][inside].min() > 0.99 and frame["alpha"][outside].max() < 0.01
    np.testing.assert_allclose(frame["depth"][outside], 4.0, atol=1e-4)
    assert frame["depth"][SIZE[1] // 2, SIZE[0] // 2] == pytest.approx(1.7, abs=0.01)  # 2 m minus the radius
    assert frame["normal"][inside][:, 2].min() > 0  # the ball faces the camera


def test_random_layouts_are_reproducible_and_test_scenes_use_held_out_hdris(assets):
    library = AssetLibrary.load(assets, test_pool=False)
    assert repr(random_layout(5, library)) == repr(random_layout(5, library))
    assert repr(random_layout(5, library)) != repr(random_layout(6, library))
    held_out = AssetLibrary.load(assets, test_pool=True)
    assert not {h["file"] for h in library.hdris} & {h["file"] for h in held_out.hdris}


def test_make_data_with_cycles_writes_the_dataset_layout_reproducibly_and_grows(tmp_path, assets):
    options = {"assets": assets, "samples": 2}
    first = generate_dataset(tmp_path / "a", {"train": 2, "test": 1}, size=(48, 36), renderer="cycles", options=options)
    settings = read_settings(first)
    assert settings["generator"] == "genpercept_bundle.data.photographic" and settings["zero_depth"] == "sky"
    assert sample_ids(first, "train") == ["000000", "000001"] and sample_ids(first, "test") == ["100000"]
    for split, sample_id in (("train", "000000"), ("train", "000001"), ("test", "100000")):
        sample = read_sample(first, split, sample_id)
        assert sample.rgb.shape == (36, 48, 3) and sample.alpha.shape == (36, 48)
        assert sample.normal.shape == (36, 48, 3) and set(sample.intrinsics) >= {"fx", "fy", "cx", "cy"}
        if sample_id == "000001":  # an HDRI backdrop: its photo has no depth to write (not sky)
            assert sample.depth is None and random_layout(1, AssetLibrary.load(assets, test_pool=False)).kind == "backdrop"
        else:
            assert sample.depth.shape == (36, 48)
    generate_dataset(first, {"train": 3, "test": 1}, size=(48, 36), renderer="cycles", options=options)
    second = generate_dataset(tmp_path / "b", {"train": 3, "test": 1}, size=(48, 36), renderer="cycles",
                              options=options)
    for name in ("000002_rgb.png", "000002_depth.png", "000002_normal.png", "000002_alpha.png"):
        assert (first / "train" / name).read_bytes() == (second / "train" / name).read_bytes()
    with pytest.raises(GenPerceptError, match="renders with"):
        generate_dataset(first, {"train": 4, "test": 1}, size=(48, 36))  # numpy scenes into a Cycles folder


def test_a_sequence_moves_the_camera_through_one_scene_with_exact_depth_per_frame(tmp_path, assets):
    from genpercept_bundle.data.photographic.sequences import render_sequence

    folder = render_sequence(tmp_path, 0, 3, (48, 36), assets, samples=2, kind="room")
    poses = json.loads((folder / "sequence.json").read_text())
    assert [p["frame"] for p in poses["frames"]] == [0, 1, 2] and poses["kind"] == "room"
    positions = np.array([p["position"] for p in poses["frames"]])
    assert 0.1 < np.linalg.norm(positions[2] - positions[0]) < 2.0  # a hand-held move, not a jump
    first, last = (read_sample(tmp_path, "sequence", f"{i:06d}") for i in (0, 2))
    assert (first.depth > 0).mean() > 0.5 and not np.array_equal(first.depth, last.depth)
