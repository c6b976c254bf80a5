"""One training folder from several datasets: their scenes linked side by side under distinct ids.

The trainer reads one folder; to train on photographic Cycles scenes beside the fast numpy scenes (or on your own
data beside ours), ``mix_datasets`` links each source's scenes into ``OUT/<split>/`` as ``<source>-<copy>-<id>``,
``repeat`` times each, which weights a small source against a large one without copying any file.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..atomic_files import write_json
from ..errors import GenPerceptError
from .dataset import FORMAT, read_settings, sample_ids

SETTINGS_THAT_MUST_AGREE = ("depth_scale", "zero_depth")


@dataclass(frozen=True)
class MixSource:
    folder: Path
    split: str = "train"
    repeat: int = 1
    limit: int | None = None  # the first N scenes (by id) only

    @classmethod
    def parse(cls, text: str) -> "MixSource":
        """``FOLDER[:SPLIT][:xREPEAT]``, e.g. ``cache/photographic:train:x4``."""
        folder, *rest = text.split(":")
        split, repeat = "train", 1
        for part in rest:
            if part.startswith("x") and part[1:].isdigit() and int(part[1:]) > 0:
                repeat = int(part[1:])
            elif part:
                split = part
        return cls(Path(folder), split, repeat)


def mix_datasets(out: Path, sources: list[MixSource], split: str = "train") -> Path:
    """Link the scenes of ``sources`` into ``out/split`` (made anew each time) and write ``out/dataset.json``."""
    out = Path(out)
    if not sources:
        raise GenPerceptError("name at least one dataset to mix")
    settings = [read_settings(source.folder) for source in sources]
    for key in SETTINGS_THAT_MUST_AGREE:
        values = {s[key] for s in settings}
        if len(values) > 1:
            raise GenPerceptError(f"cannot mix datasets whose {key} differ ({', '.join(map(str, values))}): "
                                  "re-export one of them with the other's")
    scene_ids = [sample_ids(source.folder, source.split)[:source.limit] for source in sources]
    target = out / split
    if target.is_dir():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    counts = []
    for index, (source, ids) in enumerate(zip(sources, scene_ids)):
        files = _files_by_scene(source.folder / source.split)  # one listing: a glob per scene lists the folder again
        for copy in range(source.repeat):
            for scene in ids:
                for file in files[scene]:
                    _link(file, target / f"s{index}-{copy}-{file.name}")
        counts.append(len(ids) * source.repeat)
    write_json(out / "dataset.json", {**FORMAT, **{key: settings[0][key] for key in SETTINGS_THAT_MUST_AGREE},
                                      "mixed_from": [{"folder": str(s.folder.resolve()), "split": s.split,
                                                      "repeat": s.repeat, "scenes": n}
                                                     for s, n in zip(sources, counts)]})
    return out


def _files_by_scene(folder: Path) -> dict[str, list[Path]]:
    """``<id>_<kind>.<ext>`` files (the dataset layout) grouped by id."""
    files = {}
    for file in folder.iterdir():
        files.setdefault(file.name.rsplit("_", 1)[0], []).append(file)
    return files


def _link(file: Path, link: Path):
    try:
        os.symlink(file.resolve(), link)
    except OSError:  # file systems without symbolic links
        shutil.copyfile(file, link)
