"""How Blender's UI fares while the add-on predicts a 12 MP photo in-process, and how fast Esc stops it.

    PYTHONPATH=core python bench/blender_responsiveness.py [--size 4000x3000] [--model FOLDER]

The prediction runs as the add-on runs it (PredictionJob: a thread that predicts, then keeps the maps as
full-resolution EXR files). Meanwhile the main thread stands in for Blender's UI: it wakes every 10 ms (the modal
operator's timer runs every 100 ms) and records how late each wake-up is; the worst gap is the longest the UI would
freeze. Then predictions are cancelled (Esc) a few seconds in, and the time until the job has stopped is measured.
Prints JSON.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp())
import bpy  # noqa: E402,F401  (the add-on imports it)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from blender_addon.prediction import PredictionJob  # noqa: E402

TICK = 0.01


def large_photo(size, folder: Path) -> Path:
    from PIL import Image

    width, height = size
    photo = folder / "large.jpg"
    Image.open(REPO / "examples" / "photo.jpg").resize((width, height), Image.BICUBIC).save(photo, quality=92)
    return photo


def ui_stalls(job) -> list[float]:
    """Delays past each 10 ms tick while the job runs, as the main thread sees them."""
    gaps, last = [], time.perf_counter()
    while not job.done():
        time.sleep(TICK)
        now = time.perf_counter()
        gaps.append(now - last - TICK)
        last = now
        job.progress  # what the modal operator reads every tick
    return gaps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4000x3000", help="photo size, WxH")
    parser.add_argument("--model", default="", help="model folder (default: the embedded model)")
    parser.add_argument("--cancel-at", type=float, nargs="*", default=[0.1, 0.3, 0.5, 0.7, 0.9],
                        help="when to press Esc, as fractions of the whole prediction's time")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="genpercept_bench_"))
    photo = str(large_photo(size, work))
    report = {"photo": f"{size[0]}x{size[1]}", "model": args.model or "embedded"}
    # The first run loads the model (not cancellable); the runs measured here find it loaded, as in a session.
    warm = PredictionJob(photo, ["depth"], work / "warm", args.model)
    warm.wait()
    job = PredictionJob(photo, ["depth", "normal"], work / "kept", args.model)
    gaps = ui_stalls(job)
    job.wait()
    report.update(prediction_and_keeping_s=round(job.stopped_at - job.started, 2),
                  worst_ui_stall_s=round(max(gaps), 3), p99_ui_stall_s=round(float(np.percentile(gaps, 99)), 3))
    stops = {}
    whole = job.stopped_at - job.started
    for fraction in args.cancel_at:
        job = PredictionJob(photo, ["depth", "normal"], work / f"cancelled_{fraction}", args.model)
        time.sleep(fraction * whole)
        cancelled_at = time.perf_counter()
        job.cancel(wait=120.0)
        stops[f"at_{fraction:.0%}_of_the_run"] = (round(job.stopped_at - cancelled_at, 3) if not job.result
                                                  else "finished before the cancel")
    report["esc_to_stopped_s"] = stops
    report["worst_esc_to_stopped_s"] = max(v for v in stops.values() if isinstance(v, float))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
