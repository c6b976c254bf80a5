"""Every model family at full size on this machine: SD2.1-size random checkpoints in each family's released layout
(SD v1.4-size for DMP's base), one 512x512 photo at processing resolution 512, fp32 on the CPU.

Per family: one `genpercept predict` of the photo (the whole command: start-up, loading, inference, writing; its
wall time and peak RSS), then, in a fresh process, the load time, the first prediction (warm-up) and the median of
the next ``--repeats`` predictions. Usage:

    python bench/families_full_size.py [--repeats 2] [--families genpercept marigold ...] [--threads N]

Checkpoints are written once to bench/results/families/ (UNets stored in fp16 to halve the disk: they load as fp32).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent / "results" / "families"
# name -> (folder, task, sampling options)
RUNS = {
    "genpercept (VAE decoder)": ("genpercept-depth", "depth", {}),
    "genpercept (DPT head)": ("genpercept-disparity-dpt-head", "disparity", {}),
    "marigold v1-1, 4 steps": ("marigold-depth-v1-1", "depth", {"steps": 4}),
    "marigold v1-1, 1 step": ("marigold-depth-v1-1", "depth", {"steps": 1}),
    "marigold lcm, 1 step": ("marigold-depth-lcm-v1-0", "depth", {"steps": 1}),
    "e2e-ft": ("marigold-e2e-ft-depth", "depth", {}),
    "lotus-g": ("lotus-depth-g-v1-0", "depth", {}),
    "lotus-d": ("lotus-depth-d-v1-0", "depth", {}),
    "dmp, 5 steps": ("depth-hypersim-notext", "depth", {}),
}


def write_checkpoints():
    import torch

    from genpercept_bundle.models import architectures as arch

    half = torch.float16
    writers = {
        "genpercept-depth": lambda f: arch.write_random_checkpoint(f, ["depth"], "sd21", unet_dtype=half),
        "genpercept-disparity-dpt-head": lambda f: arch.write_random_dpt_checkpoint(f, "sd21", unet_dtype=half),
        "marigold-depth-v1-1": lambda f: arch.write_random_pipeline(f, "marigold", "depth", "sd21", unet_dtype=half),
        "marigold-depth-lcm-v1-0": lambda f: arch.write_random_pipeline(f, "marigold-lcm", "depth", "sd21",
                                                                        unet_dtype=half),
        "marigold-e2e-ft-depth": lambda f: arch.write_random_pipeline(f, "e2e-ft", "depth", "sd21", unet_dtype=half),
        "lotus-depth-g-v1-0": lambda f: arch.write_random_pipeline(f, "lotus-g", "depth", "sd21", unet_dtype=half),
        "lotus-depth-d-v1-0": lambda f: arch.write_random_pipeline(f, "lotus-d", "depth", "sd21", unet_dtype=half),
        "depth-hypersim-notext": lambda f: arch.write_random_dmp(f, ROOT / "stable-diffusion-v1-4", "depth", "sd14",
                                                                 unet_dtype=half),
    }
    for name, write in writers.items():
        if not (ROOT / name).is_dir():
            started = time.perf_counter()
            write(ROOT / name)
            print(f"wrote {name} in {time.perf_counter() - started:.0f} s", flush=True)


def measure(name: str, repeats: int):
    """In this process: load, warm up, time ``repeats`` predictions; prints one JSON line."""
    import torch

    from genpercept_bundle import GenPerceptPredictor
    from genpercept_bundle.inference.predictor import SamplingOptions

    folder, task, sampling = RUNS[name]
    base = ROOT / "stable-diffusion-v1-4" if folder.startswith("depth-hypersim") else None
    rgb = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    started = time.perf_counter()
    predictor = GenPerceptPredictor.from_pretrained(ROOT / folder, [task], device="cpu", base=base)
    load = time.perf_counter() - started
    options = SamplingOptions(**sampling)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        predictor.predict(rgb, task, processing_res=512, sampling=options)
        times.append(time.perf_counter() - started)
    print(json.dumps({"family": name, "load_s": round(load, 2), "first_s": round(times[0], 2),
                      "median_s": round(statistics.median(times[1:]), 2), "threads": torch.get_num_threads()}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--families", nargs="+", default=list(RUNS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one family here
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        return measure(args.one, args.repeats)
    write_checkpoints()
    photo = ROOT / "photo_512.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(photo)
    rows = []
    for name in args.families:
        folder, task, sampling = RUNS[name]
        cli = [os.path.join(os.path.dirname(sys.executable), "genpercept"), "predict", str(photo), "--model",
               str(ROOT / folder), "--task", task, "--processing-res", "512", "--device", "cpu", "--out",
               str(ROOT / "out" / folder), "--format", "npy", "--no-preview"]
        cli += ["--steps", str(sampling["steps"])] if "steps" in sampling else []
        cli += ["--base", str(ROOT / "stable-diffusion-v1-4")] if folder.startswith("depth-hypersim") else []
        started = time.perf_counter()
        process = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        cli_row = {"cli_wall_s": round(time.perf_counter() - started, 1),
                   "cli_peak_rss_gb": round(usage.ru_maxrss / 1024**2, 2), "cli_status": status}
        command = [sys.executable, __file__, "--one", name, "--repeats", str(args.repeats)]
        command += ["--threads", str(args.threads)] if args.threads else []
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            print(f"{name}: failed (status {status})", flush=True)
            continue
        row = {**json.loads(output.strip().splitlines()[-1]), **cli_row}
        row["peak_rss_gb"] = round(usage.ru_maxrss / 1024**2, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    reference = next((r["median_s"] for r in rows if r["family"] == "marigold v1-1, 4 steps"), None)
    print("\n| family | CLI wall s | CLI peak RSS GB | load s | first s | median s | vs Marigold 4 steps | peak RSS GB |"
          "\n|---|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = f"{reference / row['median_s']:.2f}x faster" if reference else "-"
        print(f"| {row['family']} | {row['cli_wall_s']} | {row['cli_peak_rss_gb']} | {row['load_s']} | "
              f"{row['first_s']} | {row['median_s']} | {ratio} | {row['peak_rss_gb']} |")


if __name__ == "__main__":
    main()
