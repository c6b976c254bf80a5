"""``genpercept predict``: maps for photos, written by the map-file contract (map_files.py)."""

import sys
from pathlib import Path

from ..choices import FLIP_AVERAGE_CHOICES
from ..conventions import NORMAL_CONVENTIONS
from ..errors import GenPerceptError
from ..map_files import FORMATS, save_maps
from ..tasks import get_task
from .options import add_flip_average_option, add_processing_resolution_option, add_task_option


def add_commands(commands):
    predict = commands.add_parser("predict", help="depth / normal / matte maps for images")
    predict.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    add_task_option(predict)
    predict.add_argument("--model", default=None,
                         help="model folder in the GenPercept layout or Hugging Face repo id (default: the embedded model)")
    predict.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: ./out)")
    predict.add_argument("--format", choices=FORMATS, default="png16", help="map file format (default: png16)")
    add_processing_resolution_option(predict)
    predict.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images only)")
    add_flip_average_option(predict)
    predict.add_argument("--normal-convention", choices=NORMAL_CONVENTIONS, default="opengl",
                         help="green-channel convention of normal colour encodings (png16 and previews)")
    predict.add_argument("--raw", action="store_true",
                         help="write the network's raw [0,1] output instead of the documented convention")
    predict.add_argument("--no-preview", action="store_true", help="skip the 8-bit preview PNGs")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    predict.add_argument("--dtype", default="float32", help="float32 (default) or float16 (GPU only)")
    predict.add_argument("--vae", default=None, help="use this VAE folder instead of the model's vae/")
    predict.add_argument("--text-encoder", default=None,
                         help="folder with text_encoder/ + tokenizer/ to compute the empty-text embedding once")
    predict.add_argument("--offline", action="store_true", help="never download; use local files only")
    predict.set_defaults(run=run_predict)


def run_predict(args) -> int:
    from tqdm import tqdm

    from ..images import list_inputs, load_image

    tasks = list(dict.fromkeys(get_task(name).name for name in args.task))
    inputs = list_inputs(args.inputs)
    _check_unique_stems(inputs)
    from ..inference.predictor import GenPerceptPredictor  # torch and diffusers: only once the inputs are known

    predictor = GenPerceptPredictor.from_pretrained(
        args.model, tasks, device=args.device, dtype=args.dtype, vae=args.vae,
        text_encoder=args.text_encoder, allow_download=not args.offline,
    )
    failures = 0
    for path in tqdm(inputs, unit="image", desc="predicting", disable=None):
        try:
            rgb = load_image(path)
        except GenPerceptError as error:
            tqdm.write(f"genpercept: skipped: {error}", file=sys.stderr)
            failures += 1
            continue
        for prediction in predictor.predict_tasks(rgb, tasks, args.processing_res, args.batch_size,
                                                   flip_average=FLIP_AVERAGE_CHOICES[args.flip_average]).values():
            save_maps(args.out, path.stem, prediction.task, prediction.maps[0], args.format,
                      {"source": str(path), **prediction.provenance}, args.normal_convention,
                      raw=prediction.raw[0] if args.raw else None, previews=not args.no_preview)
    if failures:
        print(f"genpercept: error: {failures} of {len(inputs)} images could not be read", file=sys.stderr)
        return 1
    return 0


def _check_unique_stems(inputs):
    seen = {}
    for path in inputs:
        if path.stem in seen:
            raise GenPerceptError(
                f"{seen[path.stem]} and {path} would write the same output names; rename one or run them into separate --out folders"
            )
        seen[path.stem] = path
