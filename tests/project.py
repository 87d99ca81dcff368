"""Scratch copies of the workflow for tests that run Snakemake or DVC on their own files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from medsr.core.config import deep_merge

ROOT = Path(__file__).resolve().parents[1]


def sh(
    args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's bin folder (where `medsr` lives) first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def run_together(commands: list[tuple[list[str], Path]]) -> list[subprocess.CompletedProcess]:
    """`sh` for several commands at once (each in its own folder), so two front ends' end-to-end runs share
    the wall clock; each must exit 0."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONDONTWRITEBYTECODE="1")
    running = [(args, subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)) for args, cwd in commands]
    results = []
    for args, process in running:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} failed ({process.returncode}):\n{stdout}\n{stderr}")
        results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return results


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "dvc", *args], cwd, check)


def snakemake(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "snakemake", *args], cwd, check)


def set_params(project: Path, values: dict[str, Any]) -> None:
    """Set dotted keys (`generate.steps`) in the project's params.yaml."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for key, value in values.items():
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def copy_workflow(project: Path, overlay: str | None = None, git: bool = False,
                  remote: Path | None = None) -> Path:
    """Workflow files, sources and params.yaml (merged with `overlay`) in `project`, which must not
    exist; with `git`, a git + DVC repository with one commit (and `remote` as DVC's default)."""
    project.mkdir(parents=True)
    for name in ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy2(ROOT / name, project / name)
    for folder in ("workflow", "configs"):
        shutil.copytree(ROOT / folder, project / folder, symlinks=True)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if overlay:
        params = deep_merge(params, yaml.safe_load((ROOT / overlay).read_text()))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / ".dvc").mkdir()
    shutil.copy2(ROOT / ".dvc/config", project / ".dvc/config")
    shutil.copy2(ROOT / ".dvc/.gitignore", project / ".dvc/.gitignore")
    if remote is not None:
        dvc("remote", "add", "-f", "-d", "local", str(remote), cwd=project)
    if git:
        sh(["git", "init", "-q", "-b", "main"], project)
        sh(["git", "config", "user.email", "test@medsr.local"], project)
        sh(["git", "config", "user.name", "medsr test"], project)
        sh(["git", "add", "-A"], project)
        sh(["git", "commit", "-qm", "workflow"], project)
    else:
        dvc("config", "core.no_scm", "true", cwd=project)
    return project
