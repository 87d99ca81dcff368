"""Read the two DAGs, Snakemake's and DVC's, into one comparable form.

Each stage becomes a `Stage(name, cmd, inputs, outputs, params)`; Snakemake jobs with wildcards
are named like DVC's matrix stages (`generate@null-0-1`), DVC dependency folders are expanded
to the files Snakemake lists (a source folder to its *.py files, a folder holding other stages'
outputs to those outputs, any other folder, one nobody outputs such as a user's evaluate.external folder, to the
files in it at any depth, each named like its folder in dvc.yaml: relative or absolute, as Snakemake lists it).
Both are read through public interfaces: Snakemake's dry run on the command
line, DVC's `Repo.index`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    inputs: frozenset[str]
    outputs: frozenset[str]
    params: frozenset[str]
    gpu: int = 0
    gpu_mem_mb: int = 0


def normalise_cmd(cmd: str) -> str:
    return " ".join(shlex.split(cmd))


def snakemake_stages(workdir: Path, configfiles: tuple[Path, ...] = (), env: dict[str, str] | None = None
                     ) -> dict[str, Stage]:
    """Snakemake's jobs from its public command line: a forced dry run printing every job and shell command.

    Each job block reads `rule NAME:` (or `localrule NAME:`), then `input:`, `output:`, `wildcards:`, `resources:`
    lines, then `Shell command: ...`. A rule's parameters are the stage table's (every rule declares
    its `p` params, written by medsr.tools.snakemake_rules from the table).
    """
    from medsr.stages import BY_RULE

    args = [sys.executable, "-m", "snakemake", "--dry-run", "--printshellcmds", "--forceall", "--cores", "1"]
    for configfile in configfiles:
        args += ["--configfile", str(configfile)]
    result = subprocess.run(args, cwd=workdir, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise AssertionError(f"snakemake dry run failed:\n{result.stdout}\n{result.stderr}")
    stages: dict[str, Stage] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head or head.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        command = re.search(r"^Shell command: (.*)$", block, re.M)
        rule = head.group(1)
        name = rule
        if "wildcards" in fields:
            name += "@" + "-".join(pair.split("=", 1)[1] for pair in fields["wildcards"].split(", "))
        resources = dict(pair.split("=", 1) for pair in fields.get("resources", "").split(", ") if "=" in pair)
        stages[name] = Stage(
            name=name,
            cmd=normalise_cmd(command.group(1)) if command else "",
            inputs=frozenset(fields.get("input", "").split(", ")) - {""},
            outputs=frozenset(fields.get("output", "").split(", ")) - {""},
            params=frozenset(BY_RULE[rule].params) if rule in BY_RULE else frozenset(),
            gpu=int(resources.get("gpu", 0)),
            gpu_mem_mb=int(resources.get("gpu_mem_mb", 0)),
        )
    return stages


def dvc_stages(workdir: Path) -> dict[str, Stage]:
    from dvc.repo import Repo

    with Repo(str(workdir)) as repo:
        raw = []
        for stage in repo.index.stages:
            params: set[str] = set()
            deps: set[str] = set()
            for dep in stage.deps:
                if hasattr(dep, "params"):  # a ParamsDependency
                    params.update(dep.params)
                else:
                    deps.add(os.path.normpath(dep.def_path))  # as dvc.yaml names it, relative or absolute
            outs = {os.path.relpath(out.fs_path, workdir) for out in stage.outs}
            raw.append((stage.name, normalise_cmd(stage.cmd), deps, outs, params))
    all_outs = {out for *_, outs, _ in raw for out in outs}
    stages = {}
    for name, cmd, deps, outs, params in raw:
        inputs: set[str] = set()
        for dep in deps:
            path = workdir / dep
            nested = {o for o in all_outs if o.startswith(dep.rstrip("/") + "/")}
            if nested:  # a folder holding other stages' outputs stands for them
                inputs |= nested
            elif dep.startswith("src/") and path.is_dir():
                inputs |= {str(p.relative_to(workdir)) for p in sorted(path.glob("*.py"))}
            elif dep not in all_outs and path.is_dir():  # nobody writes it: DVC hashes the files in it
                inputs |= {os.path.join(dep, p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
            else:
                inputs.add(dep)
        stages[name] = Stage(name, cmd, frozenset(inputs), frozenset(outs), frozenset(params))
    return stages


def tool_files() -> set[str]:
    """src/medsr/... of the modules only the tools (`medsr.cli.TOOLS`) run: the tools' modules and what only they
    import, neither the CLI's dispatch path nor any stage module's imports. What no stage may depend on."""
    from medsr.cli import TOOLS
    from medsr.stages import STAGES
    from medsr.tools.sources import import_closure

    stage_modules = set(import_closure("medsr.cli", *(f"medsr.{stage.module}" for stage in STAGES)))
    # and Snakemake's rule builder, which only the Snakefile imports
    tool_only = set(import_closure(*TOOLS.values(), "medsr.tools.snakemake_rules")) - stage_modules
    root = Path(__file__).resolve().parents[1]
    paths = [Path("src", *m.split(".")) for m in tool_only]
    return {str(p / "__init__.py" if (root / p).is_dir() else p.with_suffix(".py")) for p in paths}
