"""A model's inference settings: the release's constants, or what ``genpercept_bundle.json`` says.

Released GenPercept checkpoints have no settings file and get the release's own values; our models
(the embedded default, models trained with ``genpercept train-default``) write one. Standard library only.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import GenPerceptError
from ..tasks import get_task

SETTINGS_NAME = "genpercept_bundle.json"
# A settings file (which may come with a download) may not ask for more: the VAE's memory grows with the square
# of the resolution. An explicit --processing-res can go higher.
MAX_RESOLUTION = 2048


@dataclass(frozen=True)
class ModelSettings:
    default_processing_resolution: int = 768  # longest side the model sees, unless a task has its own
    processing_resolution_by_task: dict[str, int] = field(default_factory=dict)
    timestep: int = 1  # the one UNet step's timestep
    flip_average_tasks: tuple[str, ...] = ()  # averaged with the mirrored photo unless told otherwise
    recipe: dict | None = None  # how the model was trained (information only)

    def __post_init__(self):
        self._check_types()
        resolutions = [self.default_processing_resolution, *self.processing_resolution_by_task.values()]
        if not all(_whole(r) and 1 <= r <= MAX_RESOLUTION for r in resolutions):
            raise GenPerceptError(f"processing resolutions must be whole numbers from 1 to {MAX_RESOLUTION}, "
                                  f"got {resolutions}")
        if not _whole(self.timestep) or not 0 <= self.timestep < 1000:
            raise GenPerceptError(f"the timestep must be a whole number from 0 to 999, got {self.timestep!r}")
        tasks = [*self.processing_resolution_by_task, *self.flip_average_tasks]
        canonical = {name: get_task(name).name for name in tasks}  # unknown names raise here
        object.__setattr__(self, "processing_resolution_by_task",
                           {canonical[k]: v for k, v in self.processing_resolution_by_task.items()})
        object.__setattr__(self, "flip_average_tasks", tuple(canonical[t] for t in self.flip_average_tasks))

    def _check_types(self):
        by_task, flips = self.processing_resolution_by_task, self.flip_average_tasks
        if not isinstance(by_task, dict) or not all(isinstance(k, str) for k in by_task):
            raise GenPerceptError(f"processing_resolution_by_task must map task names to sizes, got {by_task!r}")
        if not isinstance(flips, (list, tuple)) or not all(isinstance(t, str) for t in flips):
            raise GenPerceptError(f"flip_average_tasks must be a list of task names, got {flips!r}")
        if self.recipe is not None and not isinstance(self.recipe, dict):
            raise GenPerceptError(f"recipe must be an object, got {self.recipe!r}")

    def processing_resolution(self, task) -> int:
        return self.processing_resolution_by_task.get(get_task(task).name, self.default_processing_resolution)

    @classmethod
    def from_dict(cls, values: dict, source="settings") -> "ModelSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GenPerceptError(f"{source} has unknown settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        flips = values.get("flip_average_tasks", ())
        try:
            return cls(**{**values, "flip_average_tasks": tuple(flips) if isinstance(flips, list) else flips})
        except GenPerceptError as error:
            raise GenPerceptError(f"{source}: {error}") from None

    @classmethod
    def of_folder(cls, folder: Path) -> "ModelSettings":
        """The settings file in ``folder``, or the release's values when there is none."""
        path = Path(folder) / SETTINGS_NAME
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GenPerceptError(f"cannot read {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise GenPerceptError(f"{path} must hold a JSON object of settings")
        return cls.from_dict(values, str(path))

    def to_dict(self) -> dict:
        values = asdict(self)
        values["flip_average_tasks"] = list(self.flip_average_tasks)
        return {k: v for k, v in values.items() if v is not None}


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
