"""Options several commands share, with the meanings the core gives them (choices.py, tasks.py)."""

import argparse

from ..choices import FLIP_AVERAGE_CHOICES, processing_resolution_choice
from ..conventions import NORMAL_CONVENTIONS
from ..errors import GenPerceptError
from ..map_files import FORMATS
from ..tasks import DEFAULT_TASKS, TASKS


def add_prediction_options(command):
    """What to predict and how to write it: the options of predict and batch."""
    add_task_option(command)
    command.add_argument("--model", default=None,
                         help="model folder or Hugging Face repo id of any supported family: GenPercept, Marigold, "
                              "E2E-FT, Lotus, DMP (default: the embedded model)")
    command.add_argument("--base", default=None,
                         help="DMP only: the Stable Diffusion v1.4 folder or repo id its LoRA goes onto")
    command.add_argument("--steps", type=_at_least_one, default=None,
                         help="denoising steps of models that denoise (Marigold, LCM, DMP; default: the model's)")
    command.add_argument("--ensemble-size", type=_at_least_one, default=1,
                         help="models that start from noise (Marigold, LCM, Lotus-G): predict N times and merge, and "
                              "write an uncertainty map (default: 1)")
    command.add_argument("--seed", type=int, default=0, help="seed of the noise of models that use it (default: 0)")
    command.add_argument("--vae-tiling", choices=("auto", "on", "off"), default="auto",
                         help="encode and decode in overlapping tiles: bounded memory at any resolution, slightly "
                              "different maps; auto = above 768x768 processed pixels")
    command.add_argument("--detail", type=_at_least_one, default=1, metavar="N",
                         help="for photos much larger than the processing resolution: also predict N x N overlapping "
                              "tiles at the processing resolution and merge them into the whole photo's maps (sharper "
                              "edges; N*N + 1 passes; default 1 = off)")
    command.add_argument("--format", choices=FORMATS, default="png16", help="map file format (default: png16)")
    add_processing_resolution_option(command)
    command.add_argument("--batch-size", type=int, default=1,
                         help="images per forward pass (consecutive images of one size; default 1)")
    add_flip_average_option(command)
    command.add_argument("--normal-convention", choices=NORMAL_CONVENTIONS, default="opengl",
                         help="green-channel convention of normal colour encodings (png16 and previews)")
    command.add_argument("--raw", action="store_true",
                         help="write the network's raw [0,1] output instead of the documented convention")
    command.add_argument("--no-preview", action="store_true", help="skip the 8-bit preview PNGs")
    command.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    command.add_argument("--threads", type=_at_least_one, default=None,
                         help="CPU threads for the networks (default: torch's choice, one per physical core); fewer "
                              "can be faster on a busy machine")
    command.add_argument("--dtype", default="float32",
                         help="float32 (default), float16 (GPU only) or bfloat16 (GPUs, and CPUs with bf16 units: "
                              "about 2x faster there; docs/performance.md)")
    command.add_argument("--vae", default=None, help="use this VAE folder instead of the model's vae/")
    command.add_argument("--text-encoder", default=None,
                         help="folder with text_encoder/ + tokenizer/ to compute the empty-text embedding once")
    command.add_argument("--offline", action="store_true", help="never download; use local files only")
    command.add_argument("--max-pixels", type=int, default=None,
                         help="the largest photo to read, in pixels (default: 100 MP, or $GENPERCEPT_MAX_PIXELS); "
                              "memory grows with it")


def batch_options(args):
    """The BatchOptions of parsed prediction options."""
    from ..batch.job import BatchOptions

    return BatchOptions(out=args.out, tasks=tuple(args.task) if args.task else None, model=args.model, format=args.format,
                        processing_res=args.processing_res, flip_average=FLIP_AVERAGE_CHOICES[args.flip_average],
                        convention=args.normal_convention, raw=args.raw, previews=not args.no_preview,
                        batch_size=args.batch_size, device=args.device, dtype=args.dtype, vae=args.vae,
                        text_encoder=args.text_encoder, allow_download=not args.offline, max_pixels=args.max_pixels,
                        base=args.base, steps=args.steps, ensemble_size=args.ensemble_size, seed=args.seed,
                        vae_tiling=args.vae_tiling, threads=args.threads, detail=args.detail)


def add_task_option(command, default=None):
    command.add_argument("--task", nargs="+", default=default, metavar="TASK",
                         help=f"one or more of {', '.join(TASKS)} (default: {' '.join(DEFAULT_TASKS)} where the model "
                              "has them, else its tasks)")


def add_flip_average_option(command):
    command.add_argument("--flip-average", choices=FLIP_AVERAGE_CHOICES, default="auto",
                         help="also predict the mirrored photo and average (twice the time, steadier maps); "
                              "auto = the model's default (embedded model: every task; released checkpoints: none)")


def add_processing_resolution_option(command):
    command.add_argument("--processing-res", type=_processing_resolution, default=None, metavar="N|native|default",
                         help="longest side the model sees; 0 or 'native' = the photo's size; 'default' (or leave "
                              "it out) = the model's for each task (768 for the release)")


def _processing_resolution(text: str):
    try:
        return processing_resolution_choice(text)
    except GenPerceptError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        return width, height
    except ValueError as exc:
        raise GenPerceptError(f"size {text!r} must look like WIDTHxHEIGHT, e.g. 192x144") from exc
