"""ComfyUI entry point: ComfyUI imports this folder when the repository is cloned into custom_nodes/."""

import importlib.util
import os
import sys

_core = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core")
if _core not in sys.path:  # use the bundled core unless it was pip-installed
    sys.path.append(_core)

if importlib.util.find_spec("comfy_api") is not None:  # inside ComfyUI; elsewhere (tests, pip) nothing to register
    from .comfyui_nodes.nodes import comfy_entrypoint  # noqa: F401
