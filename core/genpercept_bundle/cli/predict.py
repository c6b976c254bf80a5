"""``genpercept predict`` and ``genpercept batch``: maps for photos (and video frames), written by the map-file
contract (map_files.py)."""

import sys
from pathlib import Path

from .options import add_prediction_options, batch_options


def add_commands(commands):
    predict = commands.add_parser("predict", help="depth / normal / matte maps for images")
    predict.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    predict.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: ./out)")
    add_prediction_options(predict)
    predict.set_defaults(run=run_predict)

    batch = commands.add_parser(
        "batch", help="maps for whole shots and image sets: resumable, on this machine or a Ray cluster",
        description="Predict every image, image sequence and video frame of the inputs into OUTPUT, as predict "
                    "writes them. A rerun skips the frames whose maps are complete, so a stopped job continues "
                    "where it stopped.")
    batch.add_argument("inputs", nargs="+", help="image or video files, folders or glob patterns")
    batch.add_argument("out", type=Path, metavar="OUTPUT", help="output folder")
    add_prediction_options(batch)
    batch.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process; ray: Ray Data, one model per actor (pip install 'genpercept-bundle[ray]')")
    batch.add_argument("--address", default=None,
                       help="Ray cluster to join (e.g. auto, or ray://HOST:10001); default: start one on this machine")
    batch.add_argument("--workers", type=int, default=2, help="Ray actors, each holding one model (default: 2)")
    batch.add_argument("--num-gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (default: 0)")
    batch.set_defaults(run=run_batch)


def run_predict(args) -> int:
    from ..atomic_files import check_writable_folder
    from ..batch.job import predict_frames
    from ..batch.frames import Frame
    from ..images import list_inputs
    from ..map_files import check_unique_stems

    inputs = list_inputs(args.inputs)
    check_unique_stems((path.stem, str(path)) for path in inputs)
    check_writable_folder(args.out)
    failures = predict_frames([Frame(path.stem, str(path)) for path in inputs], batch_options(args))
    if failures:
        print(f"genpercept: error: {len(failures)} of {len(inputs)} images could not be read or predicted", file=sys.stderr)
        return 1
    return 0


def run_batch(args) -> int:
    from ..batch.frames import list_frames
    from ..batch.job import run_batch as run

    options = batch_options(args)
    engine = {"address": args.address, "workers": args.workers, "gpus_per_worker": args.num_gpus_per_worker}
    summary = run(list_frames(args.inputs), options, args.engine, **(engine if args.engine == "ray" else {}))
    print(summary)
    return 1 if summary.failures else 0
