"""dvc.yaml: what DVC cannot compute, written from the stage table and the params (`medsr dvc-sync`).

Each stage's `cmd` is rendered by `medsr.stages.command` from its deps, outputs and matrix keys, and its `- src/...`
dependencies are the import graph of its command (`medsr.tools.sources.source_files`). DVC has no conditional stage, so
the params decide three things here that Snakemake decides at parse time: whether the train_student stage exists and
which model generate samples (`medsr.stages.generate_model`; a distilled sampler, generate.sampler student, needs
both), whether the classify_deployed stage exists and evaluate reads its predictions (evaluate.deployed.file), and
the paths a user brings (`medsr.stages.user_files`: each evaluate.external folder), which are deps of the stages
reading them, so that DVC hashes them by content. tests/test_dag_agreement.py fails when the committed dvc.yaml is
stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from medsr.core.errors import MedsrError
from medsr.stages import (
    BY_RULE,
    DEPLOYED_PREDICTIONS,
    LOGS,
    SR_MODEL,
    STUDENT_FILES,
    check_user_files,
    command,
    deployed_files,
    generate_model,
    user_files,
)
from medsr.tools.sources import source_files

DVC_PARAMS_ARGS = "--params params.yaml"
DVC_OUTPUTS = ("outs", "metrics", "plots")  # a stage's outputs, in the order dvc.yaml lists them


def dvc_command(rule: str, stage: dict) -> str:
    """A dvc.yaml stage's command (`command`): its path arguments are its deps, sources and user-brought paths left
    out (`sync_dvc_yaml` reads the stage without them), and its outputs, each in the order dvc.yaml lists them; its
    options and log name its matrix keys (${item.<key>})."""
    table = BY_RULE[rule]
    deps = [d for d in stage.get("deps", []) if not d.startswith("src/")]
    outs = [next(iter(e)) if isinstance(e, dict) else e for key in stage if key in DVC_OUTPUTS for e in stage[key]]
    reads = [a.name for a in table.paths if not a.out and a.fixed is None]
    writes = [a.name for a in table.paths if a.out]
    if len(deps) > len(reads) or len(outs) != len(writes):
        raise MedsrError(f"dvc.yaml: stage {rule}: {len(deps)} deps and {len(outs)} outputs for the stage table's "
                         f"{len(reads)} read and {len(writes)} written paths")
    values = dict(zip(reads, deps)) | dict(zip(writes, outs))
    values |= {o.name: f"${{item.{o.wildcard}}}" for o in table.options}
    return command(rule, values, DVC_PARAMS_ARGS, re.sub(r"\{(\w+)\}", r"${item.\1}", LOGS[rule]))


def _cmd_lines(cmd: str, width: int = 120) -> list[str]:
    if len(f"    cmd: {cmd}") <= width:
        return [f"    cmd: {cmd}\n"]
    lines: list[str] = []
    for word in re.split(r" (?=--)", cmd):  # `--flag value` stays on one line
        if lines and len(f"      {lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return ["    cmd: >-\n"] + [f"      {line}\n" for line in lines]  # folded: DVC joins the lines with spaces


STUDENT_STAGE = "train_student"


def _student_stage() -> list[str]:
    """train_student's stage: deps and outputs from STUDENT_FILES in the stage table's order (cmd and source files
    are filled in by `sync_dvc_yaml`)."""
    table = BY_RULE[STUDENT_STAGE]
    deps = [STUDENT_FILES[a.name] for a in table.paths if not a.out and a.fixed is None]
    outs = [STUDENT_FILES[a.name] for a in table.paths if a.out]
    return [f"  {STUDENT_STAGE}:  # only for a distilled sampler (generate.sampler student), by medsr dvc-sync\n",
            "    cmd: medsr\n", "    deps:\n", *[f"      - {d}\n" for d in deps], "      - src/\n",
            "    params:\n", *[f"      - {p}\n" for p in table.params],
            "    outs:\n", *[f"      - {o}\n" for o in outs], "\n"]


def _stage_name(line: str) -> str | None:
    """A stage's name on its first line, two spaces in under `stages:`."""
    if line.startswith("  ") and not line.startswith("   ") and line.strip().split(":")[0].isidentifier():
        return line.strip().split(":")[0]
    return None


