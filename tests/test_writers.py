"""Map files: formats round-trip and a failed write leaves nothing behind."""

import numpy as np
import pytest

from genpercept_bundle import GenPerceptError
from genpercept_bundle.conventions import near_bright, normals_from_raw, normals_to_rgb
from genpercept_bundle.writers import atomic_path, read_map, write_map


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
