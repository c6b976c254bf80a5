"""The ``genpercept`` command line: one module per command group; each turns options into core calls.

Importing it loads no torch: a command imports what it needs when it runs, so usage errors
(a missing file, a bad option) come back at once.
"""

import argparse
import logging
import os
import signal
import sys

from ..allocator import keep_freed_memory
from ..errors import GenPerceptError
from . import embedding, evaluate, predict, training

COMMAND_GROUPS = (predict, embedding, training, evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genpercept", description="Depth, normal and matte maps from photos "
                                     "with GenPercept's one-step diffusion perceiver.")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return args.run(args)
    except GenPerceptError as error:
        print(f"genpercept: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genpercept: interrupted; finished files are kept, none is half-written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def run():
    """The ``genpercept`` command: ``main``, then leave at once. Every file is written, closed and renamed by then,
    and the interpreter's own teardown of torch's and diffusers' modules would add 0.8 s to every command here."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _stop(signum, frame):
    raise KeyboardInterrupt  # a terminated run cleans up as an interrupted one: temporary files removed, Ray stopped
