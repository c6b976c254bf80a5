"""Options several commands share, with the meanings the core gives them (choices.py, tasks.py)."""

import argparse

from ..choices import FLIP_AVERAGE_CHOICES, processing_resolution_choice
from ..errors import GenPerceptError
from ..tasks import DEFAULT_TASKS, TASKS


def add_task_option(command):
    command.add_argument("--task", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK",
                         help=f"one or more of {', '.join(TASKS)} (default: {' '.join(DEFAULT_TASKS)})")


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


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        return width, height
    except ValueError as exc:
        raise GenPerceptError(f"size {text!r} must look like WIDTHxHEIGHT, e.g. 192x144") from exc
