"""Commands that make data and models: ``make-data``, ``mix-data``, ``recomposite``, ``fetch-assets``, ``train-vae``, ``train``, ``train-default``."""

from pathlib import Path

from ..errors import GenPerceptError
from ..tasks import task_with_truth
from .options import parse_size


def add_commands(commands):
    data = commands.add_parser("make-data", help="render the synthetic training/test dataset")
    data.add_argument("out", type=Path)
    data.add_argument("--renderer", choices=("numpy", "cycles"), default="numpy",
                      help="numpy: the fast procedural ray caster; cycles: photographic scenes path-traced by Blender "
                           "(needs bpy and the assets of `genpercept fetch-assets`)")
    data.add_argument("--assets", type=Path, default=None,
                      help="--renderer cycles: the assets folder (default: $GENPERCEPT_ASSETS or "
                           "~/.cache/genpercept/photographic-assets)")
    data.add_argument("--samples", type=int, default=None, help="--renderer cycles: path-tracing samples per pixel "
                                                                 "(default 32, denoised)")
    data.add_argument("--sequence-frames", type=int, default=0,
                      help="--renderer cycles: also render a moving-camera sequence of N frames (split 'sequence', "
                           "held-out assets) for temporal flicker metrics")
    data.add_argument("--train", type=int, default=2400, help="training scenes")
    data.add_argument("--test", type=int, default=120, help="held-out test scenes")
    data.add_argument("--size", default="256x192", help="WIDTHxHEIGHT")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--workers", type=int, default=2)
    data.set_defaults(run=run_make_data)

    mix = commands.add_parser("mix-data", help="link several datasets' scenes into one training folder (distinct ids), "
                                               "a small one repeated to weigh more")
    mix.add_argument("out", type=Path)
    mix.add_argument("sources", nargs="+", metavar="FOLDER[:SPLIT][:xREPEAT]",
                     help="e.g. cache/photographic:train:x4 data:train (split 'train' unless named)")
    mix.set_defaults(run=run_mix_data)

    composite = commands.add_parser("recomposite", help="matte training scenes: each subject of a dataset over other "
                                                        "scenes' photos, as matting sets are made")
    composite.add_argument("out", type=Path)
    composite.add_argument("--subjects", type=Path, required=True, help="dataset whose scenes have subjects (alpha)")
    composite.add_argument("--backgrounds", type=Path, nargs="+", required=True,
                           help="datasets whose subject-free photos become backgrounds")
    composite.add_argument("--copies", type=int, default=6, help="new photos per subject")
    composite.add_argument("--seed", type=int, default=0)
    composite.set_defaults(run=run_recomposite)

    assets = commands.add_parser("fetch-assets", help="download and unpack the HDRIs, models and textures of "
                                                      "`make-data --renderer cycles` (npm and apt-get)")
    assets.add_argument("out", type=Path, nargs="?", default=None,
                        help="assets folder (default: $GENPERCEPT_ASSETS or ~/.cache/genpercept/photographic-assets)")
    assets.set_defaults(run=run_fetch_assets)

    vae = commands.add_parser("train-vae", help="train a VAE from scratch (reconstruction of photos and maps)")
    _add_training_options(vae, 600, 1e-3)
    vae.set_defaults(run=run_train)
    unet = commands.add_parser("train", help="train or fine-tune a task UNet with GenPercept's recipe")
    _add_training_options(unet, 30000, 3e-5)
    unet.add_argument("--task", required=True, help="depth, normal, matte or dis (any task with ground truth)")
    unet.add_argument("--vae", type=Path, default=None, help="frozen VAE folder (e.g. MODEL/vae); not for --method dmp")
    unet.add_argument("--method", choices=("genpercept", "dmp"), default="genpercept",
                      help="genpercept: one step, the whole UNet (or --lora-rank); dmp: DMP's multi-step "
                           "interpolation, a rank-4 LoRA over --base, written as a DMP checkpoint folder (--out)")
    unet.add_argument("--base", type=Path, default=None,
                      help="--method dmp: the Stable Diffusion folder (unet/, vae/, scheduler/) the LoRA goes onto")
    unet.add_argument("--init", type=Path, default=None,
                      help="UNet folder to fine-tune (e.g. a GenPercept unet_depth_v2); default: the small config from scratch")
    unet.add_argument("--embedding-model", type=Path, default=None,
                      help="model folder holding the empty-text embedding and settings (default: the VAE's parent)")
    unet.add_argument("--lora-rank", type=int, default=0, help="train LoRA adapters of this rank instead of all weights")
    unet.add_argument("--decoder", choices=("vae", "dpt"), default="vae",
                      help="vae: the UNet through the frozen VAE decoder (GenPercept's main recipe); dpt: a DPT head "
                           "on the UNet's features (--init) instead of the decoder (scalar tasks)")
    unet.add_argument("--joint", action="store_true", help="--decoder dpt: fine-tune the UNet with the head "
                                                           "(default: the UNet is frozen)")
    unet.add_argument("--head-width", type=int, default=64,
                      help="--decoder dpt: the head's fusion width (GenPercept's release: 256)")
    unet.add_argument("--latent-steps", type=int, default=0,
                      help="the first N of --steps regress the encoded target latent (cheap: no decoder pass), "
                           "the rest use the pixel-space losses")
    unet.add_argument("--augmented-copies", type=int, default=0,
                      help="also train the latent stage on N randomly cropped, mirrored and recoloured copies of "
                           "every scene (encoded once at the start)")
    unet.set_defaults(run=run_train)

    default = commands.add_parser("train-default", help="reproduce the embedded default model (data, VAE, UNets, export)")
    default.add_argument("--workdir", type=Path, default=Path("training_runs/default"))
    default.add_argument("--export-to", type=Path, default=None, help="default: the package's default_model/")
    default.add_argument("--workers", type=int, default=2)
    default.add_argument("--scale", type=float, default=1.0, help="< 1 shortens every stage (smoke runs)")
    default.add_argument("--photographic", type=Path, default=None,
                         help="a photographic dataset already rendered (`make-data --renderer cycles`) for the last "
                              "stage; default: rendered into WORKDIR/photographic")
    default.add_argument("--assets", type=Path, default=None,
                         help="the Cycles assets (`genpercept fetch-assets`; default: $GENPERCEPT_ASSETS or "
                              "~/.cache/genpercept/photographic-assets)")
    default.set_defaults(run=run_train_default)


