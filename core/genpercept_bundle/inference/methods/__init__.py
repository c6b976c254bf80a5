"""Methods: how each model family turns a photo latent into a map (models/families.py says which family a folder
is). Each method has ``encode``, ``initial_noise``, ``perceive``, ``decode``, ``modules`` and ``provenance``; see
one_step.py for the contract. A new family is a new module here and a line in ``load_method``."""

from ...errors import GenPerceptError
from .one_step import OneStepPerceiver, encode_image, to_unit_range

__all__ = ["OneStepPerceiver", "encode_image", "load_method", "to_unit_range"]


def load_method(model, task, vae, dtype, device, text_encoder=None, steps=None):
    """The method of ``model``'s family for ``task``, with its networks loaded."""
    kind = model.family.method
    folder = model.unet_folder(task)  # a task the model does not have is refused here, naming what it has
    if kind in ("one-step", "dpt-head") and "_dpt_head" in folder.name:  # GenPercept's DPT-head variant
        from .dpt_head import DPTHeadPerceiver

        return DPTHeadPerceiver.load(model, task, vae, dtype, device, text_encoder)
    if kind == "one-step":
        return OneStepPerceiver.load(model, task, vae, dtype, device, text_encoder)
    if kind == "denoising":
        from .denoising import LatentDenoiser

        return LatentDenoiser.load(model.family, model.path, task, vae, dtype, device, text_encoder, steps)
    if kind == "dmp":
        from .dmp import DMPInterpolator

        return DMPInterpolator.load(model, task, vae, dtype, device, text_encoder, steps)
    raise GenPerceptError(f"{model.family.title} has no method {kind!r} in this version of the bundle")