def _for_model(text: str, model: str) -> str:
    """dvc.yaml's text with the train_student stage present exactly when generate samples its student (`model`),
    before generate, and generate's model dependency `model`."""
    out, stage = [], None
    for line in text.splitlines(keepends=True):
        stage = _stage_name(line) or stage
        if stage == STUDENT_STAGE:
            continue
        if _stage_name(line) == "generate" and model == STUDENT_FILES["model"]:
            out += _student_stage()
        if stage == "generate" and line.strip() in (f"- {SR_MODEL}", f"- {STUDENT_FILES['model']}"):
            line = f"      - {model}\n"
        out.append(line)
    return "".join(out)


DEPLOYED_STAGE = "classify_deployed"
EVALUATE_LOGS_DEP = "      - results/train\n"  # evaluate's last read path before --deployed


def _deployed_stage(classifier: str) -> list[str]:
    """classify_deployed's stage: the deployed file, then the image sets evaluate reads (cmd and source files are
    filled in by `sync_dvc_yaml`)."""
    table = BY_RULE[DEPLOYED_STAGE]
    return [f"  {DEPLOYED_STAGE}:  # only with evaluate.deployed.file, by medsr dvc-sync\n", "    cmd: medsr\n",
            "    deps:\n", f"      - {classifier}\n",
            *[f"      - {d}\n" for d in ("data/hr", "data/bicubic", "results/regression", "results/sr/eval")],
            "      - src/\n", "    params:\n", *[f"      - {p}\n" for p in table.params],
            "    outs:\n", f"      - {DEPLOYED_PREDICTIONS}\n", "\n"]


def _for_deployed(text: str, params) -> str:
    """dvc.yaml's text with the classify_deployed stage, and evaluate's dependency on its predictions, present
    exactly when evaluate.deployed.file is set."""
    on = bool(deployed_files(params))
    out, stage = [], None
    for line in text.splitlines(keepends=True):
        stage = _stage_name(line) or stage
        if stage == DEPLOYED_STAGE or (stage == "evaluate" and line.strip() == f"- {DEPLOYED_PREDICTIONS}"):
            continue
        if _stage_name(line) == "evaluate" and on:
            out += _deployed_stage(params.evaluate.deployed.file)
        out.append(line)
        if stage == "evaluate" and line == EVALUATE_LOGS_DEP and on:
            out.append(f"      - {DEPLOYED_PREDICTIONS}\n")
    return "".join(out)


# The comment ending the dep line of a user-brought path, before its params.yaml key (`evaluate.external.mine`):
# what `sync_dvc_yaml` replaces.
USER_DEP = "  # user: "


def _user_deps(rule: str, params) -> list[str]:
    """The dep lines of the user-brought paths `rule`'s command reads, each as given (quoted) and marked USER_DEP."""
    return [f"      - {json.dumps(str(path))}{USER_DEP}{key}\n"
            for key, path in user_files(params, BY_RULE[rule].command).items()]


def sync_dvc_yaml(text: str, params, root: Path | str = ".") -> str:
    """dvc.yaml's text for `params`: train_student's stage and generate's model by `_for_model`, classify_deployed's
    stage by `_for_deployed`, each stage's `cmd:`
    written by `dvc_command`, its user-brought paths (`_user_deps`, checked to exist, a relative one under `root`:
    dvc.yaml's folder) and its `- src/...` dependencies by `source_files` of its command, in that order after its
    other deps.

    DVC cannot compute these, so `medsr dvc-sync` writes them and tests/test_dag_agreement.py checks them.
    """
    check_user_files(params, root)
    text = _for_deployed(_for_model(text, generate_model(params)), params)
    text = "".join(line for line in text.splitlines(keepends=True) if USER_DEP not in line)
    stages = yaml.safe_load(text)["stages"]
    out, stage, written, in_cmd = [], None, set(), False
    for line in text.splitlines(keepends=True):
        stage = _stage_name(line) or stage
        if in_cmd and line.startswith("      "):
            continue  # the folded lines of a command being replaced
        in_cmd = False
        if line.startswith("    cmd:") and stage in BY_RULE:
            out += _cmd_lines(dvc_command(stage, stages[stage]))
            in_cmd = True
            continue
        if line.startswith("      - src/") and stage in BY_RULE:
            if stage not in written:
                out += _user_deps(stage, params)
                out += [f"      - {f}\n" for f in source_files(BY_RULE[stage].command)]
                written.add(stage)
            continue
        out.append(line)
    return "".join(out)
