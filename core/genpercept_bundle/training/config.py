"""Training settings: steps, schedule, batch, size, device; shared by the VAE and the UNet trainers."""

from dataclasses import dataclass, replace

from ..errors import GenPerceptError


@dataclass
class TrainConfig:
    steps: int = 1000  # in total, latent stage included
    latent_steps: int = 0  # the first steps regress the encoded target latent (MSE) instead of pixel losses
    augmented_copies: int = 0  # cropped, mirrored, recoloured copies of every scene mixed into the latent stage
    batch_size: int = 8
    grad_accumulation: int = 1
    lr: float = 3e-5  # the paper's, for fine-tuning SD2.1; from scratch use ~1e-3
    warmup: int = 100
    final_lr_fraction: float = 0.01
    ema_decay: float = 0.0  # > 0: save an exponential moving average of the weights (e.g. 0.999), not the last step
    width: int = 192
    height: int = 144
    seed: int = 2024
    checkpoint_every: int = 200
    lora_rank: int = 0  # 0 = full fine-tuning
    device: str = "cpu"
    dtype: str = "float32"  # autocast dtype for the forward pass; weights stay fp32

    def __post_init__(self):
        if not 0 <= self.latent_steps <= self.steps:
            raise GenPerceptError(f"latent steps ({self.latent_steps}) must be between 0 and the total steps "
                                  f"({self.steps}): --steps counts both stages")
        if self.augmented_copies < 0:
            raise GenPerceptError(f"augmented copies must be 0 or more, got {self.augmented_copies}")
        if not 0 <= self.ema_decay < 1:
            raise GenPerceptError(f"EMA decay must be in [0, 1) (0 = off, typical 0.999), got {self.ema_decay}")

    def scaled(self, scale: float) -> "TrainConfig":
        """This schedule shortened by ``scale`` < 1 (smoke runs of a recipe)."""
        return replace(self, steps=max(2, int(self.steps * scale)), latent_steps=int(self.latent_steps * scale),
                       warmup=max(1, int(self.warmup * scale)))


def scaled_count(count: int, scale: float, least: int = 4) -> int:
    """A recipe's number of scenes shortened by ``scale`` < 1, never below ``least``."""
    return max(least, int(count * scale))


def lr_factor(step: int, config: TrainConfig) -> float:
    """GenPercept's IterExponential: linear warm-up, then exponential decay to ``final_lr_fraction``."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.final_lr_fraction ** min(progress, 1.0)
