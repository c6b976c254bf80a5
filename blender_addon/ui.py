"""Where the add-on shows up: File > Import, Add > Mesh, the 3D View sidebar, and its preferences."""

import bpy
from bpy.props import StringProperty

from genpercept_bundle.comfyui_bridge import EMBEDDED

from . import kept_maps
from .operators import OPERATORS, GENPERCEPT_OT_build_moving_relief, GENPERCEPT_OT_build_relief


class GENPERCEPT_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    model_folder: StringProperty(
        name="Model folder", subtype="DIR_PATH",
        description="A model folder of any supported family: GenPercept (unet_depth_v2/, vae/, ...), Marigold, E2E-FT, "
                    "Lotus (their diffusers folders), DMP (its LoRA folder); empty = the bundle's embedded model")
    dmp_base: StringProperty(
        name="DMP base", subtype="DIR_PATH",
        description="DMP models only: the Stable Diffusion v1.4 folder (unet/, vae/, scheduler/, text_encoder/) its "
                    "LoRA goes onto")
    python_path: StringProperty(
        name="External Python", subtype="FILE_PATH",
        description="A Python with the GenPercept bundle installed; used when the bundle cannot run inside Blender")
    comfyui_url: StringProperty(
        name="ComfyUI server",
        description="Predict on a running ComfyUI with this pack (its GPU and models) through its HTTP API, e.g. "
                    "http://127.0.0.1:8188; empty = predict on this computer")
    comfyui_model: StringProperty(
        name="ComfyUI model", default=EMBEDDED,
        description="The model as ComfyUI's GenPercept Model Loader lists it (a folder in its models/genpercept)")

    def draw(self, context):
        self.layout.prop(self, "model_folder")
        self.layout.prop(self, "dmp_base")
        self.layout.prop(self, "python_path")
        self.layout.prop(self, "comfyui_url")
        row = self.layout.row()
        row.enabled = bool(self.comfyui_url)
        row.prop(self, "comfyui_model")
        self.layout.operator("genpercept.check_setup", icon="CHECKMARK")


class GENPERCEPT_PT_relief(bpy.types.Panel):
    bl_label = "GenPercept Relief"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "GenPercept"

    def draw(self, context):
        column = self.layout.column(align=True)
        column.operator(GENPERCEPT_OT_build_relief.bl_idname, text="Relief from Photo...", icon="IMAGE_DATA")
        column.operator(GENPERCEPT_OT_build_moving_relief.bl_idname, text="Moving Relief from Frames...",
                        icon="FILE_MOVIE")
        column.operator("genpercept.displace_mesh", text="Displace Selected...", icon="MOD_DISPLACE")
        column = self.layout.column(align=True)
        column.operator("genpercept.bake_relief", icon="MESH_DATA")
        column.operator("genpercept.export_relief", text="Export Relief...", icon="EXPORT")
        column.operator("genpercept.export_height_map", text="Export Height Map...", icon="IMAGE_ZDEPTH")


def menu_import(self, context):
    self.layout.operator(GENPERCEPT_OT_build_relief.bl_idname, text="Relief from Photo (GenPercept)")
    self.layout.operator(GENPERCEPT_OT_build_moving_relief.bl_idname, text="Moving Relief from Frames (GenPercept)")


def menu_add_mesh(self, context):
    self.layout.operator(GENPERCEPT_OT_build_relief.bl_idname, text="Relief from Photo", icon="IMAGE_DATA")
    self.layout.operator(GENPERCEPT_OT_build_moving_relief.bl_idname, text="Moving Relief from Frames",
                         icon="FILE_MOVIE")


MENUS = (("TOPBAR_MT_file_import", menu_import), ("VIEW3D_MT_mesh_add", menu_add_mesh))
CLASSES = (GENPERCEPT_AP_preferences, *OPERATORS, GENPERCEPT_PT_relief)
_register, _unregister = bpy.utils.register_classes_factory(CLASSES)


@bpy.app.handlers.persistent
def _forget_kept_maps(*_):
    kept_maps.clear_memory()  # another file: its maps are elsewhere


def register():
    _register()
    for menu, entry in MENUS:
        getattr(bpy.types, menu).append(entry)
    bpy.app.handlers.load_post.append(_forget_kept_maps)


def unregister():
    bpy.app.handlers.load_post.remove(_forget_kept_maps)
    for menu, entry in MENUS:
        getattr(bpy.types, menu).remove(entry)
    _unregister()
