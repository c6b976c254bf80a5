"""Finding a GenPercept model folder: a local folder, a Hugging Face repo id, or the embedded default.

A model folder follows the released layout::

    unet_depth_v2/   config.json + diffusion_pytorch_model.safetensors
    unet_normal_v2/  ...  (one ``unet_<task>_v{1,2}`` per task; a per-task repo has one)
    vae/             config.json + diffusion_pytorch_model.safetensors
    text_encoder/ + tokenizer/        optional, SD2-family
    empty_text_embed.safetensors      optional, our cache of the empty-text embedding
    genpercept_bundle.json            optional, our model settings (settings.py)

``--model`` takes such a folder, a Hugging Face repo id, or nothing for the embedded default
model. Standard library only (huggingface_hub is imported for a download).
"""

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GenPerceptError
from ..tasks import Task, embedding_kind
from .settings import SETTINGS_NAME, ModelSettings

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
EMBEDDING_CACHE_NAME = "empty_text_embed.safetensors"  # the empty-text embedding cache (models/embedding.py)
SHARD_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_model"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def models_dir() -> Path:
    """Where hub models are downloaded to and looked for: $GENPERCEPT_MODELS or the user cache."""
    configured = os.environ.get("GENPERCEPT_MODELS")
    return Path(configured) if configured else Path.home() / ".cache" / "genpercept_bundle" / "models"


def is_model_folder(path) -> bool:
    """Whether ``path`` looks like a model in the released layout: a vae/ and at least one unet_<task>/."""
    path = Path(path)
    return (path / "vae").is_dir() and any(p.is_dir() for p in path.glob("unet_*"))


@dataclass
class ModelFolder:
    path: Path
    source: str  # what the user asked for: a path, a hub id or "default"
    settings: ModelSettings = field(default_factory=ModelSettings)

    def unet_folder(self, task: Task) -> Path:
        for name in task.unet_folders:
            if (self.path / name).is_dir():
                return self.path / name
        present = sorted(p.name for p in self.path.glob("unet*") if p.is_dir())
        raise GenPerceptError(
            f"model {self.source!r} has no {task.name} UNet: expected a folder "
            f"{' or '.join(task.unet_folders)} in {self.path} (found: {', '.join(present) or 'no unet folders'})"
        )

    def embedding_kind(self, task: Task) -> str:
        return embedding_kind(self.unet_folder(task).name)

    def available_tasks(self, tasks) -> list[str]:
        return [t.name for t in tasks if any((self.path / n).is_dir() for n in t.unet_folders)]


def open_model_folder(model=None, tasks=(), allow_download=True, download_root=None) -> ModelFolder:
    """Resolve ``model`` (folder, hub id or None for the default) to a ModelFolder.

    Hub ids are looked for, and downloaded to, ``download_root/<owner>--<name>``
    (default: ``models_dir()``)."""
    if model is None or model == "default":
        if not (DEFAULT_MODEL_DIR / "vae").is_dir():
            raise GenPerceptError(
                f"the embedded default model is missing from {DEFAULT_MODEL_DIR}; "
                "reinstall the bundle or pass --model with a GenPercept model folder"
            )
        return _with_settings(DEFAULT_MODEL_DIR, "default")
    path = Path(model).expanduser()
    if path.is_file():
        kind = "a pickle checkpoint, which is never loaded (it can run code)" if path.suffix in PICKLE_SUFFIXES else "a file"
        raise GenPerceptError(
            f"{path} is {kind}; --model takes a model folder in the GenPercept layout "
            "(unet_<task>_v2/ and vae/ with .safetensors weights) or a Hugging Face repo id"
        )
    if path.is_dir():
        if not is_model_folder(path):
            found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
            raise GenPerceptError(
                f"{model} is not a GenPercept model folder: expected unet_<task>_v2/ and vae/ subfolders "
                f"(as in guangkaixu/genpercept-models), found {found}"
            )
        return _with_settings(path, str(model))
    if HUB_ID.match(str(model)) and not str(model).startswith((".", "~")):
        local = Path(download_root or models_dir()) / str(model).replace("/", "--")
        return _with_settings(_hub_folder(str(model), local, tasks, allow_download), str(model))
    raise GenPerceptError(f"model {model!r} is neither an existing folder nor a Hugging Face repo id (owner/name)")


def _with_settings(path: Path, source: str) -> ModelFolder:
    return ModelFolder(path, source, ModelSettings.of_folder(path))


def _hub_folder(repo_id: str, local: Path, tasks, allow_download: bool) -> Path:
    needed = _hub_patterns(tasks)
    if local.is_dir() and _has_task_files(local, tasks):
        return local
    folders = ["vae"] + [task.unet_folders[0] for task in tasks]
    expected = ", ".join(f"{folder}/config.json + {folder}/{WEIGHTS_NAME}" for folder in folders)
    if not allow_download:
        raise GenPerceptError(f"model {repo_id} is not downloaded: put {expected} into {local}")
    try:
        from huggingface_hub import snapshot_download

        # HF_ENDPOINT (a mirror of the hub) is read here, not when huggingface_hub was first imported
        snapshot_download(repo_id, local_dir=local, allow_patterns=needed, endpoint=os.environ.get("HF_ENDPOINT"))
    except Exception as exc:  # offline, unknown repo, gated, disk full: all end the same way for the user
        raise GenPerceptError(
            f"could not download {repo_id} ({type(exc).__name__}); on an offline machine put {expected} "
            f"into {local}, or use a local model folder that holds them"
        ) from exc
    if not _has_task_files(local, tasks):
        raise GenPerceptError(f"{repo_id} has no weights for {', '.join(t.name for t in tasks)} in the GenPercept layout")
    return local


def _hub_patterns(tasks) -> list[str]:
    # the embedding cache too: models made with this bundle (like the embedded one) carry theirs
    patterns = ["vae/config.json", "vae/*.safetensors", "model_index.json", SETTINGS_NAME, EMBEDDING_CACHE_NAME]
    for task in tasks:
        for name in task.unet_folders:
            patterns += [f"{name}/config.json", f"{name}/*.safetensors", f"{name}/*.safetensors.index.json"]
    return patterns


def _has_task_files(folder: Path, tasks) -> bool:
    def complete(sub):
        return (sub / "config.json").is_file() and any(sub.glob("*.safetensors"))

    return complete(folder / "vae") and all(any(complete(folder / n) for n in t.unet_folders) for t in tasks)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise GenPerceptError(f"cannot read {path}: {exc}") from exc
