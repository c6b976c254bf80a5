"""Field of view from EXIF (JPEG, PNG) and the suggested near / far distances."""

import math

import pytest
from PIL import Image

from genpercept_bundle.photo_camera import exif_tags, field_of_view, suggested_near_far


def save_with_exif(path, size, **exif_ifd):
    exif = Image.Exif()
    codes = {"focal_35mm": 0xA405, "focal": 0x920A, "plane_x": 0xA20E, "plane_y": 0xA20F, "unit": 0xA210,
             "pixels_x": 0xA002, "pixels_y": 0xA003}
    exif.get_ifd(0x8769).update({codes[name]: value for name, value in exif_ifd.items()})
    Image.new("RGB", size).save(path, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_35mm_equivalent_focal_length(tmp_path, suffix):
    photo = save_with_exif(tmp_path / f"p{suffix}", (300, 200), focal_35mm=26)
    assert exif_tags(photo)[0xA405] == 26
    # a 3:2 photo covers the full frame's 36 mm width: 2 atan(18 / 26)
    assert field_of_view(photo, 300, 200) == pytest.approx(math.degrees(2 * math.atan(18 / 26)), abs=0.01)
    # the same photo turned upright (EXIF rotation applied) is 24 mm wide
    assert field_of_view(photo, 200, 300) == pytest.approx(math.degrees(2 * math.atan(12 / 26)), abs=0.01)


def test_focal_length_with_the_sensor_size_from_the_focal_plane_resolution(tmp_path):
    # a 6.4 x 4.8 mm sensor, 640 x 480 pixels: 100 pixels per mm (unit 4 = mm), 5 mm lens
    photo = save_with_exif(tmp_path / "p.jpg", (640, 480), focal=5.0, plane_x=100.0, plane_y=100.0, unit=4,
                           pixels_x=640, pixels_y=480)
    assert field_of_view(photo, 640, 480) == pytest.approx(math.degrees(2 * math.atan(3.2 / 5.0)), abs=0.01)


def test_no_exif_or_not_an_image(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "plain.jpg")
    assert field_of_view(tmp_path / "plain.jpg", 30, 20) is None
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff")
    assert field_of_view(tmp_path / "junk.jpg", 30, 20) is None
    assert field_of_view(tmp_path / "missing.jpg", 30, 20) is None


def test_a_long_lens_suggests_a_shallow_scene_a_wide_one_a_deep_one():
    portrait_near, portrait_far = suggested_near_far(24.0)
    room_near, room_far = suggested_near_far(75.0)
    assert portrait_far / portrait_near < 1.5 < room_far / room_near
    assert portrait_near > room_near
    assert suggested_near_far(170.0)[1] == pytest.approx(20 * suggested_near_far(170.0)[0])
    with pytest.raises(ValueError, match="between 0 and 180"):
        suggested_near_far(0.0)
