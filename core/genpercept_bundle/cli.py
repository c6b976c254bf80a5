"""The ``genpercept`` command line: predict maps for photos, prepare model embeddings."""

import argparse
import sys
from pathlib import Path

import numpy as np

from .allocator import keep_freed_memory
from .conventions import NORMAL_CONVENTIONS, colorize_depth, near_bright, normals_to_rgb
from .errors import GenPerceptError
from .predictor import FLIP_AVERAGE_CHOICES
from .tasks import TASKS, get_task
from .writers import FORMATS, SUFFIXES, write_json, write_map, write_png8

DEFAULT_TASKS = ["depth", "normal", "matte"]


def add_flip_average_option(command):
    command.add_argument("--flip-average", choices=FLIP_AVERAGE_CHOICES, default="auto",
                         help="also predict the mirrored photo and average (twice the time, steadier maps); "
                              "auto = the model's default (embedded model: every task; released checkpoints: none)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpercept", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="depth / normal / matte maps for images")
    predict.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    predict.add_argument("--task", nargs="+", default=DEFAULT_TASKS, metavar="TASK",
                         help=f"one or more of {', '.join(TASKS)} (default: depth normal matte)")
    predict.add_argument("--model", default=None,
                         help="model folder in the GenPercept layout or Hugging Face repo id (default: the embedded model)")
    predict.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: ./out)")
    predict.add_argument("--format", choices=FORMATS, default="png16", help="map file format (default: png16)")
    predict.add_argument("--processing-res", type=int, default=None,
                         help="longest side the model sees; 0 = native size (default: the model's for each task, 768 for "
                              "the release)")
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

    embedding = commands.add_parser("embedding", help="compute and cache a model's empty-text embedding")
    embedding.add_argument("model", type=Path, help="model folder")
    source = embedding.add_mutually_exclusive_group(required=True)
    source.add_argument("--text-encoder", type=Path, help="folder with an SD2-family text_encoder/ + tokenizer/")
    source.add_argument("--npy", type=Path, help="a padded [77,D] empty_text_embed.npy")
    source.add_argument("--from-github", action="store_true",
                        help="download GenPercept's own GenPercept_v1/empty_text_embed.npy (needs internet)")
    _add_training_commands(commands)
    return parser


