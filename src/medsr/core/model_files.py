"""Model files: safetensors weights plus JSON metadata (config, provenance); never pickled objects.

`save_model` / `load_model_file` hold final weights for sampling or classification.
`save_training_state` / `load_training_state` hold resumable state (optimizer, EMA, step, RNG)
through `torch.save` of plain tensors and containers, read back with `weights_only=True`.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from medsr.core.errors import MedsrError
from medsr.core.io import atomic_path

METADATA_KEY = "medsr"


def save_model(path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> None:
    """Write weights atomically; `metadata` (JSON-serialisable) travels inside the file."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def read_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MedsrError(f"{path}: model file not found (run the stage that trains it first)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError) as err:
        raise MedsrError(f"{path}: not a safetensors model file ({err})") from err
    if raw is None:
        raise MedsrError(f"{path}: safetensors file without medsr metadata")
    return json.loads(raw)


def load_model_file(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata)."""
    metadata = read_metadata(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as err:
        raise MedsrError(f"{path}: cannot read weights ({err})") from err
    return tensors, metadata


def save_training_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """Resumable state: tensors, numbers, strings, lists and dicts only (loadable with weights_only)."""
    # through a file object: torch.save names the zip's root folder after a path's stem, which for the atomic
    # write's random temporary name would make two identical states differ in bytes
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(dict(state), handle)


START_ANEW = "delete it or the checkpoints folder to start training anew"


def load_training_state(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read resumable state with `weights_only=True`. A file that is not one is refused on one line that names it
    and says how to start anew; torch's own message is not relayed, since for a pickle of arbitrary objects it
    suggests `weights_only=False`, i.e. running the code inside an untrusted file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused a global (an object, not plain data)
        raise MedsrError(f"{path}: not a medsr training checkpoint (unreadable with weights_only=True); "
                         f"{START_ANEW}") from None
    except Exception as err:  # torch raises several types for truncated or corrupt files
        raise MedsrError(f"{path}: corrupt or truncated training checkpoint ({type(err).__name__}); "
                         f"{START_ANEW}") from None
    if not isinstance(state, dict) or "step" not in state or "config" not in state:
        raise MedsrError(f"{path}: not a medsr training checkpoint (no step and config); {START_ANEW}")
    return state
