"""The Snakemake rules, one per rule of the stage table (`medsr.stages.RULES`) the params put in the DAG, as
workflow/rules/stages.smk defines them: inputs and outputs from the table's paths (a folder standing for files lists
them, through the function the table names), the user-brought files the stage reads, its source files (the import
graph of its command: editing a module reruns every stage whose command runs it), its command
(`medsr.stages.command`), the params it reads (a change reruns it), threads, GPU resources and priority.

GPU rules declare `gpu=1` (SLURM: one --gpus=1 job each; locally `--resources gpu=1` runs one GPU job at a time) and
`gpu_mem_mb` (`Stage.gpu_mem_mb`), an estimate of the GPU memory a job peaks at with the thesis sizes
(configs/thesis.yaml: 41 M-parameter U-Net, batch 32, crop 64, bf16; ResNet18/DenseNet121 at 128 x 128), CUDA
context included and rounded up; train_sr's is large because, for a bitwise resume, its attention runs as an explicit
softmax (an N^2 matrix per head, N = 4096 pixels at crop 64). Locally `--resources gpu_mem_mb=120000` (about 85 % of
one H200) lets as many jobs share one GPU as fit; smaller params need less, so the estimates only err on the safe
side. Priorities: among ready jobs the longest chain goes first (degrade -> train_sr -> generate, then gather,
classify), the classifiers fill the other core (docs/pipeline.md "Where the defaults come from").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from snakemake.io import directory, report

from medsr.tools.user_paths import user_input_files
from medsr.stages import BY_RULE, LOGS, RULES, STAGES, command, rule_paths
from medsr.tools.rule_files import params_value, rule_templates, rules_in_dag, with_params
from medsr.tools.sources import source_files


@dataclasses.dataclass
class SnakemakeRule:
    name: str
    input: dict[str, Any]
    output: dict[str, Any]
    log: str
    cmd: Callable
    params: dict[str, Any]
    threads: int
    resources: dict[str, int]
    priority: int
    local: bool
    wildcard_constraints: dict[str, str]


def _files_of(files: Callable, folder: str, params) -> Callable:
    """The input function listing the files a folder stands for, the folder's wildcards filled in per job."""
    return lambda wildcards: [str(f) for f in files(folder.format(**dict(wildcards.items())), params)]


def _command(rule: str, values: Mapping[str, str], params_args: str) -> Callable:
    options = BY_RULE[rule].options

    def render(wildcards, input, output):
        keys = dict(wildcards.items())
        filled = {name: value.format(**keys) for name, value in values.items()}
        filled |= {o.name: keys[o.wildcard] for o in options if o.wildcard in keys}
        return command(rule, filled, params_args, LOGS[rule].format(**keys))

    return render


def snakemake_rule(rule: str, params, config: Mapping, params_args: str) -> SnakemakeRule:
    stage, args, values = BY_RULE[rule], rule_paths(rule), rule_templates(rule, params)
    values = {name: with_params(value, params) for name, value in values.items()}
    inputs, outputs = {}, {}
    for name, value in values.items():
        arg = args[name]
        if arg.out:
            path = directory(value) if arg.folder else value
            outputs[name] = report(path, **arg.report) if arg.report else path
        else:
            inputs[name] = _files_of(arg.files, value, params) if arg.files else value
    return SnakemakeRule(
        rule, inputs | {"user": user_input_files(params, stage.command), "code": source_files(stage.command)},
        outputs, LOGS[rule], _command(rule, values, params_args),
        {key: params_value(config, key) for key in stage.params},  # as params.yaml gives them: Snakemake's rerun check
        stage.threads, {"gpu": 1, "gpu_mem_mb": stage.gpu_mem_mb} if stage.gpu_mem_mb else {}, stage.priority,
        stage.local, {key: "|".join(v) for key, v in RULES[rule].matrix.items() if isinstance(v, tuple)})


def snakemake_rules(params, config: Mapping, params_args: str) -> list[SnakemakeRule]:
    return [snakemake_rule(rule, params, config, params_args) for rule in rules_in_dag(params)]


def targets(params) -> list[str]:
    """What the DAG is run for: the outputs of the target stages (`Stage.target`)."""
    return [with_params(a.path, params) for s in STAGES if s.target for a in s.paths if a.out and a.path]


def relative(path: str | Path) -> str:
    """A path as given, relative to the working folder when inside it (portable commands)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
