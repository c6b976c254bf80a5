"""The V3 node schemas (ComfyUI >= 0.3.60). Each node translates ComfyUI types and calls operations / models."""

import logging

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import ComfyExtension, io, ui

from genpercept_bundle import GenPerceptError
from genpercept_bundle.choices import FLIP_AVERAGE_CHOICES, MAX_PROCESSING_RESOLUTION, MODEL_DEFAULT
from genpercept_bundle.conventions import DEPTH_COLORMAPS, NORMAL_CONVENTIONS
from genpercept_bundle.map_files import FORMATS
from genpercept_bundle.tasks import DEFAULT_TASKS

from . import operations
from .models import EMBEDDED, check_hub_id, list_models, load_model, register_model_folder, resolve_model

register_model_folder(folder_paths)

ModelType = io.Custom("GENPERCEPT_MODEL")
MapsType = io.Custom("GENPERCEPT_MAPS")
SamplingType = io.Custom("GENPERCEPT_SAMPLING")
# where ComfyUI's own Depth Anything 3, MoGe and background-removal nodes sit, so users find these beside them
LOADERS = "model/loaders"
GEOMETRY = "image/geometry estimation"
MATTING = "image/background removal"
ALIASES = ["genpercept", "diffusion perception", "marigold", "lotus", "e2e-ft", "dmp"]
DEPTH_ALIASES = ["depth", "depth estimation", "monocular depth", "depth map", "zdepth", "disparity", "geometry",
                 "geometry estimation", "controlnet depth", "preprocessor", *ALIASES]
NORMAL_ALIASES = ["normal", "normals", "normal map", "surface normals", "geometry", "geometry estimation",
                  "controlnet normal", "preprocessor", *ALIASES]
MATTE_ALIASES = ["matte", "matting", "alpha matte", "alpha", "background removal", "remove background", "cutout",
                 "mask", "portrait", *ALIASES]

RESOLUTION_TOOLTIP = ("Longest side (pixels) the model sees. -1 = the model's own default (768 for GenPercept; for the "
                      "embedded small model, the size each task was trained at); 0 = the image's native size. No "
                      "padding. The maps always come back at the input size.")
FLIP_TOOLTIP = ("Also predict the mirrored image and average the two: steadier maps for twice the time. auto: the "
                "model's default (embedded model: on; released GenPercept checkpoints: off).")
BATCH_TOOLTIP = "Images per forward pass. Long videos are processed this many frames at a time to bound memory."
STEADY_TOOLTIP = ("For video frames: each frame's map follows the previous one along the optical flow, so depth does "
                  "not flip between near and far from frame to frame. auto: on when the batch looks like consecutive "
                  "frames of one shot, off for unrelated images.")
ALPHA_TOOLTIP = ("For RGBA images (the model sees RGB only): 'over grey' composites them over mid-grey, 'ignore' drops "
                 "the alpha (what lies under transparent pixels shows), 'as matte' (matte node) returns the image's own "
                 "alpha instead of predicting. Opaque and RGB images are not affected.")


def _task_switches():
    return [io.Boolean.Input(task, default=True, tooltip=f"Load the {task} UNet.") for task in DEFAULT_TASKS]


def _device_inputs():
    return [
        io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                       tooltip="auto: ComfyUI's device (GPU if present), offloaded by ComfyUI's memory manager."),
        io.Combo.Input("dtype", options=["auto", "float32", "float16", "bfloat16"], default="auto",
                       tooltip="auto: float16 on GPU, float32 on CPU."),
    ]


def _device(choice):
    return comfy.model_management.get_torch_device() if choice == "auto" else "cpu"


def _progress(total):
    bar = comfy.utils.ProgressBar(total)

    def on_progress(done, _total):
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total)

    return on_progress


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except GenPerceptError as error:  # shown to the user as the node's error, without a traceback
        raise RuntimeError(f"GenPercept: {error}") from None


def _loader_schema(node_id, display_name, description, source):
    """A node that loads a model from ``source`` (an input naming it) with the task switches and device inputs."""
    base = io.String.Input("dmp_base", default="", optional=True,
                           tooltip="DMP checkpoints only: the Stable Diffusion v1.4 its LoRA goes onto, a folder name in "
                                   "models/genpercept/ or a hub id (CompVis/stable-diffusion-v1-4). Empty otherwise.")
    return io.Schema(node_id=node_id, display_name=display_name, category=LOADERS, description=description,
                     search_aliases=["depth model", "normal model", "matting model", *ALIASES],
                     inputs=[source, *_task_switches(), *_device_inputs(), base],
                     outputs=[ModelType.Output(display_name="model")])


