"""Model weights on disk: safetensors only (single file or shards), loaded strictly; never a pickle."""

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import GenPerceptError
from .folders import PICKLE_SUFFIXES, SHARD_INDEX_NAME, WEIGHTS_NAME, read_json


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a diffusers model folder, from safetensors (single file or shards) only."""
    single, index = folder / WEIGHTS_NAME, folder / SHARD_INDEX_NAME
    if single.is_file():
        files = [single]
    elif index.is_file():
        files = sorted({_inside(folder, shard) for shard in _weight_map(index).values()})
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


def _weight_map(index: Path) -> dict:
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise GenPerceptError(f"{index} has no weight_map of file names; re-download the model")
    return weight_map


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing names that lead out of the folder (a shard index is data from a download)."""
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise GenPerceptError(f"the shard index in {folder} names {name!r}, outside the model folder; the download "
                              "is damaged or hostile: delete it")
    return path


MAX_CONFIG_SIZE = 100_000  # channels, sizes: the largest in released configs is a few thousand
MAX_LAYER_COUNT = 100  # layers per block and the like (released: 1-10)


def _implausible_size(config: dict) -> str | None:
    """The first size or count in a model config too large to build (even without memory, a count of a billion
    layers is a billion Python objects), as "key = value"; None when all are plausible."""
    for key, value in config.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        limit = MAX_LAYER_COUNT if "layers" in key else MAX_CONFIG_SIZE
        for number in values:
            if isinstance(number, int) and not isinstance(number, bool) and number > limit:
                return f"{key} = {value}"
    return None


def load_model(model_class, folder: Path, dtype: torch.dtype, device, in_channels=(4,), adapt=None, ignore=()):
    """Build ``model_class`` from ``folder/config.json`` and load its weights strictly. A UNet must take one of
    ``in_channels`` (GenPercept: the 4-channel photo latent; Marigold's family: 8, photo and prediction latents).
    ``adapt(model)`` changes the built model before loading (e.g. removes layers a variant does without); weights
    whose names start with one of ``ignore`` are left out (layers the variant's files may or may not hold)."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise GenPerceptError(f"{folder} has no config.json; is it a diffusers {model_class.__name__} folder?")
    config = read_json(config_file)
    if not isinstance(config, dict):
        raise GenPerceptError(f"{config_file} must hold a JSON object; re-download the model")
    declared = config.get("_class_name", model_class.__name__)
    if declared != model_class.__name__:
        raise GenPerceptError(f"{config_file} describes a {declared}, expected a {model_class.__name__}")
    if model_class is UNet2DConditionModel and (config.get("in_channels") not in in_channels
                                                 or config.get("out_channels") != 4):
        raise GenPerceptError(
            f"{folder} is a UNet with {config.get('in_channels')} input and {config.get('out_channels')} output "
            f"channels; this model family's UNets take {' or '.join(map(str, in_channels))} and give 4 (is the folder "
            "of another family, or damaged?)"
        )
    implausible = _implausible_size(config)
    if implausible:
        raise GenPerceptError(f"{config_file} asks for {implausible}: no released model is that large; the file is "
                              "damaged or not a model's config, re-download the model")
    state = load_state_dict(folder)
    damaged = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if damaged:
        raise GenPerceptError(f"the weights in {folder} hold NaN or infinite values ({', '.join(damaged[:3])}"
                              f"{', ...' if len(damaged) > 3 else ''}): the file is damaged or the training diverged; "
                              "re-download or retrain it")
    state = {name: t.to(dtype) if t.is_floating_point() else t for name, t in state.items()
             if not (ignore and name.startswith(tuple(ignore)))}
    try:
        with torch.device("meta"):  # built without memory: a config asking for huge layers costs nothing here
            model = model_class.from_config(config)
            model = adapt(model) if adapt else model
    except Exception as exc:  # diffusers raises many kinds for a config it cannot build
        raise GenPerceptError(f"{config_file} is not a valid {model_class.__name__} config ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); re-download the model") from exc
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
