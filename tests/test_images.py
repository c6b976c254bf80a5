"""Every kind of photo users give us becomes the uint8 RGB the model was trained on."""

import numpy as np
import pytest
from PIL import Image

from genpercept_bundle import GenPerceptError, load_image
from genpercept_bundle.images import list_inputs


@pytest.fixture
def gradient():
    y, x = np.mgrid[0:20, 0:30]
    return np.stack([x * 8, y * 12, np.full_like(x, 90)], axis=-1).astype(np.uint8)


def test_rgb_png(tmp_path, gradient):
    Image.fromarray(gradient).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), gradient)


def test_grey_becomes_three_equal_channels(tmp_path, gradient):
    Image.fromarray(gradient[..., 0]).save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png")
    assert rgb.shape == (20, 30, 3) and np.array_equal(rgb[..., 0], gradient[..., 0]) and np.array_equal(rgb[..., 2], gradient[..., 0])


def test_sixteen_bit_grey_is_scaled_to_eight_bit(tmp_path):
    values = (np.arange(600, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    rgb = load_image(tmp_path / "g16.png")
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 1], np.round(values / 257.0).astype(np.uint8))


def test_sixteen_bit_rgb(tmp_path, gradient):
    import cv2

    sixteen = gradient.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "c16.png"), sixteen[..., ::-1])
    np.testing.assert_array_equal(load_image(tmp_path / "c16.png"), gradient)


def test_alpha_is_dropped(tmp_path, gradient):
    rgba = np.concatenate([gradient, np.zeros((20, 30, 1), np.uint8)], axis=-1)  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), gradient)


def test_cmyk_jpeg(tmp_path, gradient):
    Image.fromarray(gradient).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    rgb = load_image(tmp_path / "c.jpg")
    assert rgb.shape == (20, 30, 3) and np.abs(rgb.astype(int) - gradient).mean() < 10


def test_exif_rotation_is_applied(tmp_path, gradient):
    image = Image.fromarray(gradient)
    exif = image.getexif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    image.save(tmp_path / "r.jpg", exif=exif, quality=100)
    rgb = load_image(tmp_path / "r.jpg")
    assert rgb.shape == (30, 20, 3)
    expected = np.rot90(gradient, k=-1)
    assert np.abs(rgb.astype(int) - expected).mean() < 6


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_files_have_clear_errors(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(GenPerceptError, match="cannot read .*broken.png as an image"):
        load_image(path)


def test_truncated_jpeg(tmp_path, gradient):
    Image.fromarray(np.tile(gradient, (10, 10, 1))).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(GenPerceptError, match="corrupt or truncated"):
        load_image(tmp_path / "t.jpg")


def test_list_inputs_files_folders_globs(tmp_path, gradient):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"x")
    assert [p.name for p in list_inputs([tmp_path])] == ["a.jpg", "b.png"]
    assert [p.name for p in list_inputs([str(tmp_path / "**" / "*.png")])] == ["b.png", "c.png"]
    assert [p.name for p in list_inputs([tmp_path / "b.png", tmp_path / "b.png"])] == ["b.png"]
    with pytest.raises(GenPerceptError, match="does not exist"):
        list_inputs([tmp_path / "missing.png"])
    with pytest.raises(GenPerceptError, match="no images match"):
        list_inputs([str(tmp_path / "*.tif")])


def test_palette_animated_unicode_and_symlink_loops(tmp_path, gradient):
    Image.fromarray(gradient).convert("P").save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").shape == (*gradient.shape[:2], 3)
    frames = [Image.new("RGB", (12, 10), (200 * i, 0, 0)) for i in range(2)]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "animated.gif")[0, 0, 0] == 0  # the first frame
    Image.fromarray(gradient).save(tmp_path / "фото 写真.png")
    assert load_image(tmp_path / "фото 写真.png").shape == (*gradient.shape[:2], 3)
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "self").symlink_to(loop)
    Image.fromarray(gradient).save(loop / "inside.png")
    assert list_inputs([str(loop) + "/**/*.png"]) == [(loop / "inside.png").resolve()]
