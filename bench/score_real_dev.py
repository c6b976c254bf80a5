"""Depth and normals of a model on the real_dev photos, scored by the set's own score.py.

    python bench/score_real_dev.py [--model DIR] [--detail N] [--processing-res N] [--out bench/results/real_dev] [--set ../shared/eval/real_dev]

Predicts every sample's photo with the model's defaults (as `genpercept predict` does), writes
<id>_<task>.npy as score.py reads them (``--detail N``: with N x N detail tiles merged in) (normals OpenGL: --normals opengl) and runs score.py; its summary
is the last line printed. Evaluation only: nothing here trains on the set.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from genpercept_bundle import GenPerceptPredictor, load_image
from genpercept_bundle.inference.detail_tiles import predict_with_detail
from genpercept_bundle.inference.predictor import as_rgb_batch

HERE = Path(__file__).parent
DEFAULT_SET = HERE.parent.parent / "shared" / "eval" / "real_dev"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--base", default=None, help="DMP models: their Stable Diffusion base")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "real_dev")
    parser.add_argument("--set", type=Path, default=DEFAULT_SET)
    parser.add_argument("--detail", type=int, default=1, help="N x N detail tiles (inference/detail_tiles.py)")
    parser.add_argument("--processing-res", type=int, default=None, help="default: the model's for each task")
    args = parser.parse_args()
    samples = json.loads((args.set / "manifest.json").read_text())["samples"]
    predictor = GenPerceptPredictor.from_pretrained(args.model, None if args.model else ["depth", "normal"],
                                                    device="cpu", base=args.base)
    args.out.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        task = sample["task"]
        if task not in predictor.loaded_tasks and not (task == "depth" and "disparity" in predictor.loaded_tasks):
            continue
        kind = task if task in predictor.loaded_tasks else "disparity"
        image = as_rgb_batch(load_image(args.set / sample["rgb"]))
        if args.detail > 1:
            maps = predict_with_detail(predictor, image, [kind], args.detail, args.processing_res)[kind].maps[0]
        else:
            maps = predictor.predict(image, kind, args.processing_res).maps[0]
        if kind == "disparity":  # the score fits an affine map to depth: give it depth order
            maps = 1.0 - maps
        np.save(args.out / f"{sample['id']}_{task}.npy", maps.astype(np.float32))
    subprocess.run([sys.executable, str(args.set / "score.py"), str(args.out), "--normals", "opengl"], check=True)


if __name__ == "__main__":
    main()
