"""GenPercept one-step diffusion perception: depth, surface normals and alpha mattes from photos.

Importing the package costs nothing: the names below load their modules (and torch, diffusers,
Pillow) when first used (PEP 562), so the numpy-only modules (tasks, conventions, map_files,
choices) work where torch is missing, as in Blender, and the command line answers usage errors at once.

Packages by concept (docs/architecture.md): ``models`` (finding, loading, settings), ``inference``
(processing, the method seam, the predictor), ``data`` (dataset layout, synthetic scenes),
``training``, ``evaluation``, ``cli``.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "GenPerceptError": "errors",
    "GenPerceptPredictor": "inference.predictor",
    "Prediction": "inference.predictor",
    "TASKS": "tasks",
    "get_task": "tasks",
    "load_image": "images",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
