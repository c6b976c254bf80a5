"""How long a cancel takes to stop a prediction inside one large image (ComfyUI's Cancel, Blender's Esc).

    python bench/cancel_latency.py [--size 4096] [--processing-res 2048] [--architecture small|sd21]

Both front ends hand the predictor a check_interrupt that raises once the user cancelled (ComfyUI:
its interrupt flag; Blender: a threading.Event); the predictor calls it before every VAE and UNet
block. This runs one image in a thread, cancels after a second, and reports the time from the cancel
to the prediction stopping, against the time the whole image takes.
"""

import argparse
import tempfile
import threading
import time

import numpy as np

from genpercept_bundle import GenPerceptPredictor
from genpercept_bundle.models.architectures import write_random_checkpoint


class Cancelled(Exception):
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--processing-res", type=int, default=2048)
    parser.add_argument("--architecture", default="small", help="small (the embedded model's) or sd21 (full size)")
    parser.add_argument("--cancel-after", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        model = write_random_checkpoint(f"{work}/model", tasks=["depth"], architecture=args.architecture)
        predictor = GenPerceptPredictor.from_pretrained(model, ["depth"], device="cpu")
        rgb = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
        started = time.perf_counter()
        predictor.predict(rgb, "depth", processing_res=args.processing_res, flip_average=False)
        whole = time.perf_counter() - started
        cancel = threading.Event()

        def check_interrupt():
            if cancel.is_set():
                raise Cancelled

        stopped = {}

        def run():
            try:
                predictor.predict(rgb, "depth", processing_res=args.processing_res, flip_average=False,
                                  check_interrupt=check_interrupt)
            except Cancelled:
                stopped["at"] = time.perf_counter()

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(args.cancel_after)
        cancelled_at = time.perf_counter()
        cancel.set()
        thread.join()
    print(f"{args.architecture} model, {args.size}x{args.size} photo at processing res {args.processing_res}: "
          f"one image {whole:.1f} s; cancel after {args.cancel_after:.1f} s stopped it in "
          f"{stopped['at'] - cancelled_at:.2f} s" if "at" in stopped else "the prediction finished before the cancel")


if __name__ == "__main__":
    main()
