"""Getting depth, normal and matte maps into numpy: from files, or by running the GenPercept predictor.

Conventions (the bundle's): depth [H,W] in [0,1] with 0 = near; normals [H,W,3] unit vectors,
+X right, +Y up, +Z toward the viewer; matte [H,W] alpha, 1 = foreground. Row 0 is the image top.
"""

import os
import subprocess

import numpy as np
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.map_files import find_maps as find_saved_maps
from genpercept_bundle.map_files import map_path, read_map


class MapError(Exception):
    """A problem the user can fix; the operator reports its message in Blender's UI."""


def load_map(path: str, task: str) -> np.ndarray:
    """A map file (the CLI's or ComfyUI's: EXR, 16-bit PNG or .npy) in the bundle's convention for ``task``, read by
    the core's map-file contract with Blender's own image reader."""
    try:
        return read_map(os.path.abspath(bpy_path(str(path))), task, pixels=load_image_pixels)
    except GenPerceptError as error:
        raise MapError(str(error)) from error


def find_maps(photo: str) -> dict:
    """The maps saved for ``photo`` beside it, by task (the core's ``find_maps``)."""
    return {task: str(path) for task, path in find_saved_maps(photo).items()}


def load_image_pixels(path, colorspace: str = "Non-Color") -> np.ndarray:
    """Any image Blender reads, as float RGBA [H,W,4] with row 0 at the top (Blender stores bottom-up)."""
    import bpy

    try:
        image = bpy.data.images.load(str(path), check_existing=False)
    except RuntimeError as error:
        raise MapError(f"cannot read {path} as an image: {error}") from error
    try:
        image.colorspace_settings.name = colorspace
        width, height = image.size
        if width == 0 or height == 0:
            raise MapError(f"cannot read {path} as an image: it has no pixels (corrupt or unsupported file?)")
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1].copy()


def bpy_path(path: str) -> str:
    try:
        import bpy

        return bpy.path.abspath(path)
    except ImportError:
        return path


# ---------------------------------------------------------------- running the predictor


def bundle_in_process() -> bool:
    """True when the GenPercept bundle (and torch) import in Blender's own Python."""
    try:
        import genpercept_bundle  # noqa: F401
    except Exception:  # ImportError, or a torch that fails to load inside Blender
        return False
    return True


_PREDICTORS = {}


class Cancelled(Exception):
    """The user pressed Esc."""


def model_tasks(model: str, tasks, base: str = "") -> list[str]:
    """The ``tasks`` the model has (a Marigold depth model: depth only; a disparity-only model: its disparity, which
    ``relief_maps`` turns into the depth a relief needs)."""
    from genpercept_bundle.models.folders import open_model_folder

    try:
        return open_model_folder(model or None, [], allow_download=False, base=base or None).tasks_for(tasks)
    except GenPerceptError as error:
        raise MapError(str(error)) from error


def relief_maps(predicted: dict) -> dict:
    """Maps as the relief builder takes them: a disparity map (1 = near) becomes depth-ordered heights (0 = near).
    Not metric depth, but the same near-to-far order, which is what a relief shows."""
    if "depth" not in predicted and "disparity" in predicted:
        predicted = {**predicted, "depth": 1.0 - predicted["disparity"]}
        del predicted["disparity"]
    return predicted


def loaded_predictor(model: str, tasks, base: str = ""):
    """The bundle's predictor of ``model`` for ``tasks``, loaded once and kept while they stay the same (raises the
    bundle's GenPerceptError)."""
    from genpercept_bundle import GenPerceptPredictor

    key = (model or None, tuple(tasks), base)
    if key not in _PREDICTORS:
        _PREDICTORS.clear()
        _PREDICTORS[key] = GenPerceptPredictor.from_pretrained(model or None, list(tasks), device="auto",
                                                               base=base or None)
    return _PREDICTORS[key]


def predict_in_process(photo: str, tasks, model: str = "", cancel=None, base: str = "", on_block=None):
    """Maps of ``photo`` by the bundle inside Blender, and each task's provenance. ``cancel`` (a threading.Event)
    stops it before the next network block, so Esc takes effect within a block's time; ``on_block(task_index)`` is
    called before every block (progress). ``base``: a DMP model's Stable Diffusion folder."""
    from genpercept_bundle import load_image

    current = {"task": 0}

    def check_interrupt():
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if on_block is not None:
            on_block(current["task"])

    try:
        predictor = loaded_predictor(model, tasks, base)
        rgb = load_image(photo)
        predicted, provenance = {}, {}
        for index, (task, prediction) in enumerate(predictor.iter_predictions(rgb, tasks,
                                                                              check_interrupt=check_interrupt)):
            predicted[task], provenance[task] = prediction.maps[0], prediction.provenance
            current["task"] = index + 1
            check_interrupt()  # finishing a task's full-size maps runs no network blocks
        return relief_maps(predicted), provenance
    except GenPerceptError as error:
        raise MapError(str(error)) from error


def predictor_command(python: str, photo: str, tasks, out_dir: str, model: str = "", base: str = "",
                      format: str = "npy") -> list[str]:
    command = [python, "-m", "genpercept_bundle.cli", "predict", "--task", *tasks, "--format", format,
               "--no-preview", "--out", out_dir]
    command += (["--model", model] if model else []) + (["--base", base] if base else [])
    return command + ["--", photo]  # a photo named -x is not an option


def start_external(python: str, photo: str, tasks, out_dir: str, model: str = "", base: str = ""):
    """Start the predictor in the user's external Python, writing EXR maps into ``out_dir``; returns the process."""
    if not python or not os.path.isfile(python):
        raise MapError("set the external Python in the add-on preferences (a Python with the GenPercept bundle installed)")
    os.makedirs(out_dir, exist_ok=True)
    command = predictor_command(python, photo, tasks, out_dir, model, base, format="exr")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_external(process, out_dir: str, photo: str, tasks) -> dict:
    """The maps the external predictor wrote into ``out_dir`` (its sidecars record their provenance)."""
    _, errors = process.communicate()
    if process.returncode != 0:
        reason = ([line for line in errors.strip().splitlines() if "error" in line.lower()]
                  or errors.strip().splitlines())
        raise MapError(f"the predictor failed: {reason[-1] if reason else 'exit code ' + str(process.returncode)}")
    stem = os.path.splitext(os.path.basename(photo))[0]
    return relief_maps({task: load_map(map_path(out_dir, stem, task, "exr"), task) for task in tasks})


def check_external_python(python: str) -> str:
    """A one-line verdict on the configured external Python, for the preferences' Check button."""
    if not python:
        return "no external Python set; the bundle must then be importable inside Blender"
    if not os.path.isfile(python):
        return f"not found: {python}"
    probe = [python, "-c", "import genpercept_bundle, torch; print(genpercept_bundle.__version__, torch.__version__)"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot run {python}: {error}"
    if result.returncode != 0:
        return f"{python} cannot import the GenPercept bundle: pip install it there ({result.stderr.strip().splitlines()[-1]})"
    bundle, torch = result.stdout.split()
    return f"OK: GenPercept bundle {bundle}, torch {torch}"

