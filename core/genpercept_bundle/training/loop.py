"""The training loop shared by the VAE and the UNets: schedule, accumulation, clipping, progress, checkpoints
(safetensors + JSON, no pickle), resume and weight averaging."""

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import TrainConfig, lr_factor
from .distributed import Processes


def log_now(message: str):
    """A training log line printed at once: a worker process's stdout is block-buffered when redirected."""
    print(message, flush=True)


def save_state(folder: Path, model: torch.nn.Module, optimizer, step: int, extra: dict,
               average: "WeightAverage | None" = None):
    """Resume state without pickle: trainable weights, their average and Adam moments as safetensors, the rest JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    tensors = {f"model.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    if average is not None:
        tensors.update({f"ema.{n}": t.cpu().contiguous() for n, t in average.shadow.items()})
    for parameter, state in optimizer.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"adam.{key}.{names[id(parameter)]}"] = state[key].detach().cpu().contiguous()
    adam_steps = {names[id(p)]: float(s["step"]) for p, s in optimizer.state.items()}
    temp = folder / "state.safetensors.tmp"
    save_file(tensors, temp)
    temp.replace(folder / "state.safetensors")
    (folder / "state.json").write_text(json.dumps({"step": step, "adam_steps": adam_steps, **extra}, indent=2))


def _history(checkpoint_dir: Path, start: int) -> list[float]:
    """Per-step losses of the run so far (kept in the resume state)."""
    state = checkpoint_dir / "state.json"
    return json.loads(state.read_text()).get("history", [])[:start] if start and state.is_file() else []


def saved_step(checkpoint_dir: Path) -> int:
    state = checkpoint_dir / "state.json"
    return json.loads(state.read_text())["step"] if state.is_file() else 0


def load_state(folder: Path, model: torch.nn.Module, optimizer,
               average: "WeightAverage | None" = None) -> tuple[int, dict]:
    tensors = load_file(folder / "state.safetensors")
    meta = json.loads((folder / "state.json").read_text())
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, parameter in parameters.items():
            if f"model.{name}" in tensors:
                parameter.copy_(tensors[f"model.{name}"])
        if average is not None:
            for name, shadow in average.shadow.items():
                # a state saved without an average (EMA switched on at resume) starts it from the weights
                shadow.copy_(tensors.get(f"ema.{name}", parameters[name]))
    for name, step in meta["adam_steps"].items():
        parameter = parameters[name]
        optimizer.state[parameter] = {"step": torch.tensor(step),
                                      "exp_avg": tensors[f"adam.exp_avg.{name}"].to(parameter.device),
                                      "exp_avg_sq": tensors[f"adam.exp_avg_sq.{name}"].to(parameter.device)}
    return meta["step"], meta


class WeightAverage:
    """Exponential moving average of the trainable weights, with diffusers' EMAModel warm-up of the decay
    ((1 + k) / (10 + k) after k steps) so early steps are not averaged with the random init.

    ``optimise`` restarts it where the latent stage hands over to the pixel losses: the short pixel stage
    would otherwise be averaged away into the latent stage's weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.parameters = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone() for n, p in self.parameters.items()}

    @torch.no_grad()
    def restart(self):
        for name, parameter in self.parameters.items():
            self.shadow[name].copy_(parameter)

    @torch.no_grad()
    def update(self, steps_since_start: int):
        k = steps_since_start
        weight = 1.0 - min(self.decay, (1 + k) / (10 + k))
        for name, parameter in self.parameters.items():
            self.shadow[name].lerp_(parameter, weight)

    @torch.no_grad()
    def copy_to_model(self):
        for name, parameter in self.parameters.items():
            parameter.copy_(self.shadow[name])


def autocast(config: TrainConfig):
    dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]
    return torch.autocast(torch.device(config.device).type, dtype=dtype, enabled=dtype is not None)


def optimise(name: str, model, optimizer, config: TrainConfig, batch_loss, checkpoint_dir: Path, resume: bool, log,
             progress_line: int = 0, processes: Processes | None = None):
    """The shared loop: resume, schedule, gradient accumulation and clipping, progress bar with the loss,
    checkpoints, weight averaging. Leaves the weights to save in ``model``.

    ``batch_loss(generator, step)`` draws a batch and returns its loss tensor. ``progress_line``: the terminal
    line of the progress bar, so runs in parallel processes each keep their own. ``processes``: several training
    processes (distributed.py); the main one writes the checkpoints.
    """
    from tqdm import tqdm

    processes = processes or Processes()
    average = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    start = 0
    if resume and (checkpoint_dir / "state.json").is_file():
        start, _ = load_state(checkpoint_dir, model, optimizer, average)
        log(f"{name}: resumed at step {start}")

    generator = torch.Generator().manual_seed(config.seed + start)
    trainable = [p for p in model.parameters() if p.requires_grad]
    progress = tqdm(range(start, config.steps), initial=start, total=config.steps, desc=f"train {name}",
                    disable=None if processes.is_main else True, position=progress_line)
    started, history = time.perf_counter(), _history(checkpoint_dir, start)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config)
        for _ in range(config.grad_accumulation):
            loss = batch_loss(generator, step)
            (loss / config.grad_accumulation).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if average is not None:
            stage_start = config.latent_steps if step >= config.latent_steps else 0
            if step == stage_start > 0:
                average.restart()
            average.update(step - stage_start)
        history.append(processes.mean(loss))
        recent = history[-50:]
        progress.set_postfix(loss=f"{np.mean(recent):.4f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            if processes.is_main:
                save_state(checkpoint_dir, model, optimizer, step + 1,
                           {"config": asdict(config), "history": history, "processes": processes.count}, average)
            processes.wait()
            if progress.disable and processes.is_main:
                log(f"{name}: step {step + 1}/{config.steps} loss {np.mean(recent):.4f} "
                    f"({time.perf_counter() - started:.0f} s)")
    if average is not None:
        average.copy_to_model()
