"""Choosing the device and dtype a model runs in."""

import torch

from ..errors import GenPerceptError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise GenPerceptError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from exc


def pick_dtype(dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise GenPerceptError(f"unknown dtype {dtype!r}: use float32, float16 or bfloat16")
        dtype = DTYPES[dtype]
    if dtype == torch.float16 and device.type == "cpu":
        raise GenPerceptError("float16 needs a GPU (cuda or mps); on the CPU use float32")
    return dtype
