"""keep_freed_memory: freed blocks are reused without new page faults, and the opt-out keeps glibc's defaults."""

import os
import subprocess
import sys

import pytest

from genpercept_bundle.allocator import OPT_OUT

# Allocates and frees a 64 MB array 20 times (above glibc's largest default mmap threshold, 32 MB, so by
# default each one is mapped fresh from the kernel); prints whether the tuning applied and the page faults.
REUSE = """
import resource
import numpy as np
from genpercept_bundle.allocator import keep_freed_memory
applied = {setup}
np.ones(1 << 23)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.ones(1 << 23)
    del block
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(opt_out: str | None, setup="keep_freed_memory()") -> tuple[bool, int]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != OPT_OUT}
    if opt_out is not None:
        environment[OPT_OUT] = opt_out
    command = [sys.executable, "-c", REUSE.format(setup=setup)]
    output = subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout.split()
    return output[0] == "True", int(output[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tunes glibc's allocator")
def test_freed_blocks_are_reused_without_page_faults_unless_opted_out():
    applied, faults = page_faults(None)
    default_applied, default_faults = page_faults("0")
    assert applied and not default_applied
    assert default_faults > 1000  # glibc's defaults fault the pages of every new block in again
    assert faults < default_faults / 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tunes glibc's allocator")
def test_the_recipes_task_workers_apply_it():
    setup = "__import__('genpercept_bundle.training.recipe').training.recipe._start_task_worker(2) or True"
    _, worker_faults = page_faults(None, setup)
    _, default_faults = page_faults("0", setup)
    assert worker_faults < default_faults / 20
