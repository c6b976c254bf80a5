"""The add-on's operators. Every setting is an operator property, so the redo panel (Adjust Last Operation),
presets and scripts work as for Blender's own importers; the work is in plain functions (relief, material,
export, kept_maps) the operators call."""

import itertools
import os
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper
from genpercept_bundle.batch.frames import VIDEO_SUFFIXES
from genpercept_bundle.choices import MIN_IMAGE_SIDE
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.inference.steady_sequence import DEFAULT_STRENGTH as DEFAULT_STEADINESS
from genpercept_bundle.models.folders import is_model_folder
from genpercept_bundle.photo_camera import DEFAULT_FOV_DEGREES, field_of_view, suggested_near_far
from genpercept_bundle.relief_heights import (COMPRESSION_HELP, coverage, grid_shape, relief_heights, resample,
                                              sequence_heights)

from . import kept_maps, maps
from .export import HEIGHT_MAP_FORMATS, MESH_FORMATS, export_height_map, export_mesh
from .material import relief_material
from .moving_relief import (drive_frame, height_sequence, heights_folder, play_frames, set_scene_frames,
                            write_height_frames)
from .prediction import PredictionJob
from .relief import (bake, evaluated_face_count, float_image, orthographic_relief, perspective_relief, relief_modifier,
                     relief_object)
from .sequence_prediction import SequencePredictionJob

PHOTO_FILTER = "*.jpg;*.jpeg;*.png;*.tif;*.tiff;*.bmp;*.webp"
MOVIE_FILTER = ";".join(f"*{suffix}" for suffix in sorted(VIDEO_SUFFIXES))
MIN_FACE_SHARE = 0.02  # a build keeping less of its grid than this is cancelled: nothing useful would be left
MIN_MATTE_SHARE = 0.02  # a matte covering less of the photo than this is not used for alpha


def preferences(context):
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def model_settings(context) -> tuple[str, str, str]:
    """(model folder, external Python, DMP base) from the preferences, as absolute paths ('' when unset)."""
    prefs = preferences(context)

    def path(name):
        value = getattr(prefs, name, "") if prefs else ""
        return bpy.path.abspath(value) if value else ""

    return path("model_folder"), path("python_path"), path("dmp_base")


def comfyui_server(context) -> tuple[str, str]:
    """(ComfyUI address, the model there) from the preferences; ('', '') = predict on this computer."""
    prefs = preferences(context)
    url = (getattr(prefs, "comfyui_url", "") or "").strip() if prefs else ""
    return (url, getattr(prefs, "comfyui_model", "") or "") if url else ("", "")


def millimetres(context, value_mm: float) -> float:
    """A length in millimetres as scene units."""
    units = context.scene.unit_settings
    metres_per_unit = units.scale_length if units.system != "NONE" else 1.0
    return value_mm * 0.001 / metres_per_unit


