"""The perception tasks: one registry entry says everything the bundle does differently for a task.

Adding a task means one ``Task`` here (plus a loss in ``training/losses.py`` or metrics in
``evaluation/metrics.py`` when it needs new ones); predicting, saving, previews, mirroring,
evaluation and training all read the entry. Standard library only, so every front end can import it.
"""

from dataclasses import dataclass

from .errors import GenPerceptError


@dataclass(frozen=True)
class Task:
    name: str
    # UNet folders of the release, preferred first. A ``_v1`` folder was
    # trained with the padded [1,77,D] empty-text embedding.
    unet_folders: tuple[str, ...]
    # 1: the three decoded channels are averaged (a scalar map); 3: kept.
    channels: int
    meaning: str
    # How the map of a mirrored photo relates to the photo's own, for flip averaging and training flips:
    # "map" mirrors back as is, "normal" also negates X, None cannot be averaged
    # (colour codes of classes blend into other classes).
    mirror: str | None = "map"
    # Ground truth in the dataset layout: the file <id>_<truth>.png and the Sample field of that name
    # ("depth", "normal", "alpha", "mask"); None: no ground-truth format, so no training or evaluation.
    truth: str | None = None
    # What the UNet learns to produce from the ground truth (training/targets.py):
    # "relative_depth" (2 %/98 % quantiles to [-1, 1], sky far), "unit_vectors", "fraction" (x * 2 - 1).
    target: str | None = None
    loss: str | None = None  # training/losses.py LOSSES
    metrics: str | None = None  # evaluation/metrics.py METRICS
    # The map holds unit vectors (the network's [0, 1] output -> normalise(2p - 1)), colour-encoded as (n + 1) / 2 in
    # image files and previews, with a convention for the green channel.
    unit_vectors: bool = False
    # map_files previews: "depth" (turbo colours + a ControlNet near-bright map), "normal" (colour encoded),
    # "grey" (the values as they are)
    preview: str = "grey"


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("depth", ("unet_depth_v2",), 1, "relative depth, 0 = near, 1 = far", truth="depth",
             target="relative_depth", loss="depth", metrics="depth", preview="depth"),
        Task("normal", ("unet_normal_v2",), 3, "camera-space unit normals, +X right, +Y up, +Z toward the viewer",
             "normal", truth="normal", target="unit_vectors", loss="angular", metrics="normal", unit_vectors=True,
             preview="normal"),
        Task("matte", ("unet_matting_v2", "unet_matting_v1"), 1, "alpha, 0 = background, 1 = foreground",
             truth="alpha", target="fraction", loss="mse", metrics="matte"),
        Task("dis", ("unet_dis_v2", "unet_dis_v1"), 1, "dichotomous segmentation mask, soft, 1 = object",
             truth="mask", target="fraction", loss="mse", metrics="mask"),
        Task("disparity", ("unet_disparity_v2",), 1, "relative disparity, 0 = far, 1 = near"),
        Task("seg", ("unet_seg_v2",), 3, "colour-coded semantic segmentation (Hypersim classes)", None),
    )
}

DEFAULT_TASKS = ("depth", "normal", "matte")  # what the embedded model predicts, and the front ends by default
ALIASES = {"matting": "matte", "normals": "normal", "alpha": "matte"}


def get_task(name: "str | Task") -> Task:
    if isinstance(name, Task):
        return name
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise GenPerceptError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[key]


def task_with_truth(name: "str | Task", purpose: str) -> Task:
    """``name``'s Task if it has a ground-truth format (needed to ``purpose``: "train", "evaluate"), else a
    GenPerceptError naming the tasks that have one."""
    task = get_task(name)
    if task.truth is None:
        usable = ", ".join(t.name for t in TASKS.values() if t.truth)
        raise GenPerceptError(f"cannot {purpose} {task.name}: the dataset layout has no ground truth for it "
                              f"(tasks with ground truth: {usable})")
    return task


def embedding_kind(unet_folder: str) -> str:
    """'v1' checkpoints need the padded [1,77,D] embedding, 'v2' the unpadded [1,2,D] one."""
    return "v1" if unet_folder.endswith("_v1") else "v2"
