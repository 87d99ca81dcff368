"""Snakemake and DVC run the same `medsr` commands over the same files with the same parameters."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dag import dvc_stages, snakemake_stages

ROOT = Path(__file__).resolve().parents[1]
GPU_RULES = {"train_sr", "train_regression", "train_classifier", "train_guide_classifier", "generate", "regress"}


def project_copy(tmp_path: Path, overrides: dict | None = None) -> Path:
    """The workflow files of the checkout in a scratch folder, optionally with changed params."""
    work = tmp_path / "project"
    work.mkdir()
    for name in ("Snakefile", "dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy2(ROOT / name, work / name)
    shutil.copytree(ROOT / "workflow", work / "workflow", symlinks=True)
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=work, check=True)
    if overrides:
        params = yaml.safe_load((work / "params.yaml").read_text())
        for key, value in overrides.items():
            section, name = key.split(".")
            params[section][name] = value
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


VARIANTS = {
    "default": None,
    "three shards, two guidance modes, one seed": {
        "generate.shards": [0, 1, 2],
        "generate.guidance": ["null", "predicted"],
        "evaluate.seeds": [7],
    },
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_snakemake_and_dvc_declare_the_same_dag(tmp_path, variant):
    work = project_copy(tmp_path, VARIANTS[variant])
    snake = snakemake_stages(work)
    dvc = dvc_stages(work)

    assert sorted(snake) == sorted(dvc), "stage names differ"
    for name in sorted(dvc):
        s, d = snake[name], dvc[name]
        assert s.cmd == d.cmd, f"{name}: commands differ\n snakemake: {s.cmd}\n dvc:       {d.cmd}"
        assert s.inputs == d.inputs, f"{name}: inputs differ: {sorted(s.inputs ^ d.inputs)}"
        assert s.outputs == d.outputs, f"{name}: outputs differ: {sorted(s.outputs ^ d.outputs)}"
        assert s.params == d.params, f"{name}: params differ: {sorted(s.params ^ d.params)}"


def test_matrix_expands_with_params(tmp_path):
    work = project_copy(tmp_path, VARIANTS["three shards, two guidance modes, one seed"])
    names = sorted(n for n in dvc_stages(work) if n.startswith("generate@"))
    assert names == sorted(f"generate@{g}-7-{k}" for g in ("null", "predicted") for k in range(3))


def test_training_and_generation_rules_request_a_gpu(tmp_path):
    stages = snakemake_stages(project_copy(tmp_path))
    for name, stage in stages.items():
        rule = name.split("@")[0]
        assert stage.gpu == (1 if rule in GPU_RULES else 0), f"{name}: resources gpu={stage.gpu}"


def test_every_command_is_a_medsr_stage_reading_the_params_file(tmp_path):
    for stage in dvc_stages(project_copy(tmp_path)).values():
        assert stage.cmd.startswith("medsr "), stage.cmd
        assert "--params params.yaml" in stage.cmd, stage.cmd


def test_snakemake_lint_has_no_errors():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--cores", "1"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
