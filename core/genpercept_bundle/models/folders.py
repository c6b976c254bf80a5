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

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import GenPerceptError
from ..tasks import DEFAULT_TASKS, TASKS, Task, embedding_kind, get_task
from .families import DMP_WEIGHTS, FAMILIES, Family, detect_family, lora_task, pipeline_task, read_json
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
    """Whether ``path`` looks like a model folder: GenPercept's vae/ + unet_<task>/, or a diffusers pipeline's
    model_index.json with unet/ and vae/."""
    path = Path(path)
    if any((path / name).is_file() for name in DMP_WEIGHTS):
        return True
    return (path / "vae").is_dir() and (any(p.is_dir() for p in path.glob("unet_*")) or (
        (path / "model_index.json").is_file() and (path / "unet").is_dir()))


@dataclass
class ModelFolder:
    path: Path
    source: str  # what the user asked for: a path, a hub id or "default"
    settings: ModelSettings = field(default_factory=ModelSettings)
    family: Family = FAMILIES["genpercept"]
    base: Path | None = None  # DMP: the Stable Diffusion folder its LoRA goes onto

    @cached_property
    def pipeline_task(self) -> str | None:
        """The one task of a diffusers pipeline folder (Marigold, E2E-FT, Lotus) or a DMP checkpoint; None for
        GenPercept's layout, which holds a UNet per task."""
        if self.family.layout == "genpercept":
            return None
        return lora_task(self.path) if self.family.name == "dmp" else pipeline_task(self.path)

    @property
    def vae_folder(self) -> Path:
        return (self.base or self.path) / "vae"

    def unet_folder(self, task: Task) -> Path:
        """The folder of the weights that make ``task``'s model (for DMP: its LoRA); in GenPercept's layout the
        VAE-decoder UNet is preferred to a DPT-head one (``unet_<task>_dpt_head_v2/``)."""
        if self.pipeline_task is not None:
            if get_task(task).name != self.pipeline_task:
                raise GenPerceptError(f"model {self.source!r} is a {self.family.title} {self.pipeline_task} model; "
                                      f"it cannot predict {get_task(task).name}")
            return self.path if self.family.name == "dmp" else self.path / "unet"
        for name in unet_folder_names(task):
            if (self.path / name).is_dir():
                return self.path / name
        present = sorted(p.name for p in self.path.glob("unet*") if p.is_dir())
        raise GenPerceptError(
            f"model {self.source!r} has no {task.name} UNet: expected a folder "
            f"{' or '.join(task.unet_folders)} in {self.path} (found: {', '.join(present) or 'no unet folders'})"
        )

    @property
    def default_tasks(self) -> list[str]:
        """What the front ends predict when not told: depth, normal and matte where the model has them (the embedded
        model, the GenPercept release), else every task it has (a Marigold or DPT-head model: its one task)."""
        available = self.available_tasks(TASKS.values())
        return [task for task in DEFAULT_TASKS if task in available] or available

    def tasks_for(self, asked) -> list[str]:
        """The ``asked`` tasks this model has, a disparity-only model's disparity standing in for depth (GenPercept's
        DPT head, Lotus v2): what the front ends load when their switches ask for more than a one-task model has.
        A GenPerceptError names what the model has when none of them is there."""
        available = self.available_tasks(TASKS.values())
        asked = [get_task(task).name for task in asked]
        wanted = [task for task in asked if task in available]
        if "depth" in asked and "depth" not in available and "disparity" in available:
            wanted.append("disparity")
        if not wanted:
            raise GenPerceptError(f"{self.family.title} model {self.source!r} has {', '.join(available) or 'no tasks'}, "
                                  f"none of the tasks asked for ({', '.join(asked)})")
        return wanted

    def embedding_kind(self, task: Task) -> str:
        return embedding_kind(self.unet_folder(task).name)

    def available_tasks(self, tasks) -> list[str]:
        if self.pipeline_task is not None:
            return [self.pipeline_task]
        return [t.name for t in tasks if any((self.path / n).is_dir() for n in unet_folder_names(t))]


