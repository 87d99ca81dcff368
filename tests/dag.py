"""Read the two DAGs, Snakemake's and DVC's, into one comparable form.

Each stage becomes a `Stage(name, cmd, inputs, outputs, params)`; Snakemake jobs with wildcards
are named like DVC's matrix stages (`generate@null-0-1`), DVC dependency folders are expanded
to the files Snakemake lists (a source folder to its *.py files, a folder holding other stages'
outputs to those outputs).
"""

from __future__ import annotations

import os
import shlex
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


def normalise_cmd(cmd: str) -> str:
    return " ".join(shlex.split(cmd))


def snakemake_stages(workdir: Path, configfiles: tuple[Path, ...] = ()) -> dict[str, Stage]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings, Quietness,
                                          ResourceSettings)

    here = os.getcwd()
    os.chdir(workdir)
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            workflow_api = api.workflow(
                resource_settings=ResourceSettings(cores=1),
                config_settings=ConfigSettings(configfiles=list(configfiles)),
                snakefile=Path("Snakefile"),
                workdir=Path("."),
            )
            dag_api = workflow_api.dag(dag_settings=DAGSettings(forceall=True))
            workflow = dag_api.workflow_api._workflow
            workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
            workflow._build_dag()
            stages = {}
            for job in workflow.dag.jobs:
                if job.rule.name == "all":
                    continue
                name = job.rule.name
                if job.wildcards:
                    name += "@" + "-".join(str(v) for v in dict(job.wildcards).values())
                params = dict(job.params).get("p", {})
                stages[name] = Stage(
                    name=name,
                    cmd=normalise_cmd(job.shellcmd),
                    inputs=frozenset(str(f) for f in job.input),
                    outputs=frozenset(str(f) for f in job.output),
                    params=frozenset(params),
                    gpu=int(job.resources.get("gpu", 0) or 0),
                )
            return stages
    finally:
        os.chdir(here)


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
                    deps.add(os.path.relpath(dep.fs_path, workdir))
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
            else:
                inputs.add(dep)
        stages[name] = Stage(name, cmd, frozenset(inputs), frozenset(outs), frozenset(params))
    return stages