class MapSource:
    """Where the maps come from: the photo (predicted, kept) or existing map files."""

    filepath: StringProperty(name="Photo", subtype="FILE_PATH", options={"SKIP_SAVE"},
                             description="The photo (colour, UVs, maps)")
    filter_glob: StringProperty(default=PHOTO_FILTER, options={"HIDDEN"})
    source: EnumProperty(name="Maps", items=[
        ("PHOTO", "Predict from photo", "Predict depth, normals (and the matte when used) from the photo; the maps "
                                        "are kept and reused until the photo or the model changes"),
        ("FILES", "Existing maps", "Depth / normal / matte files from the CLI or ComfyUI (EXR, 16-bit PNG, .npy); "
                                   "empty: <photo>_depth.* etc. beside the photo")])
    depth_file: StringProperty(name="Depth", subtype="FILE_PATH", description="Depth map, 0 = near")
    normal_file: StringProperty(name="Normals", subtype="FILE_PATH", description="Normal map (optional)")
    matte_file: StringProperty(name="Matte", subtype="FILE_PATH", description="Alpha matte (optional)")
    matte_mode: EnumProperty(name="Matte", default="NONE", items=[
        ("NONE", "Ignore", "Do not use the matte"),
        ("ALPHA", "Material alpha", "Keep the geometry; the matte drives the material's alpha (not used when it "
                                    "covers under 2 % of the photo)"),
        ("CUT", "Cut out", "Delete faces outside the matte (a solid drops to its base there instead)")])
    matte_threshold: FloatProperty(name="Matte threshold", default=0.5, min=0.0, max=1.0)

    def photo(self) -> str:
        return bpy.path.abspath(self.filepath) if self.filepath else ""

    def wanted_tasks(self) -> list[str]:
        return ["depth", "normal"] + (["matte"] if self.matte_mode != "NONE" else [])

    def choose_photo(self, context):
        """invoke: the file browser (then execute), unless the photo or the map files are already set."""
        if self.source == "PHOTO" and not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def kept_folder(self, context):
        model, _, base = model_settings(context)
        server, server_model = comfyui_server(context)
        if server:  # maps of a ComfyUI server's model are kept apart from this computer's
            model, base = f"ComfyUI {server} {server_model}", ""
        return kept_maps.folder_for(self.photo(), model, base)

    def relief_name(self) -> str:
        return Path(self.filepath or self.depth_file).stem or "relief"

    def check_photo(self):
        photo = self.photo()
        if self.source == "PHOTO" and not (photo and os.path.isfile(photo)):
            raise maps.MapError(f"choose a photo first (not found: {photo or 'nothing set'})")

    def read_maps(self, context) -> dict:
        """The maps (synchronously): map files, or the photo's kept maps, predicting those not kept."""
        if self.source == "FILES":
            return self._read_files()
        self.check_photo()
        folder, wanted = self.kept_folder(context), self.wanted_tasks()
        found = kept_maps.kept(folder, self.photo(), wanted)
        if "depth" not in found or len(found) < len(wanted):
            model, python, base = model_settings(context)
            missing = [task for task in wanted if task not in found]
            found.update(PredictionJob(self.photo(), missing, folder, model, python, base,
                                       comfyui_server(context)).wait())
        return found

    def _read_files(self) -> dict:
        photo = self.photo()
        found = maps.find_maps(photo) if photo else {}
        paths = {task: getattr(self, f"{task}_file") or found.get(task) for task in ("depth", "normal", "matte")}
        if not paths["depth"]:
            raise maps.MapError("choose a depth map (EXR, 16-bit PNG or .npy), or a photo with <photo>_depth.* beside it")
        loaded = {"depth": maps.load_map(paths["depth"], "depth")}
        if paths["normal"]:
            loaded["normal"] = maps.load_map(paths["normal"], "normal")
        if paths["matte"] and self.matte_mode != "NONE":
            loaded["matte"] = maps.load_map(paths["matte"], "matte")
        return loaded

    def map_files(self, context) -> dict:
        """The files the material can use directly (kept EXR maps), by task."""
        if self.source != "PHOTO":
            return {}
        folder = self.kept_folder(context)
        return {task: path for task in ("normal", "matte") if (path := kept_maps.file_of(folder, self.photo(), task))}


