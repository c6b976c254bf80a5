"""Finding, loading and device-managing GenPercept models inside ComfyUI.

Model folders (the released GenPercept layout) live in ``ComfyUI/models/genpercept/``
or any path that ``extra_model_paths.yaml`` adds under the ``genpercept`` key.
"""

import os
from dataclasses import dataclass

from genpercept_bundle import GenPerceptError, GenPerceptPredictor
from genpercept_bundle.models.folders import HUB_ID, is_model_folder, open_model_folder
from genpercept_bundle.tasks import get_task

FOLDER_NAME = "genpercept"
EMBEDDED = "embedded small model (offline default)"
DOWNLOAD_HINT = ("put a model folder into ComfyUI/models/genpercept/ (GenPercept: unet_depth_v2/, vae/ ...; Marigold, "
                 "E2E-FT, Lotus: their diffusers folders; DMP: its LoRA folder), or use the 'GenPercept Download "
                 "Model' node")


def register_model_folder(folder_paths):
    """Add ``models/genpercept`` to ComfyUI's search paths without dropping entries from extra_model_paths.yaml."""
    folder_paths.add_model_folder_path(FOLDER_NAME, os.path.join(folder_paths.models_dir, FOLDER_NAME))


def list_models(search_paths) -> list[str]:
    """The embedded model plus every sub-folder of the search paths that holds a GenPercept model."""
    found = []
    for root in search_paths:
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            folder = os.path.join(root, name)
            if is_model_folder(folder):
                found.append(name)
    return [EMBEDDED, *dict.fromkeys(found)]


def resolve_model(choice: str, search_paths):
    """The folder of a ``list_models`` choice (None for the embedded model): a sub-folder of a search path, never a
    path that leads out of one (a workflow's value is data)."""
    if choice == EMBEDDED:
        return None
    if os.path.basename(os.path.normpath(choice)) != choice or choice in (".", ".."):
        raise GenPerceptError(f"model {choice!r} must be the name of a folder in models/genpercept, not a path")
    for root in search_paths:
        folder = os.path.join(root, choice)
        if os.path.isdir(folder):
            return folder
    raise GenPerceptError(f"model folder {choice!r} not found in {', '.join(search_paths) or 'any models path'}; {DOWNLOAD_HINT}")


def pick_dtype(choice: str, device) -> str:
    """'auto' = float16 on CUDA / MPS, float32 on the CPU."""
    if choice != "auto":
        return choice
    return "float16" if getattr(device, "type", str(device)) in ("cuda", "mps") else "float32"


@dataclass
class GenPerceptModel:
    """The GENPERCEPT_MODEL payload: a predictor and, inside ComfyUI, the ModelPatcher that manages its memory."""

    predictor: GenPerceptPredictor
    patcher: object = None

    @property
    def tasks(self) -> list[str]:
        return self.predictor.loaded_tasks

    def task_for(self, task: str) -> str:
        """The loaded task that answers a node asking for ``task``: depth nodes take a disparity-only model's
        disparity."""
        if task == "depth" and "depth" not in self.tasks and "disparity" in self.tasks:
            return "disparity"
        return task

    def ready(self, task: str) -> GenPerceptPredictor:
        """Load the weights onto the working device (through ComfyUI's memory manager when present)."""
        if task not in self.predictor.loaded_tasks:
            raise GenPerceptError(f"this GenPercept model was loaded without the {task} task: enable '{task}' on the loader node")
        if self.patcher is not None:
            import comfy.model_management

            comfy.model_management.load_models_gpu([self.patcher])
            self.predictor.to(self.patcher.load_device)
        return self.predictor


def load_model(folder, tasks, device, dtype="auto", download_root=None, allow_download=False,
               base=None) -> GenPerceptModel:
    """Load the ``tasks`` a model folder / hub id (None = embedded) has onto ``device`` (a depth switch also loads a
    disparity-only model's disparity) and wrap it for ComfyUI if present. ``base``: DMP's Stable Diffusion base."""
    if not tasks:
        raise GenPerceptError("enable at least one of depth, normal or matte on the loader node")
    model = open_model_folder(folder, [get_task(task) for task in tasks], allow_download, download_root, base)
    predictor = GenPerceptPredictor(model, device=str(device), dtype=pick_dtype(dtype, device))
    for task in model.tasks_for(tasks):
        predictor.load_task(task)
    return GenPerceptModel(predictor, _comfy_patcher(predictor))


def _comfy_patcher(predictor):
    try:
        import comfy.model_management as management
        from comfy.model_patcher import ModelPatcher
    except ImportError:  # outside ComfyUI
        return None
    offload = management.unet_offload_device()
    predictor.to(offload)
    return ModelPatcher(predictor.modules(), load_device=management.get_torch_device(), offload_device=offload)


def check_hub_id(repo_id: str):
    if not HUB_ID.match(repo_id.strip()):
        raise GenPerceptError(f"{repo_id!r} is not a Hugging Face repo id (owner/name), e.g. guangkaixu/genpercept-models")
    return repo_id.strip()