def unet_folder_names(task: Task) -> list[str]:
    """A task's UNet folders in GenPercept's layout, preferred first: the release's, then their DPT-head variants."""
    return [*task.unet_folders, *dpt_head_folder_names(task)]


def dpt_head_folder_names(task: Task) -> list[str]:
    """``unet_<task>_dpt_head_v2`` (beside a ``dpt_head_*`` folder) for each of the task's release folders."""
    return [name[:-3] + "_dpt_head" + name[-3:] for name in task.unet_folders]


def open_model_folder(model=None, tasks=(), allow_download=True, download_root=None, base=None) -> ModelFolder:
    """Resolve ``model`` (folder, hub id or None for the default) to a ModelFolder.

    Hub ids are looked for, and downloaded to, ``download_root/<owner>--<name>``
    (default: ``models_dir()``). ``base``: for a DMP checkpoint, the Stable Diffusion v1.4 folder (or hub id) its
    LoRA goes onto."""
    folder = _open_model_folder(model, tasks, allow_download, download_root)
    if folder.family.name == "dmp":
        folder.base = _base_folder(base, allow_download, download_root)
    return folder


def _base_folder(base, allow_download, download_root) -> Path:
    if base is None:
        raise GenPerceptError("a DMP checkpoint is a LoRA for Stable Diffusion v1.4: pass its base with --base (a "
                              "diffusers folder with unet/, vae/, scheduler/, text_encoder/ and tokenizer/, or the hub "
                              "id CompVis/stable-diffusion-v1-4)")
    path = Path(base).expanduser()
    if not path.is_dir() and HUB_ID.match(str(base)):
        path = Path(download_root or models_dir()) / str(base).replace("/", "--")
        if not (path / "unet").is_dir():
            if not allow_download:
                raise GenPerceptError(f"{base} is not downloaded: put its unet/, vae/ and scheduler/ into {path}")
            _download(str(base), path, [*_weights_patterns("unet"), *_weights_patterns("vae"),
                                        *_weights_patterns("text_encoder", "model"), "scheduler/scheduler_config.json",
                                        "tokenizer/*"], f"unet/, vae/ and scheduler/ into {path}")
    missing = [name for name in ("unet", "vae", "scheduler") if not (path / name).is_dir()]
    if missing:
        raise GenPerceptError(f"the DMP base {base} has no {', '.join(missing)}/ folder: it must be a diffusers Stable "
                              "Diffusion v1.4 folder (CompVis/stable-diffusion-v1-4)")
    return path


def _open_model_folder(model, tasks, allow_download, download_root) -> ModelFolder:
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
                f"{model} is not a model folder: expected unet_<task>_v2/ and vae/ subfolders (as in "
                "guangkaixu/genpercept-models), or a diffusers pipeline folder with model_index.json, unet/ and vae/ "
                f"(Marigold, E2E-FT, Lotus), or a DMP checkpoint with pytorch_lora_weights.safetensors, found {found}"
            )
        return _with_settings(path, str(model))
    if HUB_ID.match(str(model)) and not str(model).startswith((".", "~")):
        local = Path(download_root or models_dir()) / str(model).replace("/", "--")
        return _with_settings(_hub_folder(str(model), local, tasks, allow_download), str(model))
    raise GenPerceptError(f"model {model!r} is neither an existing folder nor a Hugging Face repo id (owner/name)")


def _with_settings(path: Path, source: str) -> ModelFolder:
    family = detect_family(path)
    settings = ModelSettings.of_folder(path)
    if family.name == "dmp" and not (path / SETTINGS_NAME).is_file():
        settings = ModelSettings(default_processing_resolution=512)  # DMP was trained at 512 x 512
    elif family.layout == "pipeline" and not (path / SETTINGS_NAME).is_file():
        index = read_json(path / "model_index.json")
        settings = ModelSettings(default_processing_resolution=int(index.get("default_processing_resolution") or 768))
    return ModelFolder(path, source, settings, family)