class ReliefHeights:
    """How a depth map becomes heights: resolution, size in millimetres, depth compression, smoothing."""

    resolution: IntProperty(name="Resolution", default=512, min=8, max=4096,
                            description="Vertices along the longest side; the photo's aspect is kept and every "
                                        "vertex averages the full-resolution depth under it")
    width_mm: FloatProperty(name="Width (mm)", default=100.0, min=1.0, soft_max=2000.0,
                            description="Relief width in millimetres")
    height_mm: FloatProperty(name="Relief height (mm)", default=15.0, min=0.0, soft_max=200.0,
                             description="From the farthest to the nearest point, in millimetres")
    invert: BoolProperty(name="Invert", default=False,
                         description="The map is near = bright (disparity-style) instead of depth (0 = near)")
    compression: EnumProperty(name="Depth compression", default="NONE", items=[
        (name.upper(), name.capitalize() if name != "gradient" else "Bas-relief", COMPRESSION_HELP[name])
        for name in COMPRESSION_HELP])
    compression_strength: FloatProperty(name="Strength", default=1.0, min=0.0, soft_max=8.0,
                                        description="How strongly the depth is compressed")
    smoothing: FloatProperty(name="Smoothing (%)", default=0.0, min=0.0, soft_max=5.0,
                             description="Blur the heights by this percentage of the longest side")

    def draw_heights(self, column):
        column.prop(self, "invert")
        column.prop(self, "compression")
        if self.compression != "NONE":
            column.prop(self, "compression_strength")
        column.prop(self, "smoothing")


class ReliefShape(ReliefHeights):
    """ReliefHeights, and the fine shape the predicted normals add."""

    detail: FloatProperty(name="Detail from normals", default=0.0, min=0.0, soft_max=4.0,
                          description="Add the fine shape the predicted normals show (0 = off)")

    def heights(self, context, depth, normals=None):
        rows, columns = grid_shape(*depth.shape, self.resolution)
        width = millimetres(context, self.width_mm)
        cell_size = width / max(columns - 1, 1) / max(millimetres(context, self.height_mm), 1e-9)
        return relief_heights(depth, rows, columns, self.invert, self.compression.lower(), self.compression_strength,
                              self.smoothing / 100.0, normals if self.detail else None, self.detail, cell_size)


class ReliefBody:
    """An open sheet with steep faces cut, or a closed solid."""

    solid: BoolProperty(name="Closed solid", default=False,
                        description="Side walls down to a flat base: one watertight piece for printing and milling; "
                                    "the scene's length unit becomes the millimetre")
    base_mm: FloatProperty(name="Base (mm)", default=3.0, min=0.1, soft_max=50.0,
                           description="Closed solid: thickness under the relief's lowest point")
    edge_angle: FloatProperty(name="Edge cut angle", default=80.0, min=0.0, max=90.0,
                              description="Relief: faces steeper than this are cut (90 keeps all)")

    def draw_body(self, column):
        column.prop(self, "solid")
        if self.solid:
            column.prop(self, "base_mm")
        else:
            column.prop(self, "edge_angle")

    def relief_sizes(self, context) -> dict:
        """The relief modifier's size inputs in scene units (a solid first makes the millimetre the scene's unit)."""
        if self.solid:
            use_millimetres(context)
        return {"height": millimetres(context, self.height_mm), "width": millimetres(context, self.width_mm),
                "base": millimetres(context, self.base_mm), "solid": self.solid, "edge_angle": self.edge_angle}

    def check_faces_left(self, obj, rows, columns, cut_by_matte=False):
        """Remove ``obj`` and raise MapError when the cuts left almost none of its grid's faces."""
        grid_faces = (rows - 1) * (columns - 1)
        faces = evaluated_face_count(obj)
        if faces < MIN_FACE_SHARE * grid_faces:
            remove_relief(obj)
            reason = "the matte cut" if cut_by_matte else f"the edge cut angle ({self.edge_angle:g}°)"
            raise maps.MapError(f"{reason} left {faces} of {grid_faces} faces, so nothing was built: "
                                + ("lower the matte threshold or set Matte to Ignore" if cut_by_matte else
                                   "raise the edge cut angle (90 keeps every face)"))


