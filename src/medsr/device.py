"""Device selection: CUDA when present, else CPU; always overridable with `--device`."""

from __future__ import annotations

import contextlib
import os

import torch

from medsr.errors import MedsrError


def resolve_device(requested: str | None = None) -> torch.device:
    """`auto` (or None, or $MEDSR_DEVICE) picks cuda when available; `cpu`, `cuda`, `cuda:1` are explicit."""
    requested = requested or os.environ.get("MEDSR_DEVICE") or "auto"
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise MedsrError(f"--device: {requested!r} is not a device (use auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MedsrError(f"--device: {requested} requested but no CUDA device is available on this machine")
    return device


def autocast(device: torch.device, dtype: str = "bf16"):
    """Mixed precision on CUDA only: bf16 autocast on our CPUs measured about 200x slower."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    torch_dtype = torch.bfloat16 if dtype == "bf16" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=torch_dtype)
