"""What a photo says about its camera: the field of view from EXIF, and near / far distances to suggest.

Standard library only (the Blender add-on reads EXIF with it: Blender has no Pillow). Reads the EXIF block of
JPEG (APP1), PNG (eXIf) and TIFF files.
"""

import math
import struct
from pathlib import Path

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # what a "35 mm equivalent" focal length refers to
DEFAULT_FOV_DEGREES = 60.0  # horizontal, when the photo does not say

_EXIF_IFD = 0x8769
_FOCAL_LENGTH = 0x920A
_FOCAL_LENGTH_35MM = 0xA405
_FOCAL_PLANE_X_RESOLUTION = 0xA20E
_FOCAL_PLANE_Y_RESOLUTION = 0xA20F
_FOCAL_PLANE_UNIT = 0xA210
_PIXEL_X = 0xA002
_PIXEL_Y = 0xA003
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8, 11: 4, 12: 8}


def exif_tags(path) -> dict[int, object]:
    """IFD0 and Exif-IFD tags of a JPEG, PNG or TIFF file (numbers, rationals as floats); {} when there is none or
    the file is not one of those."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return {}
    tiff = _tiff_block(data)
    if tiff is None:
        return {}
    try:
        return _read_tiff_tags(tiff)
    except (struct.error, IndexError, ValueError, ZeroDivisionError):
        return {}  # a damaged EXIF block says nothing


def _tiff_block(data: bytes) -> bytes | None:
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return data
    if data[:2] == b"\xff\xd8":  # JPEG: segments up to the image data
        position = 2
        while position + 4 <= len(data) and data[position] == 0xFF:
            marker, length = data[position + 1], struct.unpack(">H", data[position + 2:position + 4])[0]
            if marker == 0xE1 and data[position + 4:position + 10] == b"Exif\x00\x00":
                return data[position + 10:position + 2 + length]
            if marker == 0xDA:
                return None
            position += 2 + length
        return None
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        position = 8
        while position + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[position:position + 8])
            if kind == b"eXIf":
                return data[position + 8:position + 8 + length]
            if kind == b"IDAT":
                return None
            position += 12 + length
    return None


def _read_tiff_tags(tiff: bytes) -> dict[int, object]:
    order = "<" if tiff[:2] == b"II" else ">"
    tags = _read_ifd(tiff, order, struct.unpack(order + "I", tiff[4:8])[0])
    if _EXIF_IFD in tags:
        tags.update(_read_ifd(tiff, order, int(tags.pop(_EXIF_IFD))))
    return tags


def _read_ifd(tiff: bytes, order: str, offset: int) -> dict[int, object]:
    count = struct.unpack(order + "H", tiff[offset:offset + 2])[0]
    tags = {}
    for index in range(count):
        entry = tiff[offset + 2 + 12 * index:offset + 14 + 12 * index]
        tag, kind, number = struct.unpack(order + "HHI", entry[:8])
        if kind not in _TYPE_SIZES or number != 1:
            continue  # only single numbers are of use here
        field = entry[8:12] if _TYPE_SIZES[kind] <= 4 else tiff[struct.unpack(order + "I", entry[8:12])[0]:][:8]
        if kind == 3:
            tags[tag] = struct.unpack(order + "H", field[:2])[0]
        elif kind in (4, 9):
            tags[tag] = struct.unpack(order + ("I" if kind == 4 else "i"), field[:4])[0]
        elif kind in (5, 10):
            numerator, denominator = struct.unpack(order + ("II" if kind == 5 else "ii"), field[:8])
            if denominator:
                tags[tag] = numerator / denominator
        elif kind in (11, 12):
            tags[tag] = struct.unpack(order + ("f" if kind == 11 else "d"), field[:_TYPE_SIZES[kind]])[0]
    return tags


def field_of_view(path, width: int, height: int) -> float | None:
    """The horizontal field of view (degrees) of a photo shown ``width`` x ``height`` pixels (after EXIF rotation),
    from its EXIF focal length: the 35 mm equivalent, else the focal length with the sensor's size from the focal
    plane resolution. None when EXIF does not say."""
    tags = exif_tags(path)
    diagonal_mm, focal_mm = FULL_FRAME_DIAGONAL_MM, tags.get(_FOCAL_LENGTH_35MM)
    if not focal_mm:
        focal_mm = tags.get(_FOCAL_LENGTH)
        x_resolution, pixels_x, pixels_y = (tags.get(_FOCAL_PLANE_X_RESOLUTION), tags.get(_PIXEL_X),
                                            tags.get(_PIXEL_Y))
        unit = _UNIT_MM.get(tags.get(_FOCAL_PLANE_UNIT, 2))
        if not (focal_mm and x_resolution and pixels_x and pixels_y and unit):
            return None
        y_resolution = tags.get(_FOCAL_PLANE_Y_RESOLUTION) or x_resolution
        diagonal_mm = math.hypot(pixels_x / x_resolution, pixels_y / y_resolution) * unit
    if not focal_mm or focal_mm <= 0 or width <= 0 or height <= 0:
        return None
    half_diagonal = math.atan(diagonal_mm / (2.0 * focal_mm))
    half_width = math.atan(math.tan(half_diagonal) * width / math.hypot(width, height))
    return math.degrees(2.0 * half_width)


def suggested_near_far(fov_degrees: float, view_width: float = 1.0, depth_share: float = 0.5) -> tuple[float, float]:
    """Near and far distances for unprojecting a relative depth map (0 = near, 1 = far), from the field of view.

    Relative depth says nothing about scale, so this assumes what photos usually are: the nearest content fills a
    view ``view_width`` wide (near = view_width / (2 tan(fov / 2))), and the scene is as deep as ``depth_share`` of
    the view's width at the far distance (far - near = depth_share * 2 tan(fov / 2) * far). A long lens (a portrait
    at 85 mm, 24 degrees) gives a shallow scene a few metres away; a wide one (a room, a street) a deep, close one.
    """
    if not 0 < fov_degrees < 180:
        raise ValueError(f"the field of view must be between 0 and 180 degrees, got {fov_degrees}")
    spread = 2.0 * math.tan(math.radians(fov_degrees) / 2.0)
    near = view_width / spread
    # far (1 - depth_share * spread) = near; capped where the formula runs away (wide angles): 20 x near
    far = near / (1.0 - depth_share * spread) if depth_share * spread < 0.95 else 20.0 * near
    return near, min(far, 20.0 * near)