class BackgroundPrediction:
    """Runs a prediction job beside the UI (interactive runs): a progress bar and status line, Esc cancels; when the
    job has finished, the operator's ``prediction_done(context, result)`` builds."""

    _job = None
    _timer = None

    def run_beside_ui(self, context, job):
        self._job = job
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        self._status(context, 0.0)
        return {"RUNNING_MODAL"}

    def _status(self, context, progress: float):
        context.window_manager.progress_update(int(progress * 100))
        context.workspace.status_text_set(f"GenPercept: {self._job.status()}: {progress * 100:.0f} % (Esc cancels)")

    def modal(self, context, event):
        if event.type == "ESC":
            self._job.cancel()
            self._finish_modal(context)
            self.report({"WARNING"}, "GenPercept: prediction cancelled")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if not self._job.done():
            self._status(context, self._job.progress)
            return {"RUNNING_MODAL"}
        self._finish_modal(context)
        try:
            self.prediction_done(context, self._job.wait())
        except maps.MapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}

    def _finish_modal(self, context):
        context.window_manager.event_timer_remove(self._timer)
        context.window_manager.progress_end()
        context.workspace.status_text_set(None)


class GENPERCEPT_OT_build_relief(BackgroundPrediction, MapSource, ReliefShape, ReliefBody, bpy.types.Operator):
    """Build a relief (an editable mesh, or a closed solid for printing and milling) from a photo's depth, with the
    photo and its normals as material"""

    bl_idname = "genpercept.build_relief"
    bl_label = "Relief from Photo"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    projection: EnumProperty(name="Projection", items=[
        ("RELIEF", "Relief", "Orthographic bas-relief: height along +Z on a flat grid"),
        ("PERSPECTIVE", "Perspective", "Unproject through a pinhole camera; a matching camera is created")])
    fov_from_photo: BoolProperty(name="Field of view from photo", default=True,
                                 description="Read the field of view from the photo's EXIF focal length when present")
    fov: FloatProperty(name="Field of view", default=DEFAULT_FOV_DEGREES, min=1.0, max=170.0,
                       description="Horizontal field of view of the photo, degrees")
    near_far_from_photo: BoolProperty(name="Suggest near / far", default=True,
                                      description="Near and far distances suggested from the field of view")
    near: FloatProperty(name="Near", default=1.0, min=0.001, unit="LENGTH", description="Distance of the nearest point")
    far: FloatProperty(name="Far", default=3.0, min=0.002, unit="LENGTH", description="Distance of the farthest point")
    edge_tolerance: FloatProperty(name="Edge cut", default=0.04, min=0.0, max=1.0,
                                  description="Perspective: cut faces whose depth span exceeds this fraction of "
                                              "their distance (0 keeps all)")
    plain_mesh: BoolProperty(name="Plain mesh", default=False,
                             description="Relief: apply the Geometry Nodes set-up now; off keeps it editable")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "source")
        if self.source == "FILES":
            for name in ("depth_file", "normal_file", "matte_file"):
                layout.prop(self, name)
        layout.prop(self, "projection", expand=True)
        column = layout.column(heading="Shape")
        column.prop(self, "resolution")
        if self.projection == "RELIEF":
            column.prop(self, "width_mm")
            column.prop(self, "height_mm")
            self.draw_body(column)
        else:
            column.prop(self, "fov_from_photo")
            column.prop(self, "fov")
            column.prop(self, "near_far_from_photo")
            column.prop(self, "near")
            column.prop(self, "far")
            column.prop(self, "edge_tolerance")
        column = layout.column(heading="Depth")
        self.draw_heights(column)
        column.prop(self, "detail")
        layout.prop(self, "matte_mode")
        if self.matte_mode == "CUT":
            layout.prop(self, "matte_threshold")
        if self.projection == "RELIEF":
            layout.prop(self, "plain_mesh")

    def invoke(self, context, event):
        return self.choose_photo(context)

    def execute(self, context):
        try:
            if self._needs_prediction(context) and not bpy.app.background and not self.is_repeat():
                return self._start_prediction(context)
            self._build(context, self.read_maps(context))
        except maps.MapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}

    def _needs_prediction(self, context) -> bool:
        if self.source != "PHOTO":
            return False
        self.check_photo()
        found = kept_maps.kept(self.kept_folder(context), self.photo(), self.wanted_tasks())
        return len(found) < len(self.wanted_tasks())

    # ---------------------------------------------------------- prediction beside the UI (interactive runs)

    def _start_prediction(self, context):
        model, python, base = model_settings(context)
        folder = self.kept_folder(context)
        missing = [t for t in self.wanted_tasks() if t not in kept_maps.kept(folder, self.photo(), self.wanted_tasks())]
        return self.run_beside_ui(context, PredictionJob(self.photo(), missing, folder, model, python, base,
                                                         comfyui_server(context)))

    def prediction_done(self, context, predicted):
        self._build(context, {**kept_maps.kept(self.kept_folder(context), self.photo(), self.wanted_tasks()),
                              **predicted})

    # ---------------------------------------------------------- building

    def _build(self, context, predicted):
        depth = predicted["depth"]
        check_map_sizes(predicted)
        matte = self._usable_matte(predicted.get("matte"))
        name = self.relief_name()
        files = self.map_files(context)
        photo = self.photo() if self.photo() and os.path.isfile(self.photo()) else None
        material = relief_material(name, photo, predicted.get("normal"),
                                   matte if self.matte_mode == "ALPHA" else None, normal_file=files.get("normal"),
                                   matte_file=files.get("matte") if self.matte_mode == "ALPHA" and matte is not None
                                   else None)
        if self.projection == "RELIEF":
            obj, created = self._relief(context, depth, predicted.get("normal"), matte, material), []
        else:
            obj, camera = self._perspective(context, depth, matte, material)
            created = [camera]
        make_active(context, obj)
        for item in created:
            context.collection.objects.link(item)
        self.report({"INFO"}, f"GenPercept: built {obj.name}")

    def _usable_matte(self, matte):
        if matte is None or self.matte_mode == "NONE":
            return None
        share = coverage(matte, self.matte_threshold if self.matte_mode == "CUT" else 0.5)
        if share < MIN_MATTE_SHARE:
            if self.matte_mode == "CUT":
                raise maps.MapError(f"the matte covers {share:.1%} of the photo at threshold {self.matte_threshold:g}: "
                                    "a cut would leave almost nothing. Lower the matte threshold or set Matte to Ignore")
            self.report({"WARNING"}, f"GenPercept: the matte covers only {share:.1%} of the photo; not used as alpha")
            return None
        return matte

    def _relief(self, context, depth, normals, matte, material):
        sizes = self.relief_sizes(context)
        heights = self.heights(context, depth, normals)
        cut = self.matte_mode == "CUT" and matte is not None
        obj = orthographic_relief(self.relief_name(), heights, resample(matte, *heights.shape) if cut else None,
                                  matte_threshold=self.matte_threshold if cut else 0.0, material=material, **sizes)
        context.collection.objects.link(obj)
        self.check_faces_left(obj, *heights.shape, cut_by_matte=cut)
        if self.plain_mesh:
            bake(obj)
        return obj

    def _perspective(self, context, depth, matte, material):
        height, width = depth.shape
        if self.fov_from_photo and self.photo():
            self.fov = field_of_view(self.photo(), width, height) or self.fov
        if self.near_far_from_photo:
            self.near, self.far = suggested_near_far(self.fov)
        if self.far <= self.near:
            raise maps.MapError(f"far ({self.far:g}) must be farther than near ({self.near:g})")
        cut = matte if self.matte_mode == "CUT" else None
        obj, camera = perspective_relief(self.relief_name(), depth, cut,
                                         self.resolution, self.fov, self.near, self.far, self.invert,
                                         self.edge_tolerance, self.matte_threshold if cut is not None else 0.0)
        grid_faces = int(np.prod(np.subtract(grid_shape(height, width, self.resolution), 1)))
        if len(obj.data.polygons) < MIN_FACE_SHARE * grid_faces:
            faces = len(obj.data.polygons)
            remove_relief(obj)
            bpy.data.objects.remove(camera)
            raise maps.MapError(f"the {'matte and edge cuts' if cut is not None else 'edge cut'} left {faces} of "
                                f"{grid_faces} faces, so nothing was built: raise Edge cut (0 keeps all)"
                                + (" or lower the matte threshold" if cut is not None else ""))
        obj.data.materials.append(material)
        context.collection.objects.link(obj)
        context.scene.camera = camera
        context.scene.render.resolution_x, context.scene.render.resolution_y = width, height
        return obj, camera