def _load(model, depth, normal, matte, device, dtype, dmp_base="", **options):
    tasks = [task for task, wanted in zip(DEFAULT_TASKS, (depth, normal, matte)) if wanted]
    base = None
    if dmp_base.strip():
        base = (_run(check_hub_id, dmp_base) if "/" in dmp_base
                else _run(resolve_model, dmp_base.strip(), folder_paths.get_folder_paths("genpercept")))
    return io.NodeOutput(_run(load_model, model, tasks, _device(device), dtype, base=base, **options))


class GenPerceptModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return _loader_schema(
            "GenPerceptModelLoader", "GenPercept Model Loader",
            "Loads a model folder from models/genpercept (or extra_model_paths.yaml), or the embedded small model: "
            "GenPercept (VAE decoder or DPT head), Marigold (and LCM), E2E-FT, Lotus or DMP. Never downloads. The "
            "switches choose among the tasks the model has (a Marigold depth model has depth only).",
            io.Combo.Input("model", options=list_models(folder_paths.get_folder_paths("genpercept")), default=EMBEDDED,
                           tooltip="A folder in models/genpercept/: GenPercept's layout (unet_depth_v2/, vae/ ...), a "
                                   "diffusers Marigold / E2E-FT / Lotus folder, a DMP LoRA folder; or the embedded "
                                   "model."))

    @classmethod
    def execute(cls, model, depth, normal, matte, device, dtype, dmp_base=""):
        folder = _run(resolve_model, model, folder_paths.get_folder_paths("genpercept"))
        return _load(folder, depth, normal, matte, device, dtype, dmp_base)


class GenPerceptDownloadModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return _loader_schema(
            "GenPerceptDownloadModel", "GenPercept Download Model",
            "Downloads only the files the chosen tasks need from a Hugging Face repo into "
            "models/genpercept/<owner>--<name>, then loads them. Files already there are reused.",
            io.String.Input("repo_id", default="guangkaixu/genpercept-models",
                            tooltip="Hugging Face repo of a supported family, e.g. guangkaixu/genpercept-models, "
                                    "prs-eth/marigold-depth-v1-1, GonzaloMG/marigold-e2e-ft-normals, "
                                    "jingheya/lotus-depth-d-v1-0."))

    @classmethod
    def execute(cls, repo_id, depth, normal, matte, device, dtype, dmp_base=""):
        root = folder_paths.get_folder_paths("genpercept")[0]
        return _load(_run(check_hub_id, repo_id), depth, normal, matte, device, dtype, dmp_base, download_root=root,
                     allow_download=True)


class GenPerceptSampling(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GenPerceptSampling", display_name="GenPercept Sampling", category=GEOMETRY,
            search_aliases=["steps", "ensemble", "seed", "uncertainty", *ALIASES],
            description="Steps, ensemble and seed for models that denoise or start from noise (Marigold, LCM, Lotus-G, "
                        "DMP). Plug into a prediction node's 'sampling' input; GenPercept, E2E-FT and Lotus-D ignore "
                        "steps and refuse ensembles (they are deterministic).",
            inputs=[io.Int.Input("steps", default=0, min=0, max=100,
                                 tooltip="Denoising steps; 0 = the model's default (Marigold v1-1: 4, LCM: 1, DMP: 5)."),
                    io.Int.Input("ensemble_size", default=1, min=1, max=20,
                                 tooltip="Predict this many times from different noise and merge (Marigold's "
                                         "affine-aligned median; normals: the closest to the mean). Above 1 the "
                                         "uncertainty output shows where the members disagree."),
                    io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=True,
                                 tooltip="Seed of the starting noise: the same seed gives the same maps.")],
            outputs=[SamplingType.Output(display_name="sampling")])

    @classmethod
    def execute(cls, steps, ensemble_size, seed):
        from genpercept_bundle.inference.predictor import SamplingOptions

        return io.NodeOutput(SamplingOptions(steps or None, ensemble_size, seed))


def _flip_average_input():
    # Last and optional, so workflows saved before it existed keep their widget values.
    return io.Combo.Input("flip_average", options=list(FLIP_AVERAGE_CHOICES), default="auto", optional=True,
                          tooltip=FLIP_TOOLTIP)


def _prediction_inputs():
    return [
        ModelType.Input("model", tooltip="From GenPercept Model Loader."),
        io.Image.Input("image", tooltip="RGB image batch (video frames welcome)."),
        io.Int.Input("processing_resolution", default=MODEL_DEFAULT, min=MODEL_DEFAULT, max=MAX_PROCESSING_RESOLUTION,
                     step=operations.RESOLUTION_STEP, tooltip=RESOLUTION_TOOLTIP),
        io.Int.Input("batch_size", default=1, min=1, max=64, tooltip=BATCH_TOOLTIP),
    ]