def _add_training_commands(commands):
    data = commands.add_parser("make-data", help="render the synthetic training/test dataset")
    data.add_argument("out", type=Path)
    data.add_argument("--train", type=int, default=2400, help="training scenes")
    data.add_argument("--test", type=int, default=120, help="held-out test scenes")
    data.add_argument("--size", default="256x192", help="WIDTHxHEIGHT")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--workers", type=int, default=2)

    def training_options(command, steps, lr):
        command.add_argument("dataset", type=Path, help="dataset folder (see 'Dataset layout' in the README)")
        command.add_argument("--out", type=Path, required=True, help="run / model folder")
        command.add_argument("--steps", type=int, default=steps)
        command.add_argument("--batch-size", type=int, default=8)
        command.add_argument("--grad-accumulation", type=int, default=1)
        command.add_argument("--lr", type=float, default=lr)
        command.add_argument("--warmup", type=int, default=100)
        command.add_argument("--final-lr-fraction", type=float, default=0.01,
                             help="the learning rate decays exponentially to this fraction of --lr")
        command.add_argument("--size", default="192x144", help="training WIDTHxHEIGHT")
        command.add_argument("--checkpoint-every", type=int, default=200)
        command.add_argument("--device", default="cpu")
        command.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                             help="autocast dtype of the forward pass")
        command.add_argument("--seed", type=int, default=2024)
        command.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
        command.add_argument("--ema-decay", type=float, default=0.0,
                             help="save an exponential moving average of the weights (e.g. 0.999); 0 = the last step's")
        command.add_argument("--scenes", type=int, default=None, help="train on the first N scenes only")

    vae = commands.add_parser("train-vae", help="train a VAE from scratch (reconstruction of photos and maps)")
    training_options(vae, 600, 1e-3)
    unet = commands.add_parser("train", help="train or fine-tune a task UNet with GenPercept's recipe")
    training_options(unet, 30000, 3e-5)
    unet.add_argument("--task", required=True, help="depth, normal or matte")
    unet.add_argument("--vae", type=Path, required=True, help="frozen VAE folder (e.g. MODEL/vae)")
    unet.add_argument("--init", type=Path, default=None,
                      help="UNet folder to fine-tune (e.g. a GenPercept unet_depth_v2); default: the small config from scratch")
    unet.add_argument("--embedding-model", type=Path, default=None,
                      help="model folder holding the empty-text embedding (default: the VAE's parent)")
    unet.add_argument("--lora-rank", type=int, default=0, help="train LoRA adapters of this rank instead of all weights")
    unet.add_argument("--latent-steps", type=int, default=0,
                      help="the first N of --steps regress the encoded target latent (cheap: no decoder pass), "
                           "the rest use the pixel-space losses")
    unet.add_argument("--augmented-copies", type=int, default=0,
                      help="also train the latent stage on N randomly cropped, mirrored and recoloured copies of "
                           "every scene (encoded once at the start)")

    evaluate = commands.add_parser("eval", help="score a model on a dataset folder")
    evaluate.add_argument("dataset", type=Path)
    evaluate.add_argument("--model", default=None, help="model folder or hub id (default: the embedded model)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--task", nargs="+", default=DEFAULT_TASKS)
    evaluate.add_argument("--processing-res", type=int, default=None)
    add_flip_average_option(evaluate)
    evaluate.add_argument("--limit", type=int, default=None, help="first N samples only")
    evaluate.add_argument("--baselines", action="store_true", help="also score constant and vertical-gradient depth")
    evaluate.add_argument("--json", type=Path, default=None, help="write the means and every sample's metrics here")
    evaluate.add_argument("--device", default="auto")

    default = commands.add_parser("train-default", help="reproduce the embedded default model (data, VAE, UNets, export)")
    default.add_argument("--workdir", type=Path, default=Path("training_runs/default"))
    default.add_argument("--export-to", type=Path, default=None, help="default: the package's default_model/")
    default.add_argument("--workers", type=int, default=2)
    default.add_argument("--scale", type=float, default=1.0, help="< 1 shortens every stage (smoke runs)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        runner = {"predict": run_predict, "embedding": run_embedding, "make-data": run_make_data,
                  "train-vae": run_train, "train": run_train, "eval": run_eval, "train-default": run_train_default}
        return runner[args.command](args)
    except GenPerceptError as error:
        print(f"genpercept: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genpercept: interrupted; finished files are kept, none is half-written", file=sys.stderr)
        return 130


def run_predict(args) -> int:
    from tqdm import tqdm

    from .image_io import list_inputs, load_image
    from .predictor import GenPerceptPredictor

    tasks = list(dict.fromkeys(get_task(name).name for name in args.task))
    inputs = list_inputs(args.inputs)
    _check_unique_stems(inputs)
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
            write_outputs(args, path, prediction)
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


def write_outputs(args, source: Path, prediction) -> list[Path]:
    """Map, previews and provenance JSON for one image and task."""
    task, stem, out = prediction.task, source.stem, args.out
    values = prediction.raw[0] if args.raw else prediction.maps[0]
    if task == "normal" and not args.raw and args.format == "png16":
        values = normals_to_rgb(values, args.normal_convention)
    written = [write_map(out / f"{stem}_{task}{SUFFIXES[args.format]}", values, args.format)]
    meta = {"source": str(source), **prediction.provenance,
            "file_values": "raw network output in [0,1]" if args.raw else _file_values(task, args)}
    if not args.no_preview:
        written += _write_previews(out, stem, prediction, args.normal_convention, meta)
    meta["files"] = [p.name for p in written]
    written.append(write_json(out / f"{stem}_{task}.json", meta))
    return written


def _file_values(task: str, args) -> str:
    if task == "normal":
        if args.format == "png16":
            return f"(n + 1) / 2 per channel, R = +X right, G = +Y {'down (DirectX)' if args.normal_convention == 'directx' else 'up (OpenGL)'}, B = +Z toward viewer"
        return "unit normals [H,W,3], camera space: +X right, +Y up, +Z toward the viewer"
    return get_task(task).meaning


