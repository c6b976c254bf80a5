"""Seconds per photographic (Cycles) scene by kind, resolution and samples, and the matte's noise by samples.

    python bench/photographic_speed.py --assets ASSETS [--scenes 2] [--threads 2]
    python bench/photographic_speed.py --assets ASSETS --alpha-noise [--seed 201]

The first form renders the first ``--scenes`` training-pool scenes (from seed 200) of each kind (room, street, matting
composite) at 256x192 with 16, 32 and 64 samples and at 512x384 with 32, and prints wall and process CPU seconds per
scene as JSON lines. The second renders one composite at 16, 32, 64 and 256 samples and prints the RMS error of its
alpha (soft pixels) and photo against the 256-sample render.
"""

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from genpercept_bundle.data.photographic.assets import AssetLibrary
from genpercept_bundle.data.photographic.layouts import random_layout
from genpercept_bundle.data.photographic.scenes import blender_output_silenced, render_layout

SETTINGS = [((256, 192), 16), ((256, 192), 32), ((256, 192), 64), ((512, 384), 32)]


def category(layout) -> str:
    return "matting composite" if layout.subject else layout.kind


def timed_render(layout, assets, size, samples, threads, effects=True):
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with blender_output_silenced():
        frame = render_layout(layout, assets.root, size, samples, threads, effects)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return frame, time.perf_counter() - start, cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=2, help="scenes per kind")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--alpha-noise", action="store_true")
    parser.add_argument("--seed", type=int, default=201, help="--alpha-noise: a composite's seed")
    args = parser.parse_args()
    assets = AssetLibrary.load(args.assets, test_pool=False)
    if args.alpha_noise:
        layout = random_layout(args.seed, assets)
        renders = {samples: timed_render(layout, assets, (256, 192), samples, args.threads, effects=False)
                   for samples in (16, 32, 64, 256)}
        reference = renders[256][0]
        soft = (reference["alpha"] > 0.02) & (reference["alpha"] < 0.98)
        for samples, (frame, wall, cpu) in renders.items():
            alpha_error = frame["alpha"] - reference["alpha"]
            photo_error = frame["rgb"].astype(float) - reference["rgb"]
            print(json.dumps({"samples": samples, "wall": round(wall, 2), "cpu": round(cpu, 2),
                              "alpha_rms_soft": round(float(np.sqrt((alpha_error[soft] ** 2).mean())), 4),
                              "alpha_mse": round(float((alpha_error ** 2).mean()), 6),
                              "photo_rms_of_255": round(float(np.sqrt((photo_error ** 2).mean())), 2)}), flush=True)
        return
    picked: dict[str, list[int]] = {}
    for seed in range(200, 1000):
        kind = category(random_layout(seed, assets))
        if kind != "backdrop" and len(picked.setdefault(kind, [])) < args.scenes:
            picked[kind].append(seed)
    for kind, seeds in picked.items():
        for size, samples in SETTINGS:
            for seed in seeds:
                _, wall, cpu = timed_render(random_layout(seed, assets, size), assets, size, samples, args.threads)
                print(json.dumps({"kind": kind, "seed": seed, "size": f"{size[0]}x{size[1]}", "samples": samples,
                                  "wall": round(wall, 2), "cpu": round(cpu, 2)}), flush=True)


if __name__ == "__main__":
    main()
