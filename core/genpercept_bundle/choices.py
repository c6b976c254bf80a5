"""The choices every front end offers (command line, ComfyUI, Blender), each with one meaning.

Standard library only. Map formats are in ``map_files.FORMATS``; normal conventions and depth
normalisations in ``conventions``.
"""

from .errors import GenPerceptError

# Flip averaging: also predict the mirrored photo and average (twice the time, steadier maps).
# auto = the model's choice (its settings' flip_average_tasks).
FLIP_AVERAGE_CHOICES = {"auto": None, "on": True, "off": False}

# Processing resolution, the longest side the model sees: a positive number of pixels, NATIVE (the
# photo's own size) or the model's default for each task (None in the Python API; MODEL_DEFAULT in
# front ends whose widgets hold integers only).
NATIVE = 0
MODEL_DEFAULT = -1
MAX_PROCESSING_RESOLUTION = 4096  # beyond this the VAE's activations need tens of GB
MIN_IMAGE_SIDE = 8  # pixels: smaller photos (and maps) hold nothing to perceive or build from


def flip_average_choice(name: str) -> bool | None:
    if name not in FLIP_AVERAGE_CHOICES:
        raise GenPerceptError(f"flip_average must be one of {', '.join(FLIP_AVERAGE_CHOICES)}, got {name!r}")
    return FLIP_AVERAGE_CHOICES[name]


def processing_resolution_choice(value) -> int | None:
    """A front end's processing resolution as the predictor takes it: None (the model's default), 0 (native)
    or a positive size. Accepts None, "default" or -1; "native" or 0; a positive integer (or its digits)."""
    if value is None or value in ("default", MODEL_DEFAULT):
        return None
    if value == "native":
        return NATIVE
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = MODEL_DEFAULT - 1
    if size < NATIVE:
        raise GenPerceptError(f"processing resolution must be a positive number of pixels, 0 or 'native' (the photo's "
                              f"size) or 'default' (the model's), got {value!r}")
    return size
