"""Finding a GenPercept model folder and loading its weights: safetensors only, strictly.

A model folder follows the released layout::

    unet_depth_v2/   config.json + diffusion_pytorch_model.safetensors
    unet_normal_v2/  ...  (one ``unet_<task>_v{1,2}`` per task; a per-task repo has one)
    vae/             config.json + diffusion_pytorch_model.safetensors
    text_encoder/ + tokenizer/        optional, SD2-family
    empty_text_embed.safetensors      optional, our cache of the empty-text embedding
    genpercept_bundle.json            optional, our model settings

``--model`` takes such a folder, a Hugging Face repo id, or nothing for the
embedded default model.
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import GenPerceptError
from .tasks import Task, embedding_kind

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SHARD_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
SETTINGS_NAME = "genpercept_bundle.json"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# The release's own inference constants; our models may override them in genpercept_bundle.json.
RELEASE_SETTINGS = {"default_processing_resolution": 768, "timestep": 1, "flip_average_tasks": []}


def models_dir() -> Path:
    """Where hub models are downloaded to and looked for: $GENPERCEPT_MODELS or the user cache."""
    configured = os.environ.get("GENPERCEPT_MODELS")
    return Path(configured) if configured else Path.home() / ".cache" / "genpercept_bundle" / "models"


@dataclass
class ModelFolder:
    path: Path
    source: str  # what the user asked for: a path, a hub id or "default"
    settings: dict = field(default_factory=dict)

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
        return _with_settings(ModelFolder(DEFAULT_MODEL_DIR, "default"))
    path = Path(model).expanduser()
    if path.is_file():
        kind = "a pickle checkpoint, which is never loaded (it can run code)" if path.suffix in PICKLE_SUFFIXES else "a file"
        raise GenPerceptError(
            f"{path} is {kind}; --model takes a model folder in the GenPercept layout "
            "(unet_<task>_v2/ and vae/ with .safetensors weights) or a Hugging Face repo id"
        )
    if path.is_dir():
        _check_layout(path, str(model))
        return _with_settings(ModelFolder(path, str(model)))
    if HUB_ID.match(str(model)) and not str(model).startswith((".", "~")):
        local = Path(download_root or models_dir()) / str(model).replace("/", "--")
        return _with_settings(ModelFolder(_hub_folder(str(model), local, tasks, allow_download), str(model)))
    raise GenPerceptError(f"model {model!r} is neither an existing folder nor a Hugging Face repo id (owner/name)")


def _with_settings(folder: ModelFolder) -> ModelFolder:
    settings = dict(RELEASE_SETTINGS)
    settings_file = folder.path / SETTINGS_NAME
    if settings_file.is_file():
        settings.update(read_json(settings_file))
    folder.settings = settings
    return folder


def _check_layout(path: Path, source: str):
    if not (path / "vae").is_dir() or not any(path.glob("unet_*")):
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise GenPerceptError(
            f"{source} is not a GenPercept model folder: expected unet_<task>_v2/ and vae/ subfolders "
            f"(as in guangkaixu/genpercept-models), found {found}"
        )


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

        snapshot_download(repo_id, local_dir=local, allow_patterns=needed)
    except Exception as exc:  # offline, unknown repo, gated, disk full: all end the same way for the user
        raise GenPerceptError(
            f"could not download {repo_id} ({type(exc).__name__}); on an offline machine put {expected} "
            f"into {local} (or pass --model with a folder holding them)"
        ) from exc
    if not _has_task_files(local, tasks):
        raise GenPerceptError(f"{repo_id} has no weights for {', '.join(t.name for t in tasks)} in the GenPercept layout")
    return local


def _hub_patterns(tasks) -> list[str]:
    patterns = ["vae/config.json", "vae/*.safetensors", "model_index.json", SETTINGS_NAME]
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


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a diffusers model folder, from safetensors (single file or shards) only."""
    single, index = folder / WEIGHTS_NAME, folder / SHARD_INDEX_NAME
    if single.is_file():
        files = [single]
    elif index.is_file():
        files = sorted({folder / shard for shard in read_json(index)["weight_map"].values()})
    else:
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES] if folder.is_dir() else []
        if pickles:
            raise GenPerceptError(
                f"{folder} holds only pickle weights ({', '.join(pickles)}), which are never loaded because "
                "they can run code; convert them to safetensors (diffusers save_pretrained(..., safe_serialization=True))"
            )
        raise GenPerceptError(f"{folder} has no {WEIGHTS_NAME}")
    state = {}
    for file in files:
        try:
            state.update(load_file(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise GenPerceptError(f"{file} is not a valid safetensors file ({exc}); re-download it") from exc
    return state


def load_model(model_class, folder: Path, dtype: torch.dtype, device):
    """Build ``model_class`` from ``folder/config.json`` and load its weights strictly."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise GenPerceptError(f"{folder} has no config.json; is it a diffusers {model_class.__name__} folder?")
    config = read_json(config_file)
    declared = config.get("_class_name", model_class.__name__)
    if declared != model_class.__name__:
        raise GenPerceptError(f"{config_file} describes a {declared}, expected a {model_class.__name__}")
    if model_class is UNet2DConditionModel and (config.get("in_channels"), config.get("out_channels")) != (4, 4):
        raise GenPerceptError(
            f"{folder} is a UNet with {config.get('in_channels')} input channels; GenPercept UNets take the "
            "4-channel RGB latent only (Marigold-style 8-channel checkpoints are a different method)"
        )
    state = {name: t.to(dtype) if t.is_floating_point() else t for name, t in load_state_dict(folder).items()}
    with torch.device("meta"):
        model = model_class.from_config(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        summary = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
        raise GenPerceptError(f"weights in {folder} do not match its config.json: {summary[:300]}") from exc
    return model.to(device).eval().requires_grad_(False)


def save_model(model, folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model`` as config.json + diffusion_pytorch_model.safetensors (the released layout)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    state = {name: t.detach().to(dtype).contiguous().cpu() for name, t in model.state_dict().items()}
    save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt"})
    return folder


def file_sha256(folder: Path) -> str:
    """sha256 of a model folder's weights file(s), the checkpoint identity in provenance."""
    digest = hashlib.sha256()
    files = [folder / WEIGHTS_NAME] if (folder / WEIGHTS_NAME).is_file() else sorted(folder.glob("*.safetensors"))
    for file in files:
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()
