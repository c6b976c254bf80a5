"""Frames per second of ``genpercept batch`` on this machine: the local engine against Ray with N workers.

    python bench/batch_throughput.py [--frames 200] [--size 256x192] [--workers 2] [--task depth normal matte]

Each engine runs as its own process on the same frames, into its own folder, with the embedded model
at its default settings; the time is the whole command's (model loading and, for Ray, starting the
cluster included) and the job's own figure (from its summary line). Outputs are compared too.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_frames(folder: Path, count: int, width: int, height: int):
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    for index in range(count):
        rgb = np.stack([(x + 2 * index) % 256, y % 256, (x + y) % 256], -1) + rng.integers(0, 20, (height, width, 3))
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"frame_{index:05d}.png")


def run(label, command, env):
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    summary = next((line for line in result.stdout.splitlines() if "frames predicted" in line), result.stderr[-500:])
    job = re.search(r"\(([\d.]+) frames/s\)", summary)
    print(f"{label:<28} exit {result.returncode}  command {wall:6.1f} s  job {job.group(1) if job else '?'} frames/s"
          f"  | {summary}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="256x192")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--task", nargs="+", default=["depth", "normal", "matte"])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        write_frames(work / "frames", args.frames, width, height)
        batch = [sys.executable, "-m", "genpercept_bundle.cli", "batch", str(work / "frames")]
        options = ["--task", *args.task, "--no-preview"]
        print(f"{args.frames} frames of {width}x{height}, tasks {' '.join(args.task)}, {os.cpu_count()} cores")
        run("local, all threads", batch + [str(work / "local"), *options], dict(os.environ))
        run("local, 1 thread", batch + [str(work / "local1"), *options], {**os.environ, "OMP_NUM_THREADS": "1"})
        run(f"ray, {args.workers} workers x 1 thread", batch + [str(work / "ray"), *options, "--engine", "ray",
                                                               "--workers", str(args.workers)], dict(os.environ))
        same = all((work / "local1" / p.name).read_bytes() == p.read_bytes() for p in (work / "ray").glob("*_*.*"))
        print(f"ray outputs byte-identical to the 1-thread local run: {same}")


if __name__ == "__main__":
    main()
