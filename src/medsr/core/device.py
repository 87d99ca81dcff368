"""Device selection: CUDA when present, else CPU; always overridable with `--device`."""

from __future__ import annotations

import contextlib
import os

import torch

from medsr.core.errors import MedsrError


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


def deterministic_mode(device: torch.device) -> None:
    """Bitwise reproducible CUDA steps (the same run twice, and a resume equal to a straight run): deterministic
    algorithms, no cuDNN autotuning, and cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG, read when cuBLAS
    starts: set before the first CUDA matmul). warn_only: an op without a deterministic kernel warns, naming
    itself (benchmarks/cuda_check.py records such warnings), instead of stopping a pipeline stage.
    Nothing changes on the CPU."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


PRECISIONS = ("fp32", "bf16")  # generate.precision: the sampling network's arithmetic


def check_precision(device: torch.device, precision: str, key: str = "generate.precision") -> None:
    """bf16 sampling is CUDA only: refused on the CPU (CPU autocast is far slower than fp32: docs/scale-out.md)."""
    if precision not in PRECISIONS:
        raise MedsrError(f"{key}: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type != "cuda":
        raise MedsrError(f"{key}: bf16 needs a CUDA device, this run is on {device} (use fp32 on the CPU)")


def inference_autocast(device: torch.device, precision: str):
    """The network's arithmetic when sampling: fp32 as written, or bf16 autocast (matmuls and convolutions in
    bf16, normalisations and softmax kept in fp32 by autocast's op lists) on CUDA."""
    check_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


AMP_DTYPES = ("bf16", "fp16", "off")  # $MEDSR_AMP: CUDA mixed precision (bf16 falls back to fp16 where unsupported)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on `device` (None: full fp32): CUDA only, bf16 unless $MEDSR_AMP says fp16 or off."""
    if device.type != "cuda":
        return None
    choice = os.environ.get("MEDSR_AMP", "bf16")
    if choice not in AMP_DTYPES:
        raise MedsrError(f"MEDSR_AMP: {choice!r} is not one of {', '.join(AMP_DTYPES)}")
    if choice == "off":
        return None
    return torch.bfloat16 if choice == "bf16" and torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device):
    """Mixed precision on CUDA only (`amp_dtype`): CPU autocast is far slower than fp32 (docs/scale-out.md)."""
    dtype = amp_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def needs_grad_scaler(device: torch.device) -> bool:
    """fp16 gradients underflow without loss scaling (GradScaler); bf16 and fp32 need none."""
    return amp_dtype(device) == torch.float16