def _prediction_schema(node_id, display_name, description, options, outputs, category=GEOMETRY, aliases=(),
                       alpha_default="over grey", extra=()):
    """A node that predicts one task: model, image, resolution and batch inputs, then ``options``, flip averaging,
    the optional sampling settings, the RGBA handling and ``extra`` inputs (optional inputs go last, so workflows
    saved before them keep their widget values)."""
    sampling = SamplingType.Input("sampling", optional=True,
                                  tooltip="From GenPercept Sampling: steps, ensemble and seed for Marigold-like models.")
    alpha = io.Combo.Input("alpha", options=list(operations.ALPHA_CHOICES if alpha_default == "as matte"
                                                 else operations.ALPHA_CHOICES[:2]),
                           default=alpha_default, optional=True, tooltip=ALPHA_TOOLTIP)
    return io.Schema(node_id=node_id, display_name=display_name, category=category, description=description,
                     search_aliases=list(aliases),
                     inputs=[*_prediction_inputs(), *options, _flip_average_input(), sampling, alpha, *extra],
                     outputs=outputs)


def _steady_input():
    return io.Combo.Input("steady_video", options=list(operations.STEADY_CHOICES), default="auto", optional=True,
                          tooltip=STEADY_TOOLTIP)


def _check_resolution(processing_resolution):
    problem = operations.check_processing_resolution(processing_resolution)
    return True if problem is None else f"GenPercept: {problem}"


def _uncertainty_output():
    return io.Mask.Output(display_name="uncertainty",
                          tooltip="Where an ensemble's members disagree (0 = agree); all 0 without an ensemble.")


def _predict(task, model, image, processing_resolution, batch_size, flip_average, sampling=None, alpha="over grey"):
    warning = operations.size_warning(image)
    if warning:
        logging.warning("GenPercept %s: %s", task, warning)
    return _run(operations.predict, model, image, task, processing_resolution, batch_size, _progress(image.shape[0]),
                flip_average, comfy.model_management.throw_exception_if_processing_interrupted, sampling, alpha)


