"""More matting scenes from few subjects, the way matting sets are made: each rendered subject over many backgrounds.

A photographic scene with a subject holds the composite photo and the subject's exact alpha. Its foreground colour
is taken where the subject is opaque and spread into the soft pixels (hair, fur, glass) from the nearby opaque ones,
weighted by alpha, so the old background does not ride along into the new photo; then
``photo = alpha * foreground + (1 - alpha) * background`` over another scene's photo (one without a subject, so
nothing unlabelled stands in it), mirrored at random. Writes only ``<id>_rgb.png`` and ``<id>_alpha.png``: a matte
training set (the other tasks' ground truth would be the old scene's).
"""

from pathlib import Path

import cv2
import numpy as np

from ..atomic_files import write_json
from ..errors import GenPerceptError
from ..images import load_image
from .dataset import FORMAT, Sample, photo_file, read_fraction, read_settings, sample_ids, write_sample

SUBJECT_COVERAGE = 0.01  # mean alpha above which a scene has a subject; below it, it can be a background


def recomposite_subjects(subjects: Path, backgrounds: list[Path], out: Path, copies: int, seed: int = 0,
                         split: str = "train") -> Path:
    """``copies`` new photos per subject scene of ``subjects`` over subject-free scenes of ``backgrounds``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    coverage = {folder: _coverages(folder, split) for folder in {Path(subjects), *map(Path, backgrounds)}}
    subject_ids = [scene_id for scene_id, covered in coverage[Path(subjects)].items() if covered > SUBJECT_COVERAGE]
    background_photos = [(folder, scene_id) for folder in backgrounds
                         for scene_id, covered in coverage[Path(folder)].items() if covered <= SUBJECT_COVERAGE]
    if not subject_ids or not background_photos:
        raise GenPerceptError(f"recompositing needs scenes with a subject ({len(subject_ids)} found in {subjects}) "
                              f"and subject-free backgrounds ({len(background_photos)} found)")
    (out / split).mkdir(parents=True, exist_ok=True)
    depth_settings = {key: read_settings(subjects)[key] for key in ("depth_scale", "zero_depth")}  # mixable with it
    write_json(out / "dataset.json", {**FORMAT, **depth_settings, "recomposited_from": str(Path(subjects).resolve()),
                                      "backgrounds": [str(Path(b).resolve()) for b in backgrounds]})
    for scene_id in subject_ids:
        rgb, alpha = load_image(photo_file(subjects, split, scene_id)), _alpha(subjects, split, scene_id)
        foreground = estimate_foreground(rgb, alpha)
        for copy in range(copies):
            folder, background_id = background_photos[rng.integers(len(background_photos))]
            background = _fit(load_image(photo_file(folder, split, background_id)), rgb.shape[:2], rng)
            new_alpha, subject = (alpha[:, ::-1], foreground[:, ::-1]) if rng.random() < 0.5 else (alpha, foreground)
            photo = new_alpha[..., None] * subject + (1.0 - new_alpha[..., None]) * background.astype(np.float32)
            write_sample(out, split, Sample(f"{scene_id}-{copy}", np.clip(photo, 0, 255).round().astype(np.uint8),
                                            alpha=np.ascontiguousarray(new_alpha)))
    return out


def estimate_foreground(photo: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The subject's own colour [H,W,3] float: the photo where opaque, elsewhere an alpha-weighted average of the
    photo around (over widening neighbourhoods until every soft pixel has opaque neighbours)."""
    photo = photo.astype(np.float32)
    weight = np.where(alpha > 0.95, 1.0, alpha ** 4).astype(np.float32)
    foreground = photo.copy()
    missing = alpha <= 0.95
    for radius in (2, 4, 8, 16, 32, 64):
        size = (2 * radius + 1, 2 * radius + 1)
        total = cv2.blur(weight, size)
        spread = cv2.blur(photo * weight[..., None], size) / np.maximum(total, 1e-6)[..., None]
        ready = missing & (total > 0.05)
        foreground[ready] = spread[ready]
        missing &= ~ready
        if not missing.any():
            break
    return foreground


def _alpha(folder: Path, split: str, scene_id: str) -> np.ndarray | None:
    path = Path(folder) / split / f"{scene_id}_alpha.png"
    return read_fraction(path) if path.is_file() else None


def _coverages(folder: Path, split: str) -> dict[str, float]:
    """Every scene's mean alpha (0 without an alpha file), read once per folder."""
    return {scene_id: 0.0 if (alpha := _alpha(folder, split, scene_id)) is None else float(alpha.mean())
            for scene_id in sample_ids(folder, split)}


def _fit(photo: np.ndarray, shape, rng) -> np.ndarray:
    """A random crop of ``photo`` (at least half of it) resized to ``shape``, mirrored at random."""
    height, width = photo.shape[:2]
    scale = rng.uniform(0.5, 1.0)
    crop_h, crop_w = max(8, int(height * scale)), max(8, int(width * scale))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    crop = photo[top:top + crop_h, left:left + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
