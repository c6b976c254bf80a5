"""GenPercept one-step diffusion perception: depth, surface normals and alpha mattes from photos."""

__version__ = "0.1.0"

from .errors import GenPerceptError  # noqa: E402
from .image_io import load_image  # noqa: E402
from .predictor import GenPerceptPredictor, Prediction  # noqa: E402
from .tasks import TASKS, get_task  # noqa: E402

__all__ = ["GenPerceptError", "GenPerceptPredictor", "Prediction", "TASKS", "get_task", "load_image", "__version__"]