def check_map_sizes(predicted):
    depth = predicted["depth"]
    if min(depth.shape) < MIN_IMAGE_SIDE:
        raise maps.MapError(f"the depth map is {depth.shape[1]}x{depth.shape[0]} pixels; a relief needs at least "
                            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    for task, values in predicted.items():
        if values.shape[:2] != depth.shape:
            raise maps.MapError(f"the {task} map is {values.shape[1]}x{values.shape[0]} but the depth map is "
                                f"{depth.shape[1]}x{depth.shape[0]}; use maps of the same photo")


def make_active(context, obj):
    """Select just ``obj`` and make it the active object."""
    for item in context.view_layer.objects.selected:
        item.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


def use_millimetres(context):
    """Make the millimetre the scene's length unit (1 unit = 1 mm) when it still has Blender's default metre, so a
    solid's sizes read and export as set."""
    units = context.scene.unit_settings
    if units.system == "METRIC" and units.scale_length == 1.0:
        units.scale_length, units.length_unit = 0.001, "MILLIMETERS"


def remove_relief(obj):
    mesh = obj.data
    bpy.data.objects.remove(obj)
    if mesh.users == 0:
        bpy.data.meshes.remove(mesh)


class GENPERCEPT_OT_build_moving_relief(BackgroundPrediction, ReliefHeights, ReliefBody, bpy.types.Operator):
    """Build one relief whose shape follows an image sequence or a movie along the timeline: depth predicted per
    frame, steady along the motion, with the frames as its colour"""

    bl_idname = "genpercept.build_moving_relief"
    bl_label = "Moving Relief from Frames"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filepath: StringProperty(name="Frames or movie", subtype="FILE_PATH", options={"SKIP_SAVE"},
                             description="A movie, a folder of numbered frames, or one of the frames (its numbered "
                                         "siblings come with it)")
    directory: StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE", "HIDDEN"})
    filter_glob: StringProperty(default=f"{PHOTO_FILTER};{MOVIE_FILTER}", options={"HIDDEN"})
    steadiness: FloatProperty(name="Steadiness", default=DEFAULT_STEADINESS, min=0.0, max=0.95,
                              description="How much of the previous frame's depth a pixel the motion can follow "
                                          "keeps: higher is calmer, lower follows changes sooner (0 = each frame "
                                          "on its own). Changing it predicts again")

    _sequence = None  # the chosen frames (core's FrameSequence), while the operator runs
    _folder = None  # their kept maps

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        column = layout.column(heading="Shape")
        for name in ("resolution", "width_mm", "height_mm"):
            column.prop(self, name)
        self.draw_body(column)
        column = layout.column(heading="Depth")
        self.draw_heights(column)
        column.prop(self, "steadiness")

    def invoke(self, context, event):
        if not self.filepath and not self.files:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context):
        try:
            self._sequence = self.sequence()
            self._folder = self.kept_folder(context)
            if kept_maps.kept_sequence(self._folder, self._sequence.count) is None:
                model, _, base = model_settings(context)
                job = SequencePredictionJob(self._sequence, self._folder, model, base, self.steadiness)
                if not bpy.app.background and not self.is_repeat():
                    return self.run_beside_ui(context, job)
                job.wait()
            self._build(context)
        except maps.MapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}

    def prediction_done(self, context, _depth_files):
        self._build(context)

    def sequence(self):
        """The chosen frames (core's ``FrameSequence``)."""
        selected = [os.path.join(bpy.path.abspath(self.directory), item.name) for item in self.files if item.name]
        path = bpy.path.abspath(self.filepath) if self.filepath else bpy.path.abspath(self.directory)
        if not path and not selected:
            raise maps.MapError("choose a movie, a folder of numbered frames, or the frames themselves")
        try:
            from genpercept_bundle.frame_sequences import open_sequence

            return open_sequence(path, selected)
        except ImportError as error:
            raise maps.MapError(f"reading frames needs Pillow and OpenCV inside Blender ({error})") from error
        except GenPerceptError as error:
            raise maps.MapError(str(error)) from error

    def kept_folder(self, context):
        if comfyui_server(context)[0]:
            raise maps.MapError("a moving relief is predicted on this computer, not on a ComfyUI server: clear the "
                                "ComfyUI server in the add-on preferences to make one")
        model, _, base = model_settings(context)
        return kept_maps.sequence_folder_for(self._sequence, self.steadiness, model, base)

    def _build(self, context):
        sequence, name = self._sequence, self._sequence.name
        depth_files = kept_maps.kept_sequence(self._folder, sequence.count)
        heights = self._heights(context, depth_files)
        settings = {"grid": heights.shape[1:], "invert": self.invert, "compression": self.compression,
                    "strength": self.compression_strength, "smoothing": self.smoothing}
        height_files = write_height_frames(heights_folder(self._folder, settings), heights)
        material = relief_material(name, sequence.first_file)
        play_frames(material, sequence)
        obj = relief_object(name, height_sequence(name, height_files[0]), material=material,
                            **self.relief_sizes(context))
        context.collection.objects.link(obj)
        drive_frame(obj, relief_modifier(obj), sequence.count)
        set_scene_frames(context.scene, sequence)
        self.check_faces_left(obj, *heights.shape[1:])
        make_active(context, obj)
        self.report({"INFO"}, f"GenPercept: built {obj.name}, moving over frames 1 to {sequence.count}")

    def _heights(self, context, depth_files):
        """Every frame's heights [frames, rows, columns] from the kept depth maps, read one at a time."""
        depths = (maps.load_map(str(path), "depth") for path in depth_files)
        first = next(depths)
        check_map_sizes({"depth": first})
        rows, columns = grid_shape(*first.shape, self.resolution)
        try:
            return sequence_heights(itertools.chain([first], depths), rows, columns, self.invert,
                                    self.compression.lower(), self.compression_strength, self.smoothing / 100.0)
        except GenPerceptError as error:
            raise maps.MapError(str(error)) from error


