"""The map-file contract: formats round-trip, names and sidecars, finding maps, and a failed write leaves nothing."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genpercept_bundle import GenPerceptError
from genpercept_bundle.conventions import near_bright, normals_from_raw, normals_to_rgb
from genpercept_bundle.atomic_files import atomic_path
from genpercept_bundle.map_files import find_maps, map_path, read_map, save_maps, write_map, write_previews


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "map.png"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_a_failed_overwrite(tmp_path):
    target = tmp_path / "map.npy"
    write_map(target, np.ones((4, 4)), "npy")
    with pytest.raises(GenPerceptError):
        write_map(target, np.zeros((4, 4)), "tiff")
    assert np.load(target).sum() == 16 and len(list(tmp_path.iterdir())) == 1


def test_png16_is_sixteen_bit(tmp_path):
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    write_map(tmp_path / "d.png", values, "png16")
    np.testing.assert_allclose(read_map(tmp_path / "d.png"), values, atol=0.5 / 65535)


def test_normal_conventions_on_a_sphere():
    y, x = np.mgrid[-1:1:65j, -1:1:65j]
    inside = x**2 + y**2 < 0.9
    z = np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))
    sphere = np.stack([x, -y, z], axis=-1)  # image rows go down, +Y goes up
    raw = (sphere + 1) / 2
    normals = normals_from_raw(raw)
    np.testing.assert_allclose(normals[inside], sphere[inside], atol=1e-5)
    gl, dx = normals_to_rgb(normals, "opengl"), normals_to_rgb(normals, "directx")
    assert gl[5, 32, 1] > 0.9 and gl[60, 32, 1] < 0.1  # top of the sphere is green in OpenGL
    assert dx[5, 32, 1] < 0.1 and dx[60, 32, 1] > 0.9  # and the bottom in DirectX
    assert gl[32, 60, 0] > 0.9 and dx[32, 60, 0] > 0.9  # right side is red in both
    assert np.allclose(normals_from_raw(np.full((1, 1, 3), 0.5)), [0, 0, 1])  # degenerate -> facing camera


def test_near_bright_inverts_depth():
    depth = np.array([[0.0, 0.25, 1.0]])
    np.testing.assert_allclose(near_bright(depth), [[1.0, 0.75, 0.0]])


@pytest.mark.parametrize("format", ["png16", "exr", "npy"])
@pytest.mark.parametrize("convention", ["opengl", "directx"])
def test_saved_maps_are_found_and_read_back_in_the_convention(tmp_path, format, convention):
    rng = np.random.default_rng(3)
    depth = rng.uniform(0, 1, (12, 16)).astype(np.float32)
    normals = normals_from_raw(rng.uniform(0, 1, (12, 16, 3)).astype(np.float32))
    photo = tmp_path / "shot.jpg"
    for task, maps in (("depth", depth), ("normal", normals)):
        files = save_maps(tmp_path, "shot", task, maps, format, {"source": str(photo)}, convention)
        assert files[0] == map_path(tmp_path, "shot", task, format) and files[-1].name == f"shot_{task}.json"
    found = find_maps(photo)
    assert sorted(found) == ["depth", "normal"]
    tolerance = 1 / 65535 if format == "png16" else 1e-6
    np.testing.assert_allclose(read_map(found["depth"], "depth"), depth, atol=tolerance)
    np.testing.assert_allclose(read_map(found["normal"], "normal"), normals, atol=4 * tolerance)
    sidecar = json.loads((tmp_path / "shot_normal.json").read_text())
    assert sidecar["source"] == str(photo) and "shot_normal_preview.png" in sidecar["files"]


def test_previews_follow_the_task(tmp_path):
    depth = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    names = [p.name for p in write_previews(tmp_path, "a", "depth", depth)]
    assert names == ["a_depth_preview.png", "a_depth_controlnet.png"]
    controlnet = np.asarray(Image.open(tmp_path / "a_depth_controlnet.png"))
    assert controlnet[0, 0] == 255 and controlnet[-1, -1] == 0  # near = bright
    assert [p.name for p in write_previews(tmp_path, "a", "dis", depth)] == ["a_dis_preview.png"]


def test_read_map_refuses_what_it_cannot_use(tmp_path):
    np.save(tmp_path / "flat_normal.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(GenPerceptError, match="3-channel normal map"):
        read_map(tmp_path / "flat_normal.npy", "normal")
    np.save(tmp_path / "nan_depth.npy", np.full((4, 4), np.nan, np.float32))
    with pytest.raises(GenPerceptError, match="NaN"):
        read_map(tmp_path / "nan_depth.npy", "depth")
    with pytest.raises(GenPerceptError, match="not found"):
        read_map(tmp_path / "missing_depth.exr", "depth")


def test_numpy_only_modules_import_without_torch_and_pillow():
    blocked = "import sys; sys.modules.update(torch=None, PIL=None, cv2=None, diffusers=None)\n"
    code = blocked + ("import genpercept_bundle.conventions, genpercept_bundle.map_files, genpercept_bundle.tasks, "
                      "genpercept_bundle.choices, genpercept_bundle.models.folders, genpercept_bundle.models.settings\n"
                      "import genpercept_bundle as bundle; assert bundle.get_task('alpha').name == 'matte'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
