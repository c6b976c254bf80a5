"""The perception tasks and where the released checkpoints keep their UNets."""

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
    # How the map of a mirrored photo relates to the photo's own, for flip averaging:
    # "map" mirrors back as is, "normal" also negates X, None cannot be averaged
    # (colour codes of classes blend into other classes).
    mirror: str | None = "map"


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("depth", ("unet_depth_v2",), 1, "relative depth, 0 = near, 1 = far"),
        Task("normal", ("unet_normal_v2",), 3, "camera-space unit normals, +X right, +Y up, +Z toward the viewer",
             "normal"),
        Task("matte", ("unet_matting_v2", "unet_matting_v1"), 1, "alpha, 0 = background, 1 = foreground"),
        Task("dis", ("unet_dis_v2", "unet_dis_v1"), 1, "dichotomous segmentation mask, soft, 1 = object"),
        Task("disparity", ("unet_disparity_v2",), 1, "relative disparity, 0 = far, 1 = near"),
        Task("seg", ("unet_seg_v2",), 3, "colour-coded semantic segmentation (Hypersim classes)", None),
    )
}

ALIASES = {"matting": "matte", "normals": "normal", "alpha": "matte"}


def get_task(name: "str | Task") -> Task:
    if isinstance(name, Task):
        return name
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise GenPerceptError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[key]


def embedding_kind(unet_folder: str) -> str:
    """'v1' checkpoints need the padded [1,77,D] embedding, 'v2' the unpadded [1,2,D] one."""
    return "v1" if unet_folder.endswith("_v1") else "v2"
