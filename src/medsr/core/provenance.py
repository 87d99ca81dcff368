"""Which code, machine and date produced a set of results (recorded in the full results JSON and the README)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


# Variables that make torch's ATen / MKL / oneDNN pick other CPU kernels (another summation order, as on another
# CPU), and the thread count: recorded so that two runs of one commit can say how their code paths differed.
NUMERIC_ENVIRONMENT = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "MEDSR_DEVICE",
                       "MEDSR_AMP")


def provenance() -> dict[str, Any]:
    """git commit of the working directory (None outside a repository) and whether tracked files were modified."""
    import torch

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "git": {"commit": commit, "dirty": None if status is None else bool(status)},
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "logical_cores": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "numeric_environment": {k: os.environ[k] for k in NUMERIC_ENVIRONMENT if k in os.environ}},
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
