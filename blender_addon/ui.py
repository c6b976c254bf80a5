"""Operators, the sidebar panel, settings and preferences of the GenPercept Relief add-on."""

import os
import shutil
import threading

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from genpercept_bundle.choices import MIN_IMAGE_SIDE
from genpercept_bundle.models.folders import is_model_folder

from . import maps
from .material import relief_material
from .relief import bake, orthographic_relief, perspective_relief


def preferences(context):
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


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

    def draw(self, context):
        self.layout.prop(self, "model_folder")
        self.layout.prop(self, "dmp_base")
        self.layout.prop(self, "python_path")
        self.layout.operator("genpercept.check_setup", icon="CHECKMARK")


class GenPerceptSettings(bpy.types.PropertyGroup):
    source: EnumProperty(name="Maps", items=[
        ("PHOTO", "Predict from photo", "Run the GenPercept predictor on the photo"),
        ("FILES", "Existing maps", "Use depth / normal / matte files from the CLI or ComfyUI (EXR, 16-bit PNG, .npy)")])
    photo: StringProperty(name="Photo", subtype="FILE_PATH", description="The photo (colour and UVs)")
    depth_file: StringProperty(name="Depth", subtype="FILE_PATH",
                               description="Depth map, 0 = near (empty: <photo>_depth.* next to the photo)")
    normal_file: StringProperty(name="Normals", subtype="FILE_PATH", description="Normal map (optional)")
    matte_file: StringProperty(name="Matte", subtype="FILE_PATH", description="Alpha matte (optional)")
    projection: EnumProperty(name="Projection", items=[
        ("RELIEF", "Relief", "Orthographic bas-relief: height along +Z on a flat grid"),
        ("PERSPECTIVE", "Perspective", "Unproject through a pinhole camera; a matching camera is created")])
    resolution: IntProperty(name="Resolution", default=256, min=2, max=4096,
                            description="Vertices along the longest side")
    height: FloatProperty(name="Height", default=0.2, min=0.0, soft_max=2.0, unit="LENGTH",
                          description="Relief height from the farthest to the nearest point")
    width: FloatProperty(name="Width", default=1.0, min=0.001, unit="LENGTH", description="Relief width")
    base: FloatProperty(name="Base", default=0.0, min=0.0, unit="LENGTH",
                        description="Solid base thickness under the relief (0 = none)")
    invert: BoolProperty(name="Invert", default=False,
                         description="The map is near = bright (disparity-style) instead of depth (0 = near)")
    edge_angle: FloatProperty(name="Edge cut angle", default=80.0, min=0.0, max=90.0,
                              description="Relief: faces steeper than this are cut (90 keeps all)")
    edge_tolerance: FloatProperty(name="Edge cut", default=0.04, min=0.0, max=1.0,
                                  description="Perspective: cut faces whose depth span exceeds this fraction of their distance (0 keeps all)")
    matte_mode: EnumProperty(name="Matte", items=[
        ("NONE", "Ignore", "Do not use the matte"),
        ("ALPHA", "Material alpha", "Keep the geometry; the matte drives the material's alpha"),
        ("CUT", "Cut out", "Delete faces outside the matte (exports cleanly)")], default="ALPHA")
    matte_threshold: FloatProperty(name="Matte threshold", default=0.5, min=0.0, max=1.0)
    fov: FloatProperty(name="Field of view", default=60.0, min=1.0, max=170.0,
                       description="Horizontal field of view of the photo, degrees")
    near: FloatProperty(name="Near", default=2.0, min=0.001, unit="LENGTH", description="Distance of the nearest point")
    far: FloatProperty(name="Far", default=10.0, min=0.002, unit="LENGTH", description="Distance of the farthest point")
    plain_mesh: BoolProperty(name="Plain mesh", default=False,
                             description="Relief: apply the Geometry Nodes set-up now (for export); off keeps it editable")


class PredictionJob:
    """Runs the predictor without blocking Blender: a thread in-process, or the external Python."""

    def __init__(self, photo, tasks, model, python, base=""):
        self.photo, self.result, self.error = photo, None, None
        self.tasks = maps.model_tasks(model, tasks, base)  # what this model has of them
        self.process = None
        self.cancelled = threading.Event()
        if python or not maps.bundle_in_process():
            self.process, self.out_dir = maps.start_external(python, photo, self.tasks, model, base)
        else:
            self.thread = threading.Thread(target=self._run_in_process, args=(model, base), daemon=True)
            self.thread.start()

    def _run_in_process(self, model, base):
        try:
            self.result = maps.predict_in_process(self.photo, self.tasks, model, self.cancelled, base)
        except Exception as error:  # reported in Blender's UI by the operator
            self.error = error

    def done(self) -> bool:
        return self.process.poll() is not None if self.process else not self.thread.is_alive()

    def wait(self) -> dict:
        if self.process:
            return maps.finish_external(self.process, self.out_dir, self.photo, self.tasks)
        self.thread.join()
        if self.error:
            raise self.error if isinstance(self.error, maps.MapError) else maps.MapError(str(self.error))
        return self.result

    def cancel(self):
        """Stop the prediction: the external process is terminated (its temporary folder removed); in-process,
        the predictor stops at its next network block."""
        self.cancelled.set()
        if self.process:
            if self.process.poll() is None:
                self.process.terminate()
            self.process.wait()
            shutil.rmtree(self.out_dir, ignore_errors=True)


