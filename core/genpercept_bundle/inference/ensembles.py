"""Test-time ensembles of a stochastic method's maps, with an uncertainty map: diffusers' Marigold ensembling
(affine-invariant alignment solved with BFGS, then the median; normals: the member closest to the mean direction)."""

import torch

from ..errors import GenPerceptError
from ..tasks import Task

ENSEMBLE_TASKS = ("depth", "disparity", "normal")  # what Marigold's ensembling merges; the predictor refuses others


def ensemble_maps(members: torch.Tensor, task: Task, scale_invariant=True, shift_invariant=True, vectors=False):
    """``members`` [E,C,h,w] in [0, 1] -> (the merged map [1,C,h,w] in [0, 1], uncertainty [1,1,h,w]); normals
    given as vectors in [-1, 1] (``vectors``) stay so.

    Depth and disparity uncertainty is the median absolute deviation of the aligned members, in the merged map's
    units; normals' is the mean angle to the mean direction, divided by pi."""
    from diffusers import MarigoldDepthPipeline, MarigoldNormalsPipeline

    if task.unit_vectors:
        normals = members.float() if vectors else members.float() * 2.0 - 1.0
        merged, uncertainty = MarigoldNormalsPipeline.ensemble_normals(normals, True)
        return (merged if vectors else (merged + 1.0) / 2.0), uncertainty
    try:
        return MarigoldDepthPipeline.ensemble_depth(members.float(), scale_invariant, shift_invariant, True)
    except ImportError as exc:  # scipy, for the alignment
        raise GenPerceptError("ensembles of depth maps need scipy: pip install scipy") from exc
