"""Peak memory and time of `genpercept predict` on one large photo (8000x6000 by default), all three tasks.

    python bench/large_photo_memory.py [--size 8000x6000] [--format png16] [--keep DIR]

Prints the command's peak RSS (the process's own accounting, ru_maxrss of the child), its wall time,
and the sha256 of every file written, so two versions can be compared for identical outputs.
"""

import argparse
import hashlib
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="8000x6000")
    parser.add_argument("--format", default="png16")
    parser.add_argument("--keep", type=Path, default=None, help="write the outputs here instead of a temporary folder")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        rgb = np.stack([np.sin(x / 97) * 90 + 128, np.cos(y / 53) * 90 + 128, (x + y) / (width + height) * 255], -1)
        photo = work / "large.jpg"
        Image.fromarray(rgb.astype(np.uint8)).save(photo, quality=92)
        del x, y, rgb
        out = args.keep or work / "out"
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "genpercept_bundle.cli", "predict", str(photo), "--out", str(out),
                                 "--format", args.format], capture_output=True, text=True)
        wall = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        print(f"{width}x{height}, tasks depth normal matte, {args.format}: exit {result.returncode}, "
              f"{wall:.1f} s, peak RSS {peak:.2f} GB")
        if result.returncode:
            print(result.stderr[-2000:])
        for path in sorted(out.iterdir()):
            if path.suffix != ".json":
                print(f"  {hashlib.sha256(path.read_bytes()).hexdigest()[:16]}  {path.name}")


if __name__ == "__main__":
    main()
