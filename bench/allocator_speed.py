"""What keeping freed memory (genpercept_bundle/allocator.py) does to the default recipe's speed, and that it
changes no weight: runs a shortened ``genpercept train-default`` twice, with glibc's allocator defaults and
with the tuning, and reports each stage's wall time, the largest process's peak RSS and whether the two
exported models are bit-identical.

    python bench/allocator_speed.py [--scale 0.03] [--workdir bench/results/allocator]

Stages are timed from the recipe's own log lines as they arrive: rendering ends at the VAE's first line,
the VAE at the photo encoding's, the shared photo encoding when the UNet workers start, and the UNets
(two workers side by side) at the export.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from genpercept_bundle.allocator import OPT_OUT

STAGE_STARTS = [("vae", "vae: "), ("photo latents", "photos: encoding"), ("unets", "training samples at")]
RUNS = {"glibc_defaults": False, "keep_freed_memory": True}  # label: keep freed memory


def run_recipe(workdir: Path, scale: float, keep_freed: bool) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    environment = {**os.environ, OPT_OUT: "1" if keep_freed else "0"}
    command = [sys.executable, "-m", "genpercept_bundle.cli", "train-default", "--workdir", str(workdir / "run"),
               "--export-to", str(workdir / "export"), "--scale", str(scale)]
    started = time.perf_counter()
    marks = {"render": 0.0}
    run = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in run.stdout:
        for stage, text in STAGE_STARTS:
            if text in line and stage not in marks:
                marks[stage] = time.perf_counter() - started
    _, status, usage = os.wait4(run.pid, 0)  # this run's usage alone, its worker processes included
    run.returncode = os.waitstatus_to_exitcode(status)
    if run.returncode:
        raise SystemExit(f"train-default failed (exit {run.returncode})")
    marks["end"] = time.perf_counter() - started
    names = list(marks)
    seconds = {stage: round(marks[following] - marks[stage], 1) for stage, following in zip(names, names[1:])}
    return {"seconds": seconds, "total_s": round(marks["end"], 1),
            "largest_process_peak_rss_mb": round(usage.ru_maxrss / 1024),
            "weights_sha256": _weights_digest(workdir / "export")}


def _weights_digest(model: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(model.rglob("*.safetensors")):
        digest.update(path.relative_to(model).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.03, help="fraction of the recipe's scenes and steps")
    parser.add_argument("--workdir", type=Path, default=Path("bench/results/allocator"))
    args = parser.parse_args()
    report = {"scale": args.scale}
    for label, keep_freed in RUNS.items():
        report[label] = run_recipe(args.workdir / label, args.scale, keep_freed)
        print(label, json.dumps(report[label]), flush=True)
    report["bit_identical"] = len({report[label]["weights_sha256"] for label in RUNS}) == 1
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