class GenPerceptDepth(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return _prediction_schema(
            "GenPerceptDepth", "GenPercept Depth",
            "Relative depth at the input size (a disparity-only model, e.g. GenPercept's DPT head or Lotus v2, gives its "
            "disparity). The IMAGE is near = bright, as ControlNet depth models expect.",
            [io.Combo.Input("normalization", options=list(operations.DEPTH_MODES), default="auto",
                            tooltip="auto: 'sequence' for batches, 'per_image' for one image. sequence: frames are "
                                    "aligned to each other and share one range (no video flicker). per_image: "
                                    "full contrast per image. none: the model's own 0..1 values."),
             io.Boolean.Input("invert", default=False,
                              tooltip="Off: near = bright (ControlNet). On: far = bright (Z-depth style).")],
            [io.Image.Output(display_name="depth"), MapsType.Output(display_name="raw_depth"), _uncertainty_output(),
             io.Image.Output(display_name="depth_colored", tooltip="The depth in the chosen colour map (near = warm), "
                                                                  "as the node's preview shows it.")],
            aliases=DEPTH_ALIASES,
            extra=[io.Combo.Input("colormap", options=list(DEPTH_COLORMAPS), default="turbo", optional=True,
                                  tooltip="Colour map of the node's preview and of depth_colored; grey = the "
                                          "ControlNet view."), _steady_input()])

    @classmethod
    def validate_inputs(cls, processing_resolution):
        return _check_resolution(processing_resolution)

    @classmethod
    def execute(cls, model, image, processing_resolution, batch_size, normalization, invert, flip_average="auto",
                sampling=None, alpha="over grey", colormap="turbo", steady_video="auto"):
        maps = _predict("depth", model, image, processing_resolution, batch_size, flip_average, sampling, alpha)
        maps = _run(operations.steady, maps, image, steady_video)
        colored = _run(operations.render_depth_preview, maps, colormap, normalization)
        return io.NodeOutput(_run(operations.render_depth, maps, normalization, invert), maps, maps.uncertainty_mask(),
                             colored, ui=ui.PreviewImage(colored, cls=cls))


class GenPerceptNormals(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return _prediction_schema(
            "GenPerceptNormals", "GenPercept Normals",
            "Camera-space surface normals at the input size, encoded as (n + 1) / 2: red = +X right, "
            "blue = +Z toward the viewer, green = +Y up (OpenGL) or down (DirectX).",
            [io.Combo.Input("convention", options=list(NORMAL_CONVENTIONS), default="opengl",
                            tooltip="opengl: green = up (Blender, glTF, Unity, Substance). directx: green = down "
                                    "(Unreal).")],
            [io.Image.Output(display_name="normals"), MapsType.Output(display_name="raw_normals"),
             _uncertainty_output()],
            aliases=NORMAL_ALIASES, extra=[_steady_input()])

    @classmethod
    def validate_inputs(cls, processing_resolution):
        return _check_resolution(processing_resolution)

    @classmethod
    def execute(cls, model, image, processing_resolution, batch_size, convention, flip_average="auto", sampling=None,
                alpha="over grey", steady_video="auto"):
        maps = _predict("normal", model, image, processing_resolution, batch_size, flip_average, sampling, alpha)
        maps = _run(operations.steady, maps, image, steady_video)
        normals = _run(operations.render_normals, maps, convention)
        return io.NodeOutput(normals, maps, maps.uncertainty_mask(), ui=ui.PreviewImage(normals, cls=cls))


class GenPerceptMatte(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return _prediction_schema(
            "GenPerceptMatte", "GenPercept Matte",
            "Alpha matte as a MASK (1 = foreground) and the foreground as an RGB IMAGE over black (not RGBA). An RGBA "
            "image's own alpha is returned as it is unless 'alpha' says otherwise.", [],
            [io.Mask.Output(display_name="alpha"), io.Image.Output(display_name="foreground"),
             MapsType.Output(display_name="raw_alpha")],
            category=MATTING, aliases=MATTE_ALIASES, alpha_default="as matte")

    @classmethod
    def validate_inputs(cls, processing_resolution):
        return _check_resolution(processing_resolution)

    @classmethod
    def execute(cls, model, image, processing_resolution, batch_size, flip_average="auto", sampling=None,
                alpha="as matte"):
        maps = operations.matte_from_alpha(image) if alpha == "as matte" else None
        if maps is None:
            maps = _predict("matte", model, image, processing_resolution, batch_size, flip_average, sampling, alpha)
        matte, foreground = _run(operations.render_matte, maps, image)
        return io.NodeOutput(matte, foreground, maps, ui=ui.PreviewMask(matte, cls=cls))


class GenPerceptSaveMaps(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GenPerceptSaveMaps", display_name="GenPercept Save Maps", category=GEOMETRY,
            search_aliases=["save depth", "save normals", "save matte", "exr", "16-bit png", "blender", *ALIASES],
            description="Writes full-precision maps to the output folder for compositors and the Blender add-on: "
                        "EXR (float), 16-bit PNG or .npy, one file per frame plus a provenance JSON.",
            inputs=[MapsType.Input("maps", tooltip="A raw_* output of a GenPercept node."),
                    io.String.Input("filename_prefix", default="genpercept/maps",
                                    tooltip="Path under ComfyUI's output folder; files are <prefix>_<frame>_<task>.<ext>."),
                    io.Combo.Input("format", options=sorted(FORMATS), default="exr",
                                   tooltip="exr: float32 values as documented (depth 0 = near, unit normals, alpha). "
                                           "png16: 16-bit, normals encoded (n + 1) / 2. npy: float32 arrays.")],
            outputs=[], is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, filename_prefix, format):
        """Checked before the graph runs, so a bad prefix costs no inference."""
        try:
            operations.output_prefix(folder_paths.get_output_directory(), filename_prefix)
        except GenPerceptError as error:
            return f"GenPercept: {error}"
        return True if format in FORMATS else f"GenPercept: format must be one of {', '.join(FORMATS)}"

    @classmethod
    def execute(cls, maps, filename_prefix, format):
        root = folder_paths.get_output_directory()
        saved = _run(operations.save_maps, maps, root, filename_prefix, format)
        # the previews show in the node and the queue; the map files are listed for API clients (the Blender bridge)
        return io.NodeOutput(ui={"images": operations.output_entries(saved.previews, root),
                                 "genpercept_maps": operations.output_entries(saved.maps, root)})


class GenPerceptExtension(ComfyExtension):
    async def get_node_list(self):
        return [GenPerceptModelLoader, GenPerceptDownloadModel, GenPerceptSampling, GenPerceptDepth, GenPerceptNormals,
                GenPerceptMatte, GenPerceptSaveMaps]


async def comfy_entrypoint():
    return GenPerceptExtension()