def _add_training_options(command, steps, lr):
    command.add_argument("dataset", type=Path, help="dataset folder (see docs/training.md, 'Dataset layout')")
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


def run_make_data(args) -> int:
    from ..data.dataset import generate_dataset

    options = {"assets": args.assets, "samples": args.samples} if args.renderer == "cycles" else None
    if args.sequence_frames and args.renderer != "cycles":
        raise GenPerceptError("--sequence-frames needs --renderer cycles")
    generate_dataset(args.out, {"train": args.train, "test": args.test}, args.seed, parse_size(args.size), args.workers,
                     renderer=args.renderer, options=options)
    if args.sequence_frames:
        from ..data.dataset import read_settings
        from ..data.photographic.sequences import render_sequence

        settings = read_settings(args.out)
        render_sequence(args.out, args.seed, args.sequence_frames, parse_size(args.size), settings["assets"],
                        settings["samples"])
    print(f"wrote {args.out}")
    return 0


def run_mix_data(args) -> int:
    from ..data.mixing import MixSource, mix_datasets

    print(f"wrote {mix_datasets(args.out, [MixSource.parse(text) for text in args.sources])}")
    return 0


def run_recomposite(args) -> int:
    from ..data.recomposite import recomposite_subjects

    print(f"wrote {recomposite_subjects(args.subjects, args.backgrounds, args.out, args.copies, args.seed)}")
    return 0


def run_fetch_assets(args) -> int:
    from ..data.photographic.assets import fetch_assets
    from ..data.photographic.scenes import DEFAULT_ASSETS

    root = fetch_assets(args.out or DEFAULT_ASSETS)
    print(f"wrote {root} (licences: {root / 'ATTRIBUTION.md'})")
    return 0


def run_train(args) -> int:
    width, height = parse_size(args.size)
    if args.command == "train":
        task_with_truth(args.task, "train")
    from ..training.config import TrainConfig

    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, grad_accumulation=args.grad_accumulation,
                         lr=args.lr, warmup=args.warmup, final_lr_fraction=args.final_lr_fraction, width=width,
                         height=height, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, device=args.device, dtype=args.dtype,
                         lora_rank=getattr(args, "lora_rank", 0), latent_steps=getattr(args, "latent_steps", 0),
                         augmented_copies=getattr(args, "augmented_copies", 0),
                         ema_decay=args.ema_decay)
    if args.command == "train" and args.method == "dmp":
        from ..training.dmp import train_dmp

        if args.base is None:
            raise GenPerceptError("--method dmp trains a LoRA over a Stable Diffusion folder: pass --base")
        result = train_dmp(args.dataset, args.task, args.base, args.out, config, resume=not args.no_resume,
                           scenes=args.scenes)
    elif args.command == "train" and args.vae is None:
        raise GenPerceptError("pass --vae with the frozen VAE folder the UNet is trained against (e.g. MODEL/vae)")
    elif args.command == "train-vae":
        from ..training.vae import train_vae

        result = train_vae(args.dataset, args.out, config, resume=not args.no_resume, scenes=args.scenes)
    elif args.decoder == "dpt":
        from ..training.dpt_head import train_dpt_head

        result = train_dpt_head(args.dataset, args.task, args.vae, args.init, args.out, config, freeze_unet=not args.joint,
                                fusion=args.head_width, embedding_model=args.embedding_model,
                                resume=not args.no_resume, scenes=args.scenes)
    else:
        from ..training.unet import train_unet

        result = train_unet(args.dataset, args.task, args.vae, args.out, config, init_unet=args.init,
                            embedding_model=args.embedding_model, resume=not args.no_resume, scenes=args.scenes)
    print(f"wrote {result}")
    return 0


def run_train_default(args) -> int:
    from ..training.recipe import build_default_model

    kwargs = {"export_to": args.export_to} if args.export_to else {}
    model = build_default_model(args.workdir, workers=args.workers, scale=args.scale, photographic=args.photographic,
                                assets=args.assets, **kwargs)
    print(f"wrote {model}")
    return 0
