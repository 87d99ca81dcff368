"""A rule's files as the two front ends write them, from the stage table's path templates (`medsr.stages.PathArg`):
a template's `{section.key[0]}` fields are params values, its other `{key}` fields wildcards (Snakemake) / matrix keys
(DVC)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from medsr.stages import BY_RULE, RULES, rule_paths

PARAMS_FIELD = re.compile(r"\{(\w+(?:\.\w+)+)(?:\[(\d+)\])?\}")  # {section.key} or {section.key[0]}
KEY_FIELD = re.compile(r"\{(\w+)\}")


def params_value(params, dotted: str, index: str | None = None):
    """The value of a dotted params.yaml key (`evaluate.train_seeds`, its `index`-th item when given) in the loaded
    params or in the raw mapping Snakemake holds (`config`)."""
    value = params
    for part in dotted.split("."):
        value = value[part] if isinstance(value, Mapping) else getattr(value, part)
    return value if index is None else list(value)[int(index)]


def with_params(template: str, params) -> str:
    """`template` with each params field replaced by its value (the wildcards left: Snakemake's path)."""
    return PARAMS_FIELD.sub(lambda m: str(params_value(params, m.group(1), m.group(2))), template)


def for_dvc(template: str) -> str:
    """`template` in dvc.yaml's interpolation: a params field as ${section.key[0]}, a key as ${item.key}."""
    template = PARAMS_FIELD.sub(lambda m: "${" + m.group(1) + (f"[{m.group(2)}]" if m.group(2) else "") + "}",
                                template)
    return KEY_FIELD.sub(lambda m: "${item." + m.group(1) + "}", template)


def rule_templates(rule: str, params) -> dict[str, str]:
    """Each path argument `rule` passes, by name: its template, or the path the params choose (`given`; left out
    when they choose none); the `fixed` paths are the stage table's own (`medsr.stages.command`)."""
    out = {}
    for name, arg in rule_paths(rule).items():
        if arg.fixed:
            continue
        value = arg.given(params) if arg.given else arg.path
        if value:
            out[name] = str(value)
    return out


def in_dag(rule: str, params) -> bool:
    """Whether the params put `rule` in the DAG (its stage's `when`)."""
    when = BY_RULE[rule].when
    return when is None or bool(when(params))


def rules_in_dag(params) -> list[str]:
    return [rule for rule in RULES if in_dag(rule, params)]
