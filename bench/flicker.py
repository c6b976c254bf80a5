"""How much depth and normals flicker over a rendered camera-motion sequence with ground truth, before and after
steadying (inference/steady_sequence.py).

    python bench/flicker.py SEQUENCE_DATASET [--split sequence] [--model DIR] [--strength 0.7]

SEQUENCE_DATASET is a folder in the dataset layout whose split holds consecutive frames (ids in frame order), e.g.
what `genpercept make-data --renderer cycles --sequence` renders. Prints the depth flicker figure (metrics.depth_flicker:
the mean change between consecutive frames beyond the ground truth's, over its median depth, after one scale and shift
for the whole sequence), the sequence's depth AbsRel, and the normals' frame-to-frame swing beyond the truth's
(degrees), each for the frames as predicted and steadied.
"""

import argparse
from pathlib import Path

import numpy as np

from genpercept_bundle import GenPerceptPredictor
from genpercept_bundle.data.dataset import read_sample, sample_ids
from genpercept_bundle.evaluation.metrics import depth_flicker, depth_metrics
from genpercept_bundle.inference.steady_sequence import DEFAULT_STRENGTH, steady_maps


def normal_swing(normals: np.ndarray, truths: np.ndarray, valid: np.ndarray) -> float:
    """Mean |angle between consecutive predicted normals - the same for the truth| (degrees), on pixels valid in
    both frames."""
    def turn(sequence):
        return np.degrees(np.arccos(np.clip((sequence[1:] * sequence[:-1]).sum(-1), -1, 1)))
    both = valid[1:] & valid[:-1]
    return float(np.abs(turn(normals) - turn(truths))[both].mean())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="sequence")
    parser.add_argument("--model", default=None)
    parser.add_argument("--strength", type=float, default=DEFAULT_STRENGTH)
    args = parser.parse_args()
    samples = [read_sample(args.dataset, args.split, i) for i in sorted(sample_ids(args.dataset, args.split))]
    frames = np.stack([s.rgb for s in samples])
    depth_truth = np.stack([s.depth for s in samples])
    depth_valid = depth_truth > 0
    predictor = GenPerceptPredictor.from_pretrained(args.model, None if args.model else ["depth", "normal"],
                                                    device="cpu")
    rows = []
    depth = predictor.predict(frames, "depth").maps
    for name, maps in (("as predicted", depth), ("steadied", steady_maps("depth", depth, frames, args.strength))):
        abs_rel = np.mean([depth_metrics(m, t, v)["abs_rel"] for m, t, v in zip(maps, depth_truth, depth_valid)])
        rows.append((f"depth, {name}", f"{depth_flicker(maps, depth_truth, depth_valid):.4f}", f"{abs_rel:.3f}"))
    if "normal" in predictor.loaded_tasks and samples[0].normal is not None:
        normal_truth = np.stack([s.normal for s in samples])
        normal_valid = np.linalg.norm(normal_truth, axis=-1) > 0.5
        normals = predictor.predict(frames, "normal").maps
        for name, maps in (("as predicted", normals),
                           ("steadied", steady_maps("normal", normals, frames, args.strength))):
            rows.append((f"normals, {name}", f"{normal_swing(maps, normal_truth, normal_valid):.2f} deg", "-"))
    print(f"{len(samples)} frames of {args.dataset / args.split}, steadiness {args.strength}\n")
    print("| maps | flicker | depth AbsRel (per frame) |\n|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
