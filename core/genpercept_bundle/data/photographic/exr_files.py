"""Reading the uncompressed multi-layer EXR files Cycles writes (numpy only: no OpenEXR/OpenImageIO module here).

Render passes are written with ``exr_codec = 'NONE'`` and 32-bit floats; Blender writes multi-layer files as
multi-part EXR (one part, flag 0x1000). Layout (openexr.com, "OpenEXR File Layout"): magic, version and flags,
headers of ``name\\0 type\\0 size value`` attributes, one offset table per part, then one scanline per chunk: [part
number], y, byte count, and each channel's row in the header's (alphabetical) channel order.
"""

import struct
from pathlib import Path

import numpy as np

MAGIC = b"\x76\x2f\x31\x01"
MULTIPART = 0x1000
PIXEL_TYPES = {0: "<u4", 1: "<f2", 2: "<f4"}


def read_exr_channels(path: Path) -> dict[str, np.ndarray]:
    """{channel name ("ViewLayer.Depth.Z"...): float32 [H,W]}, row 0 at the top of the image."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not an EXR file")
    multipart = bool(struct.unpack_from("<I", data, 4)[0] & MULTIPART)
    position, headers = 8, []
    while True:
        header, position = _header(data, position)
        headers.append(header)
        if not multipart or data[position] == 0:
            break
    position += 1 if multipart else 0
    parts = []
    for header in headers:
        if header["compression"][0] != 0:
            raise ValueError(f"{path}: compressed EXR; render passes must be written with exr_codec 'NONE'")
        x0, y0, x1, y1 = struct.unpack("<4i", header["dataWindow"])
        chunks = struct.unpack("<i", header["chunkCount"])[0] if "chunkCount" in header else y1 - y0 + 1
        offsets = np.frombuffer(data, "<u8", chunks, position)
        position += 8 * chunks
        parts.append((_channels(header["channels"]), x1 - x0 + 1, y1 - y0 + 1, y0, offsets))
    channels = {}
    for names_types, width, height, y0, offsets in parts:
        row = np.dtype([(name, PIXEL_TYPES[kind], (width,)) for name, kind in names_types])
        planes = {name: np.empty((height, width), np.float32) for name, _ in names_types}
        skip = 4 if multipart else 0  # each chunk starts with its part number
        for offset in offsets:
            y = struct.unpack_from("<i", data, int(offset) + skip)[0]
            record = np.frombuffer(data, row, 1, int(offset) + skip + 8)[0]
            for name in planes:
                planes[name][y - y0] = record[name]
        channels.update(planes)
    return channels


def _header(data: bytes, position: int) -> tuple[dict, int]:
    header = {}
    while data[position] != 0:
        name, position = _string(data, position)
        _, position = _string(data, position)  # attribute type
        size = struct.unpack_from("<i", data, position)[0]
        header[name] = data[position + 4:position + 4 + size]
        position += 4 + size
    return header, position + 1


def _string(data: bytes, position: int) -> tuple[str, int]:
    end = data.index(b"\0", position)
    return data[position:end].decode(), end + 1


def _channels(raw: bytes) -> list[tuple[str, int]]:
    channels, position = [], 0
    while raw[position] != 0:
        name, position = _string(raw, position)
        channels.append((name, struct.unpack_from("<i", raw, position)[0]))
        position += 16  # pixel type, pLinear + 3 reserved bytes, x and y sampling
    return channels
