"""Writing a relief out: meshes for printing and other tools (modifiers applied), height maps for CNC software.

STL and OBJ carry no unit; slicers and CAM tools read millimetres, so they are written in millimetres whatever
the scene's unit scale. glTF and USD are in metres by their specifications.
"""

from pathlib import Path

import bpy
import numpy as np

from .moving_relief import heights_at
from .relief import modifier_input, relief_modifier

MESH_FORMATS = {  # identifier: (label, suffix)
    "STL": ("STL (3D printing)", ".stl"),
    "OBJ": ("OBJ", ".obj"),
    "GLB": ("glTF binary", ".glb"),
    "USD": ("USD", ".usdc"),
}
OTHER_SUFFIXES = {"USD": (".usd", ".usda")}  # also accepted for a format (.usda: USD as text)
HEIGHT_MAP_FORMATS = {"PNG16": ("16-bit PNG", ".png"), "EXR": ("OpenEXR (float)", ".exr")}


def metres_per_unit(scene) -> float:
    return scene.unit_settings.scale_length if scene.unit_settings.system != "NONE" else 1.0


def export_mesh(obj, path: str, format: str, scene=None) -> Path:
    """Write ``obj`` as shown (its modifiers applied) to ``path`` in ``format`` (MESH_FORMATS); returns the path."""
    scene = scene or bpy.context.scene
    path = Path(path)
    if path.suffix.lower() not in (MESH_FORMATS[format][1], *OTHER_SUFFIXES.get(format, ())):
        path = path.with_suffix(MESH_FORMATS[format][1])
    path.parent.mkdir(parents=True, exist_ok=True)
    with _only_selected(obj):
        millimetres = metres_per_unit(scene) * 1000.0
        if format == "STL":
            bpy.ops.wm.stl_export(filepath=str(path), export_selected_objects=True, apply_modifiers=True,
                                  global_scale=millimetres, use_scene_unit=False)
        elif format == "OBJ":
            bpy.ops.wm.obj_export(filepath=str(path), export_selected_objects=True, apply_modifiers=True,
                                  global_scale=millimetres, export_materials=False)
        elif format == "GLB":
            with _scaled(obj, metres_per_unit(scene)):  # the glTF exporter ignores the scene's unit scale
                bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB", use_selection=True,
                                          export_apply=True)
        elif format == "USD":
            bpy.ops.wm.usd_export(filepath=str(path), selected_objects_only=True, evaluation_mode="RENDER",
                                  convert_scene_units="CUSTOM", meters_per_unit=metres_per_unit(scene))
        else:
            raise ValueError(f"unknown mesh format {format!r}: one of {', '.join(MESH_FORMATS)}")
    return path


class _only_selected:
    """Select just ``obj`` (and make it active) while exporting; the selection is restored afterwards."""

    def __init__(self, obj):
        self.obj = obj

    def __enter__(self):
        layer = bpy.context.view_layer
        self.selected, self.active = list(layer.objects.selected), layer.objects.active
        for item in self.selected:
            item.select_set(False)
        self.obj.select_set(True)
        layer.objects.active = self.obj

    def __exit__(self, *_):
        self.obj.select_set(False)
        for item in self.selected:
            item.select_set(True)
        bpy.context.view_layer.objects.active = self.active


class _scaled:
    def __init__(self, obj, factor):
        self.obj, self.factor = obj, factor

    def __enter__(self):
        self.scale = self.obj.scale.copy()
        self.obj.scale = self.scale * self.factor

    def __exit__(self, *_):
        self.obj.scale = self.scale


def relief_heights_of(obj, scene=None) -> np.ndarray:
    """The height field [rows, columns] (row 0 = top, 1 = highest) behind a relief object's modifier (a moving
    relief's: at the scene's frame)."""
    modifier = relief_modifier(obj)
    if modifier is None:
        raise ValueError(f"{obj.name} is no GenPercept relief (it has no relief modifier; was it made a plain mesh?)")
    image = modifier_input(modifier, "Heights")
    if image.source == "SEQUENCE":
        return heights_at(obj, image, scene or bpy.context.scene)
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(height, width, 4)[::-1, :, 0].copy()


def export_height_map(obj, path: str, format: str, scene=None) -> Path:
    """The relief's heights as a greyscale image (white = highest): 16-bit PNG or float EXR, one pixel per vertex."""
    scene = scene or bpy.context.scene
    heights = relief_heights_of(obj, scene)
    path = Path(path)
    if path.suffix.lower() != HEIGHT_MAP_FORMATS[format][1]:
        path = path.with_suffix(HEIGHT_MAP_FORMATS[format][1])
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, columns = heights.shape
    image = bpy.data.images.new("GenPercept height map", columns, rows, float_buffer=True, alpha=False)
    image.colorspace_settings.name = "Non-Color"  # before the pixels: changing it regenerates the image
    rgba = np.ones((rows, columns, 4), np.float32)
    rgba[..., :3] = heights[::-1, :, None]
    image.pixels.foreach_set(rgba.ravel())
    settings = scene.render.image_settings
    saved = {name: getattr(settings, name) for name in ("file_format", "color_depth", "color_mode")}
    try:
        settings.file_format = "PNG" if format == "PNG16" else "OPEN_EXR"
        settings.color_mode = "BW"
        settings.color_depth = "16" if format == "PNG16" else "32"
        image.save_render(str(path), scene=scene)
    finally:
        for name in ("file_format", "color_mode", "color_depth"):
            setattr(settings, name, saved[name])
        bpy.data.images.remove(image)
    return path
