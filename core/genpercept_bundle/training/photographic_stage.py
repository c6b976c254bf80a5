"""The recipe's photographic stage: every task UNet continued on Cycles scenes that look like photographs.

The numpy scenes teach geometry cheaply but look like nothing a user photographs, so the model trained on them alone
is close to a trivial guess on real photos. This stage renders a few hundred photographic scenes with Cycles
(``data/photographic``; rendered once, resumable, the slowest part of the recipe) and continues each task's UNet on
them, mixed with fresh numpy scenes so it keeps what those taught: a small photographic set repeated beside a larger
numpy one (``data/mixing.py``); the matte also on the photographic subjects recomposited over other scenes' photos
(``data/recomposite.py``), the way matting sets are made. What each choice did on real photos: docs/experiments.md.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from ..data.dataset import generate_dataset
from ..data.mixing import MixSource, mix_datasets
from ..data.recomposite import recomposite_subjects
from ..tasks import get_task
from .config import TrainConfig, scaled_count
from .loop import log_now
from .unet import train_unet

PHOTOGRAPHIC_DATA = {"train": 254, "test": 60, "size": (256, 192), "seed": 0, "samples": 32}
EXTRA_SYNTHETIC = {"train": 662, "seed": 1}  # numpy scenes the earlier stages never saw


@dataclass(frozen=True)
class Stage:
    task: str
    photographic: tuple[int, int]  # (first N photographic scenes, each repeated K times)
    synthetic: int  # the first N extra numpy scenes
    recomposited: int  # + K photos per subject of the first N photographic scenes over subject-free photos (matte)
    config: TrainConfig
    numpy_backgrounds: bool = False  # recomposite over the extra numpy scenes' subject-free photos too


def _config(steps, latent, lr, warmup, size):
    return TrainConfig(steps=steps, latent_steps=latent, batch_size=8, lr=lr, warmup=warmup, final_lr_fraction=0.05,
                       ema_decay=0.999, width=size[0], height=size[1])


# In order; a task's stages continue each other, the first continues the earlier stages' UNet.
STAGES = (
    Stage("depth", (179, 4), 662, 0, _config(2650, 2500, 5e-4, 100, (256, 192))),
    Stage("normal", (146, 4), 593, 0, _config(2650, 2500, 5e-4, 100, (192, 144))),
    Stage("matte", (146, 4), 593, 0, _config(2650, 2500, 5e-4, 100, (192, 144))),
    Stage("matte", (168, 2), 300, 6, _config(1700, 1600, 3e-4, 50, (192, 144))),
    Stage("matte", (254, 2), 300, 10, _config(1700, 1600, 2e-4, 50, (192, 144)), numpy_backgrounds=True),
)


def render_stage_data(workdir: Path, photographic: Path | None, assets, scale: float, workers: int, log):
    """The photographic set (rendered into ``workdir/photographic`` unless ``photographic`` names a ready one) and
    the extra numpy scenes."""
    counts = photographic_data_counts(scale)
    if photographic is None:
        log(f"photographic: rendering {counts['train']} + {counts['test']} Cycles scenes (resumable)")
        photographic = generate_dataset(workdir / "photographic", {"train": counts["train"], "test": counts["test"]},
                                        PHOTOGRAPHIC_DATA["seed"], PHOTOGRAPHIC_DATA["size"], workers=1,
                                        renderer="cycles",
                                        options={"assets": assets, "samples": PHOTOGRAPHIC_DATA["samples"]})
    synthetic = generate_dataset(workdir / "synthetic_extra", {"train": counts["synthetic"]}, EXTRA_SYNTHETIC["seed"],
                                 PHOTOGRAPHIC_DATA["size"], workers)
    return Path(photographic), synthetic


def stage_chains(workdir: Path, model: Path, unets: dict[str, Path], photographic: Path, synthetic: Path,
                 scale: float) -> list[tuple]:
    """One job per task (``train_stage_chain``): its stages in order, from ``unets[task]`` (the UNet to continue);
    the costliest first (steps x pixels), so two workers finish together."""
    chains = {}
    for index, stage in enumerate(scaled_stages(scale)):
        chains.setdefault(stage.task, []).append((index, stage))
    jobs = [(workdir, model, unets[task], stages, photographic, synthetic) for task, stages in chains.items()]
    return sorted(jobs, key=lambda job: -sum(s.config.steps * s.config.width * s.config.height for _, s in job[3]))


def train_stage_chain(job, log=log_now) -> tuple[str, Path]:
    """Run one task's stages (a job of ``stage_chains``); returns (task, its last UNet folder)."""
    workdir, model, unet, stages, photographic, synthetic = job
    for index, stage in stages:
        run = workdir / "photographic_stages" / f"{index}_{stage.task}"
        folder = run / get_task(stage.task).unet_folders[0]
        if not folder.is_dir():
            data = _stage_data(run, stage, photographic, synthetic)
            train_unet(data, stage.task, model / "vae", run, stage.config, init_unet=unet, embedding_model=model,
                       log=log)
        unet = folder
    return stages[-1][1].task, unet


def scaled_stages(scale: float) -> list[Stage]:
    """STAGES with ``scale`` < 1 shortening their training and data (smoke runs)."""
    return [replace(stage, photographic=(scaled_count(stage.photographic[0], scale), stage.photographic[1]),
                    synthetic=scaled_count(stage.synthetic, scale), config=stage.config.scaled(scale))
            for stage in STAGES]


def _stage_data(run: Path, stage: Stage, photographic: Path, synthetic: Path) -> Path:
    first_photographic, repeat = stage.photographic
    sources = [MixSource(photographic, repeat=repeat, limit=first_photographic),
               MixSource(synthetic, limit=stage.synthetic)]
    if stage.recomposited:
        subjects = mix_datasets(run / "subjects", [MixSource(photographic, limit=first_photographic)])
        backgrounds = [subjects, synthetic] if stage.numpy_backgrounds else [subjects]
        sources.append(MixSource(recomposite_subjects(subjects, backgrounds, run / "recomposited",
                                                      stage.recomposited)))
    return mix_datasets(run / "data", sources)


def photographic_data_counts(scale: float) -> dict:
    return {"train": scaled_count(PHOTOGRAPHIC_DATA["train"], scale),
            "test": scaled_count(PHOTOGRAPHIC_DATA["test"], scale, least=2),
            "synthetic": scaled_count(EXTRA_SYNTHETIC["train"], scale)}
