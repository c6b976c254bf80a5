"""The model families the bundle runs, and which one a model folder is.

A family fixes the folder layout, the method that turns a photo latent into a map (inference/methods)
and the image processing around it. It is read from the folder alone: GenPercept's ``unet_<task>_v2/``
folders, or a diffusers pipeline's ``model_index.json`` with its scheduler and UNet configs, or a LoRA
file for DMP. Standard library only, so every front end can list and detect families.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import GenPerceptError


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    method: str  # inference/methods: "one-step", "dpt-head", "denoising", "dmp"
    processing: str  # inference/processing.py STYLES: how the photo is resized in and the map out
    licence: str  # of the released weights
    where: str  # hub ids of the released weights
    steps: int | None = None  # default denoising steps; None: one fixed pass
    stochastic: bool = False  # starts from noise: a seed matters, ensembles make sense
    layout: str = "pipeline"  # "genpercept": unet_<task>_v2/ + vae/; "pipeline": a diffusers pipeline folder


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("genpercept", "GenPercept (one step, VAE decoder)", "one-step", "genpercept",
               "non-commercial (GenPercept README; HF LICENSE.txt)", "guangkaixu/genpercept-models", layout="genpercept"),
        Family("genpercept-dpt", "GenPercept (one step, DPT head)", "dpt-head", "genpercept",
               "non-commercial (GenPercept README; HF LICENSE.txt)", "guangkaixu/genpercept-disparity-dpt-head",
               layout="genpercept"),
        Family("marigold", "Marigold (DDIM)", "denoising", "marigold", "OpenRAIL++ (v1-1), Apache-2.0 code",
               "prs-eth/marigold-depth-v1-1, prs-eth/marigold-normals-v1-1, prs-eth/marigold-depth-v1-0", steps=4,
               stochastic=True),
        Family("marigold-lcm", "Marigold LCM", "denoising", "marigold", "OpenRAIL++",
               "prs-eth/marigold-depth-lcm-v1-0", steps=1, stochastic=True),
        Family("e2e-ft", "E2E-FT (one step at t=999, zero noise)", "denoising", "genpercept", "Apache-2.0 code; "
               "weights as their base (OpenRAIL++)", "GonzaloMG/marigold-e2e-ft-depth, GonzaloMG/marigold-e2e-ft-normals, "
               "GonzaloMG/stable-diffusion-e2e-ft-depth, GonzaloMG/stable-diffusion-e2e-ft-normals", steps=1),
        Family("lotus-g", "Lotus-G (one step, x0 prediction)", "denoising", "lotus", "Apache-2.0",
               "jingheya/lotus-depth-g-v1-0, jingheya/lotus-normal-g-v1-1", steps=1, stochastic=True),
        Family("lotus-d", "Lotus-D (one step regression)", "denoising", "lotus", "Apache-2.0",
               "jingheya/lotus-depth-d-v1-0, jingheya/lotus-normal-d-v1-1", steps=1),
        Family("dmp", "DMP (deterministic multi-step, LoRA)", "dmp", "dmp", "Apache-2.0 (LoRA); base SD as licensed",
               "shinying/dmp releases (LoRA over an SD base you supply)", steps=5),
    )
}


DMP_WEIGHTS = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")  # a DMP checkpoint folder holds one


def detect_family(path: Path) -> Family:
    """The family of the model folder ``path``, from its layout and configs; a GenPerceptError naming what was
    found when it is none we know."""
    path = Path(path)
    if (path / "vae").is_dir() and any(p.is_dir() for p in path.glob("unet_*")):
        vae_decoded = [p for p in path.glob("unet_*") if p.is_dir() and "_dpt_head" not in p.name]
        return FAMILIES["genpercept" if vae_decoded else "genpercept-dpt"]
    if any((path / name).is_file() for name in DMP_WEIGHTS) and not (path / "model_index.json").is_file():
        return FAMILIES["dmp"]
    index = path / "model_index.json"
    if index.is_file():
        pipeline = str(read_json(index).get("_class_name", ""))
        scheduler = _config(path / "scheduler" / "scheduler_config.json")
        unet = _config(path / "unet" / "config.json")
        if unet.get("class_embed_type") == "projection":  # Lotus's task switcher; its pipeline names vary
            return FAMILIES["lotus-g" if unet.get("in_channels") == 8 else "lotus-d"]
        if pipeline.startswith("Marigold"):
            return FAMILIES["marigold-lcm" if scheduler.get("_class_name") == "LCMScheduler" else "marigold"]
        if pipeline == "StableDiffusionPipeline" and unet.get("in_channels") == 8:  # how E2E-FT ships
            return FAMILIES["e2e-ft"]
        raise GenPerceptError(f"{path} holds a {pipeline or 'diffusers'} pipeline, which is no family this bundle runs "
                              f"(known: {', '.join(f.title for f in FAMILIES.values())})")
    raise GenPerceptError(
        f"{path} is not a model folder of a known family: expected GenPercept's unet_<task>_v2/ + vae/, or a "
        "diffusers pipeline folder with model_index.json (Marigold, E2E-FT, Lotus), or a DMP checkpoint folder with "
        "pytorch_lora_weights.safetensors; found "
        f"{', '.join(sorted(p.name for p in path.iterdir())[:8]) or 'nothing'}")


def lora_task(path: Path) -> str:
    """The task of a DMP checkpoint folder, which only its name says (``normal-scene100-notext``,
    ``depth-hypersim-notext``)."""
    name = Path(path).resolve().name.lower()
    for word, task in (("normal", "normal"), ("depth", "depth")):
        if word in name:
            return task
    raise GenPerceptError(f"{path} is a DMP checkpoint whose name does not say its task; this bundle runs DMP's depth "
                          "and normal checkpoints: keep the released folder name (e.g. depth-hypersim-notext)")


def pipeline_task(path: Path) -> str:
    """The one task a diffusers pipeline folder predicts: Marigold's ``model_index.json`` says; E2E-FT and Lotus
    say it only in their repository names (``...-normals``, ``lotus-depth-g-v2-1-disparity``), which the folder
    of a download keeps."""
    index = read_json(Path(path) / "model_index.json")
    pipeline, kind = str(index.get("_class_name", "")), str(index.get("prediction_type") or "")
    name = Path(path).resolve().name.lower()
    if "Normals" in pipeline or kind in ("normals", "normal") or (not kind and "normal" in name):
        return "normal"
    if kind == "disparity" or (not kind and "disparity" in name):
        return "disparity"
    return "depth"


def _config(path: Path) -> dict:
    return read_json(path) if path.is_file() else {}


def read_json(path: Path) -> dict:
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise GenPerceptError(f"cannot read {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise GenPerceptError(f"{path} must hold a JSON object")
    return values
