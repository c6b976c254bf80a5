"""Training on several processes: ``accelerate launch ... -m genpercept_bundle.cli train ...``.

Launch: ``accelerate launch --multi_gpu --num_processes N -m genpercept_bundle.cli train ... --device cuda`` on
GPUs; the same with ``--device cpu`` (the default) runs N CPU processes over gloo.

Every process draws the same batch from the same seeded generator and takes its share of it; DDP
averages the gradients, so the weights follow the one-process run with the same batch size (up to
floating-point noise, and exactly for the latent stage's per-sample mean). The main process writes
checkpoints and the result; the others wait. Run in one process, nothing here changes anything.
"""

import os

import torch


class Processes:
    """The training processes: this one's rank among ``count``; one process unless launched by accelerate (or
    torchrun). ``device``: the configured one; "cpu" makes the processes talk over gloo."""

    def __init__(self, device: str = "cpu"):
        self.accelerator = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=torch.device(device).type == "cpu")
        self.rank = self.accelerator.process_index if self.accelerator else 0
        self.count = self.accelerator.num_processes if self.accelerator else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, configured: str) -> torch.device:
        return self.accelerator.device if self.accelerator else torch.device(configured)

    def prepare(self, model):
        """The model to run forward passes through (DDP-wrapped when there are several processes)."""
        return self.accelerator.prepare_model(model) if self.accelerator else model

    def share(self, items: torch.Tensor) -> torch.Tensor:
        """This process's share of a batch drawn alike by every process."""
        return items[self.rank::self.count]

    def mean(self, value: torch.Tensor) -> float:
        """The mean of ``value`` over the processes (every process must call it)."""
        if self.accelerator:
            value = self.accelerator.reduce(value.detach().clone(), "mean")
        return value.item()

    def wait(self):
        if self.accelerator:
            self.accelerator.wait_for_everyone()

    def main_first(self):
        """A context in which the main process runs first (it writes caches the others then read)."""
        from contextlib import nullcontext

        return self.accelerator.main_process_first() if self.accelerator else nullcontext()
