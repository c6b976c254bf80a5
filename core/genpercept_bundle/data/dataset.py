"""The on-disk dataset layout that the generator writes and the trainer and evaluator read.

::

    DATASET/
      dataset.json            {"format": "genpercept-dataset", "version": 1,
                               "depth_scale": 1000, "zero_depth": "invalid" | "sky"}
      <split>/                e.g. train/, test/ (any name)
        <id>_rgb.png          8-bit RGB photo (jpg also accepted)
        <id>_depth.png        16-bit depth, metres = value / depth_scale; 0 = invalid (or sky, see zero_depth)
        <id>_normal.png       16-bit RGB, (n + 1) / 2 per channel, camera space +X right, +Y up, +Z toward
                              the viewer (OpenGL); black (0, 0, 0) = invalid
        <id>_alpha.png        8- or 16-bit alpha matte, 1 = foreground
        <id>_mask.png         8- or 16-bit object mask (dichotomous segmentation, task ``dis``), 1 = object
        <id>_camera.json      {"fx", "fy", "cx", "cy"} in pixels

Generated sets also record their ``seed``, ``splits``, each split's ``first_seeds`` and ``size`` in
dataset.json; a scene's <id> is its seed.

Every ground-truth file is optional per sample: a depth-only set is fine for
depth training and evaluation. User data in this layout works everywhere ours does.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..allocator import keep_freed_memory
from ..atomic_files import write_json
from ..conventions import normals_from_raw, normals_to_rgb
from ..errors import GenPerceptError
from ..images import load_image
from ..map_files import to_uint16, write_image

FRACTION_TRUTHS = ("alpha", "mask")  # ground truths stored as 8- or 16-bit fractions in [0, 1]
FORMAT = {"format": "genpercept-dataset", "version": 1, "depth_scale": 1000, "zero_depth": "invalid"}


@dataclass
class Sample:
    id: str
    rgb: np.ndarray  # uint8 [H,W,3]
    depth: np.ndarray | None = None  # float32 metres [H,W], 0 = invalid
    sky: np.ndarray | None = None  # bool [H,W]: zero depth that means "far"
    normal: np.ndarray | None = None  # float32 [H,W,3] unit vectors, zero = invalid
    alpha: np.ndarray | None = None  # float32 [H,W] in [0,1]
    mask: np.ndarray | None = None  # float32 [H,W] in [0,1]
    intrinsics: dict | None = None


def read_settings(root: Path) -> dict:
    settings_file = Path(root) / "dataset.json"
    if not settings_file.is_file():
        raise GenPerceptError(f"{root} is not a dataset folder: it has no dataset.json (see the dataset layout in the README)")
    settings = {**FORMAT, **json.loads(settings_file.read_text())}
    if settings["format"] != FORMAT["format"]:
        raise GenPerceptError(f"{settings_file} is not a genpercept-dataset description")
    return settings


def sample_ids(root: Path, split: str) -> list[str]:
    folder = Path(root) / split
    if not folder.is_dir():
        raise GenPerceptError(f"dataset {root} has no split {split!r} (no folder {folder})")
    ids = sorted({p.name.rsplit("_rgb", 1)[0] for p in folder.glob("*_rgb.*")})
    if not ids:
        raise GenPerceptError(f"{folder} holds no <id>_rgb.png images")
    return ids


def read_sample(root: Path, split: str, sample_id: str, settings: dict | None = None) -> Sample:
    settings = settings or read_settings(root)
    folder = Path(root) / split
    sample = Sample(sample_id, load_image(photo_file(root, split, sample_id)))
    depth_file = folder / f"{sample_id}_depth.png"
    if depth_file.is_file():
        raw = _read_png16(depth_file)
        sample.depth = raw.astype(np.float32) / float(settings["depth_scale"])
        sample.sky = (raw == 0) if settings["zero_depth"] == "sky" else np.zeros(raw.shape, bool)
    normal_file = folder / f"{sample_id}_normal.png"
    if normal_file.is_file():
        encoded = _read_png16(normal_file)[..., ::-1] / np.float32(65535.0)  # OpenCV reads BGR
        sample.normal = normals_from_raw(encoded, black_is_invalid=True)
    for truth in FRACTION_TRUTHS:
        fraction_file = folder / f"{sample_id}_{truth}.png"
        if fraction_file.is_file():
            setattr(sample, truth, read_fraction(fraction_file))
    camera_file = folder / f"{sample_id}_camera.json"
    if camera_file.is_file():
        sample.intrinsics = json.loads(camera_file.read_text())
    return sample


def photo_file(root: Path, split: str, sample_id: str) -> Path:
    folder = Path(root) / split
    for suffix in (".png", ".jpg", ".jpeg"):
        path = folder / f"{sample_id}_rgb{suffix}"
        if path.is_file():
            return path
    return next(folder.glob(f"{sample_id}_rgb.*"))  # globbing lists the folder: ~30 ms per call at 10k scenes


def read_fraction(path: Path) -> np.ndarray:
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None:
        raise GenPerceptError(f"cannot read {path} as an 8- or 16-bit image")
    if values.ndim == 3:
        values = values[..., 0]
    return values.astype(np.float32) / (65535.0 if values.dtype == np.uint16 else 255.0)


def _read_png16(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16:
        raise GenPerceptError(f"{path} must be a 16-bit PNG")
    return data


def write_sample(root: Path, split: str, sample: Sample, settings: dict = FORMAT):
    """Write one sample in the layout above (each file atomically)."""
    folder = Path(root) / split
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / sample.id
    write_image(Path(f"{stem}_rgb.png"), sample.rgb)
    if sample.depth is not None:
        scaled = np.round(sample.depth * settings["depth_scale"])
        write_image(Path(f"{stem}_depth.png"), np.clip(scaled, 0, 65535).astype(np.uint16))
    if sample.normal is not None:
        valid = np.linalg.norm(sample.normal, axis=-1) > 0.5
        encoded = np.maximum(to_uint16(normals_to_rgb(sample.normal)), 1)  # keep black (0,0,0) free to mean "invalid"
        write_image(Path(f"{stem}_normal.png"), np.where(valid[..., None], encoded, 0).astype(np.uint16))
    for truth in FRACTION_TRUTHS:
        if getattr(sample, truth) is not None:
            write_image(Path(f"{stem}_{truth}.png"), to_uint16(getattr(sample, truth)))
    if sample.intrinsics is not None:
        write_json(Path(f"{stem}_camera.json"), {k: float(v) for k, v in sample.intrinsics.items()})


def _render_one(job):
    root, split, seed, width, height, renderer, options = job
    if renderer == "cycles":
        from .photographic.scenes import render_dataset_scene

        frame = render_dataset_scene(seed, split, (width, height), **options)
    else:
        from .synthetic import random_scene, render

        frame = render(random_scene(seed), height=height, width=width)
    sample = Sample(f"{seed:06d}", frame["rgb"], frame["depth"], normal=frame["normal"], alpha=frame["alpha"],
                    intrinsics=frame["intrinsics"])
    write_sample(root, split, sample, SYNTHETIC_FORMAT)
    return seed


SYNTHETIC_FORMAT = {**FORMAT, "zero_depth": "sky", "generator": "genpercept_bundle.data.synthetic"}
PHOTOGRAPHIC_FORMAT = {**SYNTHETIC_FORMAT, "generator": "genpercept_bundle.data.photographic"}
RENDERERS = {"numpy": SYNTHETIC_FORMAT, "cycles": PHOTOGRAPHIC_FORMAT}


DATASET_SEEDS = 1_000_000  # the scene seeds of dataset seed s: s x 1e6 onwards
SPLIT_SEEDS = 100_000  # each split renders from its own block of seeds, so one split's size never moves another's


def split_first_seeds(seed: int, splits: dict[str, int]) -> dict[str, int]:
    """The first scene seed of each split: the k-th split starts at seed x 1e6 + k x 100000."""
    for split, count in splits.items():
        if not 0 <= count <= SPLIT_SEEDS:
            raise GenPerceptError(f"split {split!r} asks for {count} scenes; a split holds 0 to {SPLIT_SEEDS}")
    if len(splits) > DATASET_SEEDS // SPLIT_SEEDS:
        raise GenPerceptError(f"at most {DATASET_SEEDS // SPLIT_SEEDS} splits per dataset, got {len(splits)}")
    return {split: seed * DATASET_SEEDS + k * SPLIT_SEEDS for k, split in enumerate(splits)}


def _rendered_first_seeds(settings: dict) -> dict[str, int]:
    if "first_seeds" in settings:
        return settings["first_seeds"]
    first, offset = {}, settings.get("seed", 0) * DATASET_SEEDS  # datasets made before the seed blocks
    for split, count in settings.get("splits", {}).items():
        first[split], offset = offset, offset + count
    return first


def generate_dataset(root: Path, splits: dict[str, int], seed: int = 0, size=(256, 192), workers: int = 1,
                     renderer: str = "numpy", options: dict | None = None):
    """Render ``splits`` ({"train": 2000, "test": 100}) with disjoint seeds (see ``split_first_seeds``: the test
    split stays the same whatever the training split's size); resumable (existing samples are kept).

    ``renderer``: "numpy" (synthetic.py, fast) or "cycles" (photographic/, Blender's path tracer; ``options``:
    ``assets`` folder, ``samples``, ``threads`` per worker)."""
    from multiprocessing import get_context

    from tqdm import tqdm

    root = Path(root)
    first_seeds = split_first_seeds(seed, splits)
    if renderer not in RENDERERS:
        raise GenPerceptError(f"unknown renderer {renderer!r}: choose one of {', '.join(RENDERERS)}")
    options = dict(options or {})
    if renderer == "cycles":
        from .photographic.scenes import prepare_dataset_options

        options = prepare_dataset_options(root, options, workers)
    if (root / "dataset.json").is_file():
        _check_resumable(root, first_seeds, size, RENDERERS[renderer]["generator"])
    root.mkdir(parents=True, exist_ok=True)
    recorded = {k: str(v) if isinstance(v, Path) else v for k, v in options.items() if k != "threads"}
    write_json(root / "dataset.json", {**RENDERERS[renderer], "seed": seed, "splits": splits,
                                        "first_seeds": first_seeds, "size": list(size), **recorded})
    jobs = []
    for split, count in splits.items():
        for sample_seed in range(first_seeds[split], first_seeds[split] + count):
            if not (root / split / f"{sample_seed:06d}_rgb.png").is_file():
                jobs.append((root, split, sample_seed, *size, renderer, options))
    with tqdm(total=len(jobs), unit="scene", desc="rendering", disable=None) as progress:
        if workers > 1:
            with get_context("spawn").Pool(workers, keep_freed_memory) as pool:
                for _ in pool.imap_unordered(_render_one, jobs, chunksize=4):
                    progress.update()
        else:
            for job in jobs:
                _render_one(job)
                progress.update()
    return root


def _check_resumable(root: Path, first_seeds: dict[str, int], size, generator: str):
    """Adding scenes to a folder is fine; mixing scenes of another seed layout, size or renderer into it is not."""
    settings = read_settings(root)
    rendered = _rendered_first_seeds(settings)
    started = [split for split in first_seeds if any((root / split).glob("*_rgb.*"))]
    if started and settings.get("generator", generator) != generator:
        raise GenPerceptError(f"{root} holds scenes of {settings['generator']}, this run renders with {generator}: "
                              "render into a new folder")
    for split in started:
        if split in rendered and rendered[split] != first_seeds[split]:
            raise GenPerceptError(
                f"{root}/{split} holds scenes from seed {rendered[split]} on, this run's {split} split starts at seed "
                f"{first_seeds[split]} (another --seed, or a folder made before each split had its own seeds): "
                "render into a new folder")
    if started and "size" in settings and list(settings["size"]) != list(size):
        width, height = settings["size"]
        raise GenPerceptError(f"{root} holds {width}x{height} scenes, this run asks for {size[0]}x{size[1]}: "
                              f"render into a new folder or pass --size {width}x{height}")
