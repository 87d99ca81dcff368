"""`medsr overlay-args FILE`: a parameter overlay as `dvc exp run -S` arguments.

Snakemake takes an overlay directly (`--configfile configs/thesis.yaml`); DVC experiments take
`-S key=value` overrides (Hydra syntax). This prints, for every leaf of the overlay that differs
from params.yaml, one `-S key=value` with no whitespace, so that
`dvc exp run $(medsr overlay-args configs/thesis.yaml)` runs the same experiment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medsr.core.config import deep_merge, params_from_dict, read_yaml
from medsr.core.errors import MedsrError


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, name + ".")
        else:
            yield name, value


def hydra_value(value: Any, key: str) -> str:
    """One value in Hydra's override grammar; strings are quoted so `null` stays a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "'" in value or "\\" in value:
            raise MedsrError(f"{key}: value {value!r} has a quote or backslash; set it in params.yaml instead")
        return f"'{value}'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v, key) for v in value) + "]"
    raise MedsrError(f"{key}: cannot express {type(value).__name__} values as a -S override")


def overlay_args(overlay: str | Path, base: str | Path = "params.yaml") -> list[str]:
    base_raw, overlay_raw = read_yaml(base), read_yaml(overlay)
    params_from_dict(deep_merge(base_raw, overlay_raw), f"{base} + {overlay}")  # validate first
    base_leaves = dict(_leaves(base_raw))
    args = []
    for key, value in _leaves(overlay_raw):
        if base_leaves.get(key, object()) == value:
            continue
        token = f"{key}={hydra_value(value, key)}"
        if any(ch.isspace() for ch in token):
            raise MedsrError(f"{overlay}: {key}: keys and values with spaces cannot pass through "
                             f"`dvc exp run -S`; change them in params.yaml instead")
        args += ["-S", token]
    return args


def run(overlay: Path, base: Path) -> None:
    print(" ".join(overlay_args(overlay, base)))
