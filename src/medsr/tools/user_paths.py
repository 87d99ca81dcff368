"""Paths a user brings to a run, named in params.yaml rather than written by a stage (`USER_PATHS`): inputs, by
content, of the stages reading them in both front ends (Snakemake lists the files in them, DVC hashes them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from medsr.core.errors import MedsrError
from medsr.tools.rule_files import params_value


@dataclasses.dataclass(frozen=True)
class UserPaths:
    """Paths a user brings to a run, named in params.yaml rather than written by a stage: DAG inputs, by content, of
    the stages that read them (Snakemake lists the files in them, DVC hashes them; `user_files`)."""
    key: str  # dotted params.yaml key: a mapping {name: path} (each entry is one path) or one path ("": none)
    kind: str  # "folder" | "file": what each path must be
    stages: tuple[str, ...]  # the commands that read them


USER_PATHS: tuple[UserPaths, ...] = (
    UserPaths("evaluate.external", "folder", ("classify", "classify-deployed", "evaluate")),  # your own SR: <id>.png
)


def _user_paths(params, command: str | None) -> list[tuple[str, Path, UserPaths]]:
    """(params.yaml key, path as given, its USER_PATHS row) of every user-brought path (of `command`'s stages)."""
    found = []
    for user in USER_PATHS:
        if command is not None and command not in user.stages:
            continue
        value = params_value(params, user.key)
        entries = value.items() if isinstance(value, Mapping) else [(None, value)]
        found += [(user.key if name is None else f"{user.key}.{name}", Path(path), user)
                  for name, path in entries if path]
    return found


def user_files(params, command: str | None = None) -> dict[str, Path]:
    """The paths a user brings to a run (`USER_PATHS`) by the params.yaml key naming each (a mapping's entry:
    `evaluate.external.<name>`), as given (relative to the working folder, or absolute); only those `command` reads
    when given."""
    return {key: path for key, path, _ in _user_paths(params, command)}


def check_user_files(params, root: Path | str = ".") -> None:
    """A MedsrError naming the first user-brought path (`user_files`) that is missing or not of its kind; a relative
    path is looked up under `root` (the folder the stages run in)."""
    for key, path, user in _user_paths(params, None):
        found = Path(root) / path  # `path` itself when absolute
        if not (found.is_dir() if user.kind == "folder" else found.is_file()):
            raise MedsrError(f"{path}: {key}: {user.kind} is missing" if not found.exists() else
                             f"{path}: {key}: not a {user.kind}")


def user_input_files(params, command: str) -> list[str]:
    """The files behind the user-brought paths `command` reads (`user_files`): every file inside a folder, at any
    depth, sorted; a file itself. What a Snakemake rule lists as inputs, so that a changed file reruns the stage
    (Snakemake compares the checksums of small files) and an added or removed one too (its set of inputs)."""
    check_user_files(params)
    files: list[str] = []
    for path in user_files(params, command).values():
        files += sorted(str(f) for f in path.rglob("*") if f.is_file()) if path.is_dir() else [str(path)]
    return files