def _hub_folder(repo_id: str, local: Path, tasks, allow_download: bool) -> Path:
    if local.is_dir() and _has_task_files(local, tasks):
        return local
    folders = ["vae"] + [task.unet_folders[0] for task in tasks]
    expected = ", ".join(f"{folder}/config.json + {folder}/{WEIGHTS_NAME}" for folder in folders)
    if not allow_download:
        raise GenPerceptError(f"model {repo_id} is not downloaded: put {expected} into {local}")
    _download(repo_id, local, _hub_patterns(tasks), f"{expected} into {local}")
    if not _has_task_files(local, tasks):  # then the DPT-head variants (genpercept-disparity-dpt-head)
        _download(repo_id, local, _hub_patterns(tasks, dpt_head=True), f"{expected} into {local}")
    if not _has_task_files(local, tasks):
        raise GenPerceptError(f"{repo_id} has no weights for {', '.join(t.name for t in tasks)} in the GenPercept layout")
    return local


def _download(repo_id: str, local: Path, patterns: list[str], what: str):
    """Download the files of ``repo_id`` matching ``patterns`` into ``local``; ``what`` says what to put where when
    the machine is offline."""
    try:
        from huggingface_hub import snapshot_download

        # HF_ENDPOINT (a mirror of the hub) is read here, not when huggingface_hub was first imported
        snapshot_download(repo_id, local_dir=local, allow_patterns=patterns, endpoint=os.environ.get("HF_ENDPOINT"))
    except Exception as exc:  # offline, unknown repo, gated, disk full: all end the same way for the user
        raise GenPerceptError(
            f"could not download {repo_id} ({type(exc).__name__}); on an offline machine put {what}, or use a local "
            "model folder that holds them"
        ) from exc


def _hub_patterns(tasks, dpt_head=False) -> list[str]:
    """What a hub download fetches for ``tasks``: GenPercept's release folders (or, ``dpt_head``, their DPT-head
    variants and heads), or a diffusers pipeline's one-task components; the embedding cache and settings of models
    made with this bundle (like the embedded one) too."""
    patterns = [*_weights_patterns("vae"), "model_index.json", SETTINGS_NAME, EMBEDDING_CACHE_NAME]
    for task in tasks:
        for name in dpt_head_folder_names(task) if dpt_head else task.unet_folders:
            patterns += [f"{name}/config.json", f"{name}/*.safetensors", f"{name}/*.safetensors.index.json"]
        if dpt_head:
            patterns += ["dpt_head_identity/*", f"dpt_head_{task.name}/*"]
    # a diffusers pipeline (Marigold, E2E-FT, Lotus) holds one task; its text encoder gives the empty-text embedding
    patterns += [*_weights_patterns("unet"), *_weights_patterns("text_encoder", "model")]
    return patterns + ["scheduler/scheduler_config.json", "tokenizer/*"]


def _weights_patterns(folder: str, weights: str = "diffusion_pytorch_model") -> list[str]:
    """A diffusers component folder's config and full-precision weights, by name: releases also carry .fp16 variants
    of the same weights, which are not downloaded."""
    return [f"{folder}/config.json", f"{folder}/{weights}.safetensors", f"{folder}/{weights}-*.safetensors",
            f"{folder}/{weights}.safetensors.index.json"]


def _has_task_files(folder: Path, tasks) -> bool:
    def complete(sub):
        return (sub / "config.json").is_file() and any(sub.glob("*.safetensors"))

    if (folder / "model_index.json").is_file() and (folder / "unet").is_dir():
        return complete(folder / "vae") and complete(folder / "unet")
    return complete(folder / "vae") and all(any(complete(folder / n) for n in unet_folder_names(t)) for t in tasks)
