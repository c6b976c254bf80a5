"""Time and peak memory of one `genpercept predict` run on an SD2.1-size checkpoint in the released layout.

Random weights (the real 3.46 GB files cannot be downloaded here), real architecture,
real loading path, real CLI. Usage:

    python bench/predict_full_size.py [--size 512] [--processing-res 768]

The checkpoint (3.6 GB) is written once to bench/results/sd21-random and reused.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).parent / "results"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512, help="square test image side")
    parser.add_argument("--processing-res", type=int, default=None, help="default: the model's (768)")
    args = parser.parse_args()

    model = RESULTS / "sd21-random"
    if not (model / "unet_depth_v2").is_dir():
        from genpercept_bundle.models.architectures import write_random_checkpoint

        started = time.perf_counter()
        write_random_checkpoint(model, tasks=["depth"], architecture="sd21")
        print(f"wrote {model} in {time.perf_counter() - started:.0f} s")
    photo = RESULTS / f"photo_{args.size}.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(photo)

    command = [os.path.join(os.path.dirname(sys.executable), "genpercept"), "predict", str(photo), "--model", str(model),
               "--task", "depth", "--device", "cpu", "--out", str(RESULTS / "out")]
    if args.processing_res is not None:
        command += ["--processing-res", str(args.processing_res)]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    meta = json.loads((RESULTS / "out" / f"{photo.stem}_depth.json").read_text())
    report = {"image": f"{args.size}x{args.size}", "processing_res": meta["processing_res"],
              "wall_seconds_incl_loading": round(seconds, 1), "peak_rss_gb": round(peak_gb, 2),
              "dtype": meta["dtype"], "device": meta["device"]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