class GENPERCEPT_OT_displace_mesh(MapSource, ReliefShape, bpy.types.Operator):
    """Displace the selected mesh by a photo's depth through its UV map (a Displace modifier), with the photo and
    normals as its material"""

    bl_idname = "genpercept.displace_mesh"
    bl_label = "Displace Selected with Photo Depth"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return obj is not None and obj.type == "MESH"

    def invoke(self, context, event):
        return self.choose_photo(context)

    def execute(self, context):
        obj = context.active_object
        if not obj.data.uv_layers:
            self.report({"ERROR"}, f"{obj.name} has no UV map: the photo is laid on through UVs (unwrap it first)")
            return {"CANCELLED"}
        try:
            predicted = self.read_maps(context)
            check_map_sizes(predicted)
        except maps.MapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        heights = self.heights(context, predicted["depth"], predicted.get("normal"))
        name = self.relief_name()
        texture = bpy.data.textures.new(f"{name} heights", "IMAGE")
        texture.image = float_image(f"{name} heights", heights)
        texture.extension = "EXTEND"
        modifier = obj.modifiers.new("GenPercept Displace", "DISPLACE")
        modifier.texture, modifier.texture_coords = texture, "UV"
        modifier.uv_layer = obj.data.uv_layers.active.name
        modifier.mid_level, modifier.strength = 0.0, millimetres(context, self.height_mm)
        files = self.map_files(context)
        photo = self.photo() if self.photo() and os.path.isfile(self.photo()) else None
        obj.data.materials.clear()
        obj.data.materials.append(relief_material(name, photo, predicted.get("normal"),
                                                  normal_file=files.get("normal")))
        self.report({"INFO"}, f"GenPercept: {obj.name} displaced by {name}'s depth")
        return {"FINISHED"}