class GENPERCEPT_OT_build_relief(bpy.types.Operator):
    """Build a relief mesh with material from a photo's depth, normals and matte"""

    bl_idname = "genpercept.build_relief"
    bl_label = "Build Relief"
    bl_options = {"REGISTER", "UNDO"}

    _job = None
    _timer = None

    def _tasks(self, settings):
        return ["depth", "normal"] + (["matte"] if settings.matte_mode != "NONE" else [])

    def _start_job(self, context):
        settings, prefs = context.scene.genpercept, preferences(context)
        photo = bpy.path.abspath(settings.photo)
        if not settings.photo or not os.path.isfile(photo):
            raise maps.MapError(f"choose a photo first (not found: {photo or 'nothing set'})")
        model = bpy.path.abspath(prefs.model_folder) if prefs and prefs.model_folder else ""
        python = bpy.path.abspath(prefs.python_path) if prefs and prefs.python_path else ""
        base = bpy.path.abspath(prefs.dmp_base) if prefs and prefs.dmp_base else ""
        return PredictionJob(photo, self._tasks(settings), model, python, base)

    def execute(self, context):
        """Synchronous: scripts, headless runs and Redo."""
        try:
            settings = context.scene.genpercept
            predicted = self._start_job(context).wait() if settings.source == "PHOTO" else self._read_files(settings)
            self._build(context, predicted)
        except maps.MapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}

    def invoke(self, context, event):
        if context.scene.genpercept.source != "PHOTO" or bpy.app.background:
            return self.execute(context)
        try:
            self._job = self._start_job(context)
        except maps.MapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.25, window=context.window)
        context.window_manager.modal_handler_add(self)
        context.workspace.status_text_set("GenPercept: predicting depth, normals and matte... (Esc cancels)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._job.cancel()
            self._finish_modal(context)
            self.report({"WARNING"}, "GenPercept: cancelled")
            return {"CANCELLED"}
        if event.type != "TIMER" or not self._job.done():
            return {"PASS_THROUGH"}
        self._finish_modal(context)
        try:
            self._build(context, self._job.wait())
        except maps.MapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}

    def _finish_modal(self, context):
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)

    def _read_files(self, settings):
        found = maps.find_maps(bpy.path.abspath(settings.photo)) if settings.photo else {}
        paths = {"depth": settings.depth_file or found.get("depth"), "normal": settings.normal_file or found.get("normal"),
                 "matte": settings.matte_file or found.get("matte")}
        if not paths["depth"]:
            raise maps.MapError("choose a depth map (EXR, 16-bit PNG or .npy), or a photo with <photo>_depth.* beside it")
        loaded = {"depth": maps.load_map(paths["depth"], "depth")}
        if paths["normal"]:
            loaded["normal"] = maps.load_map(paths["normal"], "normal")
        if paths["matte"] and settings.matte_mode != "NONE":
            loaded["matte"] = maps.load_map(paths["matte"], "matte")
        return loaded

    def _build(self, context, predicted):
        settings = context.scene.genpercept
        depth, matte = predicted["depth"], predicted.get("matte")
        if min(depth.shape) < MIN_IMAGE_SIDE:
            raise maps.MapError(f"the depth map is {depth.shape[1]}x{depth.shape[0]} pixels; a relief needs at least "
                                f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
        for task, values in predicted.items():
            if values.shape[:2] != depth.shape:
                raise maps.MapError(f"the {task} map is {values.shape[1]}x{values.shape[0]} but the depth map is "
                                    f"{depth.shape[1]}x{depth.shape[0]}; use maps of the same photo")
        name = os.path.splitext(os.path.basename(settings.photo or settings.depth_file))[0] or "relief"
        wm = context.window_manager
        wm.progress_begin(0, 3)
        cut_matte = matte if settings.matte_mode == "CUT" else None
        threshold = settings.matte_threshold if cut_matte is not None else 0.0
        photo = settings.photo if settings.photo and os.path.isfile(bpy.path.abspath(settings.photo)) else None
        alpha = matte if settings.matte_mode == "ALPHA" else None
        material = relief_material(name, photo, predicted.get("normal"), alpha)
        wm.progress_update(1)
        created = []
        if settings.projection == "RELIEF":
            obj = orthographic_relief(name, depth, cut_matte, settings.resolution, settings.height, settings.width,
                                      settings.invert, settings.base, settings.edge_angle, threshold, material)
            created.append(obj)
        else:
            obj, camera = perspective_relief(name, depth, cut_matte, settings.resolution, settings.fov, settings.near,
                                             settings.far, settings.invert, settings.edge_tolerance, threshold)
            obj.data.materials.append(material)
            created += [obj, camera]
            context.scene.camera = camera
            context.scene.render.resolution_x, context.scene.render.resolution_y = depth.shape[1], depth.shape[0]
        wm.progress_update(2)
        for item in created:
            context.collection.objects.link(item)
        if settings.projection == "RELIEF" and settings.plain_mesh:
            bake(obj)
        for item in context.view_layer.objects.selected:
            item.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        wm.progress_end()
        self.report({"INFO"}, f"GenPercept: built {obj.name}")


class GENPERCEPT_OT_bake_relief(bpy.types.Operator):
    """Turn the active relief's Geometry Nodes set-up into a plain mesh (for export, sculpting, CNC)"""

    bl_idname = "genpercept.bake_relief"
    bl_label = "Make Plain Mesh"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and any(m.type == "NODES" and m.name.startswith("GenPercept") for m in obj.modifiers)

    def execute(self, context):
        bake(context.active_object)
        return {"FINISHED"}


class GENPERCEPT_OT_check_setup(bpy.types.Operator):
    """Check the model folder and the external Python, and say what is wrong"""

    bl_idname = "genpercept.check_setup"
    bl_label = "Check Setup"

    def execute(self, context):
        prefs = preferences(context)
        folder = bpy.path.abspath(prefs.model_folder) if prefs and prefs.model_folder else ""
        problems = []
        if folder and not is_model_folder(folder):
            problems.append(f"{folder} is no model folder of a supported family (GenPercept's unet_<task>_v2/ + vae/, "
                            "a Marigold / E2E-FT / Lotus diffusers folder, a DMP LoRA folder)")
        python = bpy.path.abspath(prefs.python_path) if prefs and prefs.python_path else ""
        verdict = maps.check_external_python(python) if python else (
            "OK: the bundle runs inside Blender" if maps.bundle_in_process() else
            "the bundle is not importable inside Blender: set an external Python that has it")
        if not verdict.startswith("OK"):
            problems.append(verdict)
        if problems:
            self.report({"ERROR"}, "; ".join(problems))
            return {"CANCELLED"}
        self.report({"INFO"}, verdict)
        return {"FINISHED"}


class GENPERCEPT_PT_relief(bpy.types.Panel):
    bl_label = "GenPercept Relief"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "GenPercept"

    def draw(self, context):
        settings, layout = context.scene.genpercept, self.layout
        layout.prop(settings, "source", expand=True)
        layout.prop(settings, "photo")
        if settings.source == "FILES":
            for name in ("depth_file", "normal_file", "matte_file"):
                layout.prop(settings, name)
        layout.prop(settings, "projection", expand=True)
        column = layout.column(align=True)
        column.prop(settings, "resolution")
        if settings.projection == "RELIEF":
            for name in ("width", "height", "base", "edge_angle"):
                column.prop(settings, name)
        else:
            for name in ("fov", "near", "far", "edge_tolerance"):
                column.prop(settings, name)
        layout.prop(settings, "invert")
        layout.prop(settings, "matte_mode")
        if settings.matte_mode == "CUT":
            layout.prop(settings, "matte_threshold")
        if settings.projection == "RELIEF":
            layout.prop(settings, "plain_mesh")
        layout.operator("genpercept.build_relief", icon="MOD_DISPLACE")
        layout.operator("genpercept.bake_relief", icon="MESH_DATA")


CLASSES = (GENPERCEPT_AP_preferences, GenPerceptSettings, GENPERCEPT_OT_build_relief, GENPERCEPT_OT_bake_relief,
           GENPERCEPT_OT_check_setup, GENPERCEPT_PT_relief)
_register, _unregister = bpy.utils.register_classes_factory(CLASSES)


def register():
    _register()
    bpy.types.Scene.genpercept = PointerProperty(type=GenPerceptSettings)


def unregister():
    del bpy.types.Scene.genpercept
    _unregister()