def _write_previews(out: Path, stem: str, prediction, convention: str, meta: dict) -> list[Path]:
    task, maps = prediction.task, prediction.maps[0]
    if task == "depth":
        return [
            write_png8(out / f"{stem}_depth_preview.png", colorize_depth(maps), meta),
            write_png8(out / f"{stem}_depth_controlnet.png", _to_uint8(near_bright(maps)), meta),
        ]
    if task == "normal":
        return [write_png8(out / f"{stem}_normal_preview.png", _to_uint8(normals_to_rgb(maps, convention)), meta)]
    return [write_png8(out / f"{stem}_{task}_preview.png", _to_uint8(maps), meta)]


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def run_embedding(args) -> int:
    from .text_embedding import (download_official_npy, embeddings_from_npy, embeddings_from_text_encoder,
                                 save_embedding_cache)

    if not args.model.is_dir():
        raise GenPerceptError(f"{args.model} is not a folder")
    if args.text_encoder:
        embeddings = embeddings_from_text_encoder(args.text_encoder)
    else:
        npy = args.npy or download_official_npy(args.model / "empty_text_embed.npy")
        embeddings = embeddings_from_npy(npy)
    target = save_embedding_cache(args.model, embeddings)
    print(f"wrote {target} (v2 {list(embeddings['v2'].shape)}, v1 {list(embeddings['v1'].shape)})")
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        return width, height
    except ValueError as exc:
        raise GenPerceptError(f"size {text!r} must look like WIDTHxHEIGHT, e.g. 192x144") from exc


def run_make_data(args) -> int:
    from .dataset import generate_dataset

    generate_dataset(args.out, {"train": args.train, "test": args.test}, args.seed, _size(args.size), args.workers)
    print(f"wrote {args.out}")
    return 0


def run_train(args) -> int:
    from .training import TrainConfig, train_unet, train_vae

    width, height = _size(args.size)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, grad_accumulation=args.grad_accumulation,
                         lr=args.lr, warmup=args.warmup, final_lr_fraction=args.final_lr_fraction, width=width,
                         height=height, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, device=args.device, dtype=args.dtype,
                         lora_rank=getattr(args, "lora_rank", 0), latent_steps=getattr(args, "latent_steps", 0),
                         augmented_copies=getattr(args, "augmented_copies", 0),
                         ema_decay=args.ema_decay)
    if args.command == "train-vae":
        result = train_vae(args.dataset, args.out, config, resume=not args.no_resume, scenes=args.scenes)
    else:
        result = train_unet(args.dataset, args.task, args.vae, args.out, config, init_unet=args.init,
                            embedding_model=args.embedding_model, resume=not args.no_resume, scenes=args.scenes)
    print(f"wrote {result}")
    return 0


def run_eval(args) -> int:
    from .evaluation import format_table, mean_scores, score_samples
    from .predictor import GenPerceptPredictor

    tasks = [get_task(t).name for t in args.task]
    predictor = GenPerceptPredictor.from_pretrained(args.model, tasks, device=args.device)
    flip_average = FLIP_AVERAGE_CHOICES[args.flip_average]
    per_sample = score_samples(predictor, args.dataset, args.split, tasks, args.processing_res, args.limit,
                               args.baselines, flip_average=flip_average)
    results = mean_scores(per_sample)
    print(format_table(results))
    if args.json:
        write_json(args.json, {"dataset": str(args.dataset), "split": args.split, "model": args.model or "default",
                               "processing_res": {task: predictor.processing_resolution(task, args.processing_res)
                                                  for task in tasks},
                               "flip_average": {task: predictor.averages_with_mirror(task, flip_average) for task in tasks},
                               "results": results, "per_sample": per_sample})
    return 0


def run_train_default(args) -> int:
    from .default_model import build_default_model

    kwargs = {"export_to": args.export_to} if args.export_to else {}
    print(f"wrote {build_default_model(args.workdir, workers=args.workers, scale=args.scale, **kwargs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