class GENPERCEPT_OT_bake_relief(bpy.types.Operator):
    """Turn the active relief's Geometry Nodes set-up into a plain mesh (for sculpting, or tools that read meshes)"""

    bl_idname = "genpercept.bake_relief"
    bl_label = "Make Plain Mesh"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return relief_modifier(context.active_object) is not None

    def execute(self, context):
        bake(context.active_object)
        return {"FINISHED"}


def format_items(formats: dict) -> list[tuple]:
    """Enum items of a {identifier: (label, suffix)} table."""
    return [(key, label, f"{label} ({suffix})") for key, (label, suffix) in formats.items()]


class GENPERCEPT_OT_export_relief(bpy.types.Operator, ExportHelper):
    """Export the active object as shown (modifiers applied): STL and OBJ in millimetres, glTF and USD in metres"""

    bl_idname = "genpercept.export_relief"
    bl_label = "Export Relief"
    filename_ext = ".stl"

    format: EnumProperty(name="Format", items=format_items(MESH_FORMATS))
    filter_glob: StringProperty(default="*.stl;*.obj;*.glb;*.usdc", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and context.active_object.type == "MESH"

    def execute(self, context):
        path = export_mesh(context.active_object, self.filepath, self.format)
        if path.stat().st_size == 0:
            self.report({"ERROR"}, f"the exporter wrote an empty file: {path}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"GenPercept: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return {"FINISHED"}


class GENPERCEPT_OT_export_height_map(bpy.types.Operator, ExportHelper):
    """Export the active relief's heights as a 16-bit PNG or float EXR height map (white = highest) for CNC and
    relief software"""

    bl_idname = "genpercept.export_height_map"
    bl_label = "Export Height Map"
    filename_ext = ".png"

    format: EnumProperty(name="Format", items=format_items(HEIGHT_MAP_FORMATS))
    filter_glob: StringProperty(default="*.png;*.exr", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return relief_modifier(context.active_object) is not None

    def execute(self, context):
        path = export_height_map(context.active_object, self.filepath, self.format)
        self.report({"INFO"}, f"GenPercept: wrote {path}")
        return {"FINISHED"}


class GENPERCEPT_OT_check_setup(bpy.types.Operator):
    """Check the model folder and the external Python, and say what is wrong"""

    bl_idname = "genpercept.check_setup"
    bl_label = "Check Setup"

    def execute(self, context):
        folder, python, _ = model_settings(context)
        server, server_model = comfyui_server(context)
        if server:
            return self._check_server(server, server_model)
        problems = []
        if folder and not is_model_folder(folder):
            problems.append(f"{folder} is no model folder of a supported family (GenPercept's unet_<task>_v2/ + vae/, "
                            "a Marigold / E2E-FT / Lotus diffusers folder, a DMP LoRA folder)")
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


    def _check_server(self, server, model):
        from genpercept_bundle.comfyui_bridge import ComfyUIBridge
        from genpercept_bundle.errors import GenPerceptError

        try:
            models = ComfyUIBridge(server).check()
        except GenPerceptError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if model not in models:
            self.report({"ERROR"}, f"ComfyUI at {server} has no GenPercept model {model!r}; it has: {', '.join(models)}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"OK: predictions run on ComfyUI at {server} with {model}")
        return {"FINISHED"}


OPERATORS = (GENPERCEPT_OT_build_relief, GENPERCEPT_OT_build_moving_relief, GENPERCEPT_OT_displace_mesh,
             GENPERCEPT_OT_bake_relief, GENPERCEPT_OT_export_relief, GENPERCEPT_OT_export_height_map,
             GENPERCEPT_OT_check_setup)
