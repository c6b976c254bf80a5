"""Per-task inference time of a model on a 512x512 image on this machine (median of 5 runs after a warm-up).

    python bench/predict_speed.py [--model DIR] [--processing-res default 512 0 ...]

``default`` is the model's own processing resolution for each task, 0 the image's native size.
"""

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch

from genpercept_bundle import GenPerceptPredictor


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--processing-res", nargs="+", default=[None, 512],
                        type=lambda value: None if value == "default" else int(value))
    args = parser.parse_args()
    predictor = GenPerceptPredictor.from_pretrained(args.model, ["depth", "normal", "matte"], device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    report = {"image": f"{args.size}x{args.size}", "threads": torch.get_num_threads(),
              "flip_average": {task: predictor.averages_with_mirror(task) for task in ("depth", "normal", "matte")},
              "seconds": {}}
    for resolution in args.processing_res:
        label = f"processing_res={'default' if resolution is None else resolution or 'native'}"
        report["seconds"][label] = {}
        for task in ("depth", "normal", "matte"):
            predictor.predict(rgb, task, resolution)
            times = []
            for _ in range(5):
                started = time.perf_counter()
                predictor.predict(rgb, task, resolution)
                times.append(time.perf_counter() - started)
            report["seconds"][label][task] = round(statistics.median(times), 3)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
