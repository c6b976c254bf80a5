"""Peak memory and time of an SD2.1-size GenPercept depth pass by processing resolution, with and without VAE tiling.

    python bench/memory_by_resolution.py [--sizes 512 768 1024 2048] [--tiling auto on off]

Each run is a fresh process (peak RSS is the operating system's figure for it) predicting one square photo of that
side at native resolution, fp32 on the CPU, with the checkpoint written by bench/families_full_size.py
(bench/results/families/genpercept-depth). Prints one JSON line per run and a table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODEL = Path(__file__).parent / "results" / "families" / "genpercept-depth"


def one(size: int, tiling: str):
    from genpercept_bundle import GenPerceptPredictor

    predictor = GenPerceptPredictor.from_pretrained(MODEL, ["depth"], device="cpu", vae_tiling=tiling)
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    started = time.perf_counter()
    prediction = predictor.predict(rgb, "depth", processing_res=0)
    print(json.dumps({"size": size, "tiling": tiling, "tiled": prediction.provenance["vae_tiling"],
                      "seconds": round(time.perf_counter() - started, 1)}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768, 1024, 2048])
    parser.add_argument("--tiling", nargs="+", default=["auto"])
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(int(args.one[0]), args.one[1])
    if not (MODEL / "unet_depth_v2").is_dir():
        sys.exit(f"write the checkpoint first: python bench/families_full_size.py --families 'genpercept (VAE decoder)'")
    rows = []
    for size in args.sizes:
        for tiling in args.tiling:
            process = subprocess.Popen([sys.executable, __file__, "--one", str(size), tiling], stdout=subprocess.PIPE,
                                       text=True)
            output = process.stdout.read()
            _, status, usage = os.wait4(process.pid, 0)
            row = json.loads(output.strip().splitlines()[-1]) if status == 0 else {"size": size, "tiling": tiling,
                                                                                   "failed": status}
            row["peak_rss_gb"] = round(usage.ru_maxrss / 1024**2, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| side | tiling | VAE tiled | seconds | peak RSS GB |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} | {row['tiling']} | {row.get('tiled', '-')} | {row.get('seconds', '-')} | "
              f"{row['peak_rss_gb']} |")


if __name__ == "__main__":
    main()
