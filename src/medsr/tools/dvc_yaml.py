"""dvc.yaml, written whole from the stage table and the params (`medsr dvc-sync`).

One stage per rule of the stage table (`medsr.stages.RULES`) the params put in the DAG (train_student only for a
distilled sampler, classify_deployed only with evaluate.deployed.file: DVC has no conditional stage): its matrix, its
command (`medsr.stages.command`, from the same path templates as Snakemake's rules, in DVC's interpolation), its deps
(the paths it reads, the paths a user brings that it reads, marked USER_DEP, and its source files: the import graph
of its command, `medsr.tools.sources.source_files`), its params and its outputs. tests/test_dag_agreement.py fails
when the committed dvc.yaml is stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from medsr.tools.user_paths import check_user_files, user_files
from medsr.stages import BY_RULE, LOGS, RULES, STAGES, command, rule_paths
from medsr.tools.rule_files import for_dvc, rule_templates, rules_in_dag
from medsr.tools.sources import source_files

DVC_PARAMS_ARGS = "--params params.yaml"
USER_DEP = "  # user: "  # ends the dep line of a user-brought path, before its params.yaml key
HEADER = """\
# The medsr DAG for DVC, written by `medsr dvc-sync` from the stage table (medsr.stages) and params.yaml: run it
# after changing the params (generate.sampler student adds train_student, evaluate.deployed.file classify_deployed,
# evaluate.external folders are deps of the stages reading them). Snakefile + workflow/rules/*.smk declare the same
# stages, commands, files and parameters from the same table (tests/test_dag_agreement.py proves it).
stages:
"""
EVALUATE_PLOTS = """\
  - {plots}/confusion:           # one confusion matrix per image set (file name = set)
      template: confusion
      x: predicted
      y: actual
      title: Confusion matrix of the HR-trained classifier (positive class unhealthy)
  - FNR per image set with its bootstrap interval:
      template: bar_horizontal
      x: fnr
      y:
        {plots}/fnr.csv: set
"""


def dvc_command(rule: str, params) -> str:
    """A dvc.yaml stage's command (`command`): its paths in DVC's interpolation, its options and log its matrix keys
    (${item.<key>})."""
    values = {name: for_dvc(value) for name, value in rule_templates(rule, params).items()}
    values |= {o.name: f"${{item.{o.wildcard}}}" for o in BY_RULE[rule].options}
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


def _matrix(rule: str) -> list[str]:
    matrix = RULES[rule].matrix
    if not matrix:
        return []
    return ["    matrix:\n"] + [f"      {key}: " + (f"[{', '.join(v)}]" if isinstance(v, tuple) else f"${{{v}}}") + "\n"
                               for key, v in matrix.items()]


def _outputs(rule: str, params) -> list[str]:
    """The written paths, grouped by their dvc.yaml list (outs, metrics, plots) in the order each first appears."""
    args, values = rule_paths(rule), rule_templates(rule, params)
    groups: dict[str, list[str]] = {}
    for name, value in values.items():
        arg = args[name]
        if not arg.out:
            continue
        lines = [f"      - {for_dvc(value)}\n"]
        if arg.dvc == "plots":
            lines = [f"      - {for_dvc(value)}:\n"] + [f"          {k}: {v}\n" for k, v in arg.plot.items()]
        groups.setdefault(arg.dvc, []).extend(lines)
    return [line for key, lines in groups.items() for line in [f"    {key}:\n", *lines]]


def dvc_stage(rule: str, params) -> list[str]:
    stage, args = BY_RULE[rule], rule_paths(rule)
    reads = [for_dvc(v) for name, v in rule_templates(rule, params).items() if not args[name].out]
    users = [f"      - {json.dumps(str(path))}{USER_DEP}{key}\n"
             for key, path in user_files(params, stage.command).items()]
    return [f"  {rule}:\n", *_matrix(rule), *_cmd_lines(dvc_command(rule, params)), "    deps:\n",
            *[f"      - {d}\n" for d in reads], *users, *[f"      - {f}\n" for f in source_files(stage.command)],
            "    params:\n", *[f"      - {p}\n" for p in stage.params], *_outputs(rule, params)]


def _plots(params) -> list[str]:
    """dvc.yaml's top plots: every written CSV with a titled plot (the training losses), then evaluate's."""
    out = ["# Plots for `dvc plots show` / `dvc plots diff`: training curves (the classifiers' are declared by their\n",
           "# stage), the confusion matrices and FNR intervals that `evaluate` writes to its plots folder.\n",
           "plots:\n"]
    for rule in rules_in_dag(params):
        for name, value in rule_templates(rule, params).items():
            plot = rule_paths(rule)[name].plot
            if plot and "title" in plot:
                out += [f"  - {plot['title']}:\n", f"      x: {plot['x']}\n", "      y:\n",
                        f"        {for_dvc(value)}: {plot['y']}\n"]
    plots = next(a.path for s in STAGES if s.target for a in s.paths if a.name == "plots")
    return out + [EVALUATE_PLOTS.format(plots=plots)]


def sync_dvc_yaml(text: str, params, root: Path | str = ".") -> str:
    """dvc.yaml's text for `params` (the user-brought paths checked to exist, a relative one under `root`: dvc.yaml's
    folder); `text`, the file as it was, is replaced whole."""
    check_user_files(params, root)
    stages = [line for rule in rules_in_dag(params) for line in [*dvc_stage(rule, params), "\n"]]
    return HEADER + "".join(stages) + "".join(_plots(params))
