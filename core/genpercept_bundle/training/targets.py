"""Training data in memory: photos at the training size and, per task, the target the UNet learns and its mask.

Targets are in the decoded [-1, 1] range, one per ``Task.target``: "relative_depth" (GenPercept's
2 %/98 % quantile normalisation, sky = far), "unit_vectors" (normals), "fraction" (mattes, masks).
"""

from pathlib import Path

import cv2
import numpy as np
import torch

from ..conventions import mirror_maps
from ..data.dataset import Sample, photo_file, read_sample, read_settings, sample_ids
from ..errors import GenPerceptError
from ..images import load_image
from ..tasks import get_task, task_with_truth


def fit_to_size(image: np.ndarray, width: int, height: int, interpolation) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize to width x height."""
    h, w = image.shape[:2]
    if w * height > h * width:
        crop = round(h * width / height)
        image = image[:, (w - crop) // 2:(w - crop) // 2 + crop]
    else:
        crop = round(w * height / width)
        image = image[(h - crop) // 2:(h - crop) // 2 + crop]
    return cv2.resize(image, (width, height), interpolation=interpolation)


def normalise_depth(depth: np.ndarray, valid: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """GenPercept's scale_shift_depth: 2%/98% quantiles of valid depth -> [-1, 1], clipped; sky = far (1)."""
    values = depth[valid]
    if values.size == 0:
        return np.ones_like(depth)
    low, high = np.quantile(values, [0.02, 0.98])
    mapped = np.clip((depth - low) / max(high - low, 1e-6) * 2.0 - 1.0, -1.0, 1.0)
    return np.where(sky, 1.0, mapped).astype(np.float32)


def _relative_depth(sample: Sample, depth: np.ndarray, width: int, height: int):
    nearest = cv2.INTER_NEAREST
    depth, sky = fit_to_size(depth, width, height, nearest), fit_to_size(sample.sky.astype(np.uint8), width, height, nearest) > 0
    valid = depth > 0
    return normalise_depth(depth, valid, sky)[..., None], valid | sky


def _unit_vectors(sample: Sample, normal: np.ndarray, width: int, height: int):
    normal = fit_to_size(normal, width, height, cv2.INTER_NEAREST)
    return normal, np.linalg.norm(normal, axis=-1) > 0.5


def _fraction(sample: Sample, fraction: np.ndarray, width: int, height: int):
    fraction = fit_to_size(fraction, width, height, cv2.INTER_AREA)
    return (fraction * 2.0 - 1.0)[..., None], np.ones(fraction.shape, bool)


# Task.target -> (sample, its ground truth, width, height) -> (target [H,W,C] in [-1, 1], valid mask [H,W])
TARGETS = {"relative_depth": _relative_depth, "unit_vectors": _unit_vectors, "fraction": _fraction}


def target_of(sample: Sample, task, width: int, height: int):
    """The training target of ``task`` for one sample at width x height, and where it is valid."""
    task = task_with_truth(task, "train")
    truth = getattr(sample, task.truth)
    if truth is None:
        raise GenPerceptError(f"sample {sample.id} has no {task.truth}; {task.name} training needs "
                              f"<id>_{task.truth}.png for every scene")
    return TARGETS[task.target](sample, truth, width, height)


class TrainingSet:
    """A dataset split in memory at the training size: RGB uint8 and, per task, target [N,C,H,W] in [-1, 1]
    and mask [N,1,H,W] (no task: the photos alone)."""

    def __init__(self, root, split, tasks, width: int, height: int, limit: int | None = None):
        if limit is not None and limit < 1:
            raise GenPerceptError(f"the number of training scenes must be at least 1 (got {limit}); "
                                  "leave --scenes out to use them all")
        tasks = [task_with_truth(task, "train").name for task in tasks]
        settings = read_settings(root)
        ids = sample_ids(root, split)[:limit]
        self.photo_files, self.skipped = [], 0
        rgb, targets, masks = [], {t: [] for t in tasks}, {t: [] for t in tasks}
        for sample_id in ids:
            photo = photo_file(root, split, sample_id)
            sample = read_sample(root, split, sample_id, settings) if tasks else Sample(sample_id, load_image(photo))
            if any(getattr(sample, get_task(task).truth) is None for task in tasks):
                self.skipped += 1  # e.g. a photographic backdrop scene: a matte, no depth
                continue
            self.photo_files.append(photo)
            rgb.append(fit_to_size(sample.rgb, width, height, cv2.INTER_AREA))
            for task in tasks:
                target, mask = target_of(sample, task, width, height)
                targets[task].append(target)
                masks[task].append(mask)
        if not rgb:
            truths = ", ".join(f"<id>_{get_task(task).truth}.png" for task in tasks)
            raise GenPerceptError(f"no scene of {Path(root) / split} has {truths}: {', '.join(tasks)} training needs it")
        self.rgb = channels_first(rgb)  # [N,3,H,W] uint8
        self.targets = {t: channels_first(v) for t, v in targets.items()}
        self.masks = {t: torch.from_numpy(np.stack(v))[:, None] for t, v in masks.items()}

    def __len__(self):
        return self.rgb.shape[0]


def channels_first(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def flip_batch(target, mask, flip: torch.Tensor, task):
    """Left-right flip the items [N,C,H,W] where ``flip`` is True, as the maps of mirrored photos."""
    if not flip.any():
        return target, mask
    target, mask = target.clone(), mask.clone()
    target[flip] = mirror_maps(target[flip], get_task(task).mirror, width_axis=-1, channel_axis=1)
    mask[flip] = mask[flip].flip(-1)
    return target, mask


def random_batch(latents, count: int, batch_size: int, generator, processes):
    """A training batch's draw: scene indices, which are mirrored, and their photo latents (from ``latents`` =
    (photos, mirrored photos), [N,4,h,w] each), this process's share of them (``processes``)."""
    photos, mirrored = latents
    index = torch.randint(0, count, (batch_size,), generator=generator)
    flip = torch.rand(batch_size, generator=generator) < 0.5
    index, flip = processes.share(index), processes.share(flip)
    return index, flip, torch.where(flip[:, None, None, None], mirrored[index], photos[index])

