"""Training-time variety: a random crop (zoom), mirror and colour change of a sample, maps kept aligned.

A crop keeps every ground truth exact: camera-space normals and alpha are per-pixel
facts, and depth targets are re-normalised per image anyway. Colour changes touch
the photo only. ``train_unet`` encodes such copies once and mixes them into its
latent stage (see ``TrainConfig.augmented_copies``).
"""

from dataclasses import replace

import numpy as np

from ..conventions import mirror_maps
from .dataset import Sample

MIN_CROP = 0.6  # the crop's side as a fraction of the photo's, at the photo's aspect ratio


def augment_sample(sample: Sample, rng: np.random.Generator) -> Sample:
    """A randomly cropped, maybe mirrored, colour-changed copy of ``sample`` (same aspect ratio, smaller size)."""
    height, width = sample.rgb.shape[:2]
    side = rng.uniform(MIN_CROP, 1.0)
    crop_h, crop_w = max(1, round(height * side)), max(1, round(width * side))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    mirror = rng.random() < 0.5

    def crop(image, kind="map"):
        if image is None:
            return None
        part = image[top:top + crop_h, left:left + crop_w]
        return np.ascontiguousarray(mirror_maps(part, kind, width_axis=1) if mirror else part)

    return replace(sample, rgb=change_colours(crop(sample.rgb), rng), depth=crop(sample.depth), sky=crop(sample.sky),
                   normal=crop(sample.normal, "normal"), alpha=crop(sample.alpha), mask=crop(sample.mask),
                   intrinsics=None)


def change_colours(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, contrast, saturation, white balance and gamma changes of a uint8 photo, as cameras differ."""
    image = rgb.astype(np.float32) / 255.0
    grey = image.mean(axis=-1, keepdims=True)
    image = grey + (image - grey) * rng.uniform(0.6, 1.4)  # saturation
    image = image * rng.uniform(0.9, 1.1, size=3)  # white balance
    image = (image - image.mean()) * rng.uniform(0.75, 1.25) + image.mean()  # contrast
    image = np.clip(image * rng.uniform(0.7, 1.3), 0.0, 1.0) ** rng.uniform(0.8, 1.25)  # exposure, gamma
    return np.round(image * 255.0).astype(np.uint8)
