"""Depth on real RGB-D frames: the model against constant and vertical-gradient baselines.

    python bench/eval_rgbd_samples.py [--model DIR] [--processing-res N] [--flip-average auto|on|off]
                                      [--samples ../shared/eval/rgbd_open3d_samples]

Converts the 14 frames of rgbd_open3d_samples (NYU raw, SUN RGB-D, TUM, 11 ICL-NUIM renders; see its
README for the depth decodings) into our dataset layout under bench/results/, then scores AbsRel and
delta1 after least-squares scale and shift alignment, per frame and on average. Evaluation only: nothing
here trains on them.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from genpercept_bundle import GenPerceptPredictor, load_image
from genpercept_bundle.atomic_files import write_json
from genpercept_bundle.choices import FLIP_AVERAGE_CHOICES
from genpercept_bundle.cli.options import add_flip_average_option, add_processing_resolution_option
from genpercept_bundle.data.dataset import FORMAT, Sample, write_sample
from genpercept_bundle.evaluation.scoring import format_table, mean_scores, score_samples

HERE = Path(__file__).parent
DEFAULT_SAMPLES = HERE.parent.parent / "shared" / "eval" / "rgbd_open3d_samples"


def decode_frames(root: Path):
    """(id, rgb, depth in metres with 0 = invalid) for every frame, decoded as the set's README says."""
    real = root / "real"
    buffer = (real / "NYU_depth.pgm").read_bytes()
    raw = np.frombuffer(buffer, "<u2", offset=len(buffer) - 640 * 480 * 2).reshape(480, 640).astype(np.float64)
    nyu = np.where(raw < 1092.5, 351.3 / np.maximum(1092.5 - raw, 1e-6), 0.0)
    yield "nyu_raw", load_image(real / "NYU_color.ppm"), nyu
    sun = cv2.imread(str(real / "SUN_depth.png"), cv2.IMREAD_UNCHANGED).astype(np.uint16)
    sun = ((sun >> 3) | (sun << 13)).astype(np.uint16)
    yield "sun_rgbd", load_image(real / "SUN_color.jpg"), sun / 1000.0
    tum = cv2.imread(str(real / "TUM_depth.png"), cv2.IMREAD_UNCHANGED)
    yield "tum", load_image(real / "TUM_color.png"), tum / 5000.0
    icl = root / "icl_nuim_livingroom1_clean"
    for image in sorted((icl / "image").glob("*.jpg")):
        depth = cv2.imread(str(icl / "depth" / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)
        yield f"icl_{image.stem}", load_image(image), depth / 1000.0


def build_dataset(samples: Path, target: Path) -> Path:
    write_json(target / "dataset.json", {**FORMAT, "source": str(samples)})
    for frame_id, rgb, depth in decode_frames(samples):
        depth = np.where((depth > 0.1) & (depth < 20), depth, 0.0).astype(np.float32)
        write_sample(target, "test", Sample(frame_id, rgb, depth))
    return target


def per_frame_table(per_frame: dict) -> str:
    """AbsRel of every frame, the model next to the baselines (which frames a change helps or hurts)."""
    names = list(per_frame)
    lines = [f"{'frame':<14}" + "".join(f"{name:>26}" for name in names)]
    for frame in per_frame[names[0]]:
        lines.append(f"{frame:<14}" + "".join(f"{per_frame[name][frame]['abs_rel']:>26.4f}" for name in names))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    add_processing_resolution_option(parser)
    add_flip_average_option(parser)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    args = parser.parse_args()
    dataset = build_dataset(args.samples, HERE / "results" / "rgbd_samples")
    predictor = GenPerceptPredictor.from_pretrained(args.model, ["depth"], device="cpu")
    flip_average = FLIP_AVERAGE_CHOICES[args.flip_average]
    per_frame = score_samples(predictor, dataset, "test", ["depth"], args.processing_res, baselines=True,
                              progress=False, flip_average=flip_average)
    results = mean_scores(per_frame)
    print(per_frame_table(per_frame))
    print(format_table(results))
    write_json(HERE / "results" / "rgbd_samples.json", {
        "model": args.model or "default", "processing_res": predictor.processing_resolution("depth", args.processing_res),
        "flip_average": predictor.averages_with_mirror("depth", flip_average), "results": results,
        "per_frame": per_frame})


if __name__ == "__main__":
    main()
