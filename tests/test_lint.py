"""The linters run in the tests: `ruff check` with the rules of pyproject.toml ([tool.ruff]: line length 120,
pycodestyle, pyflakes) over the package, the tests and the benchmarks; `snakefmt --check` and `snakemake --lint` over
the Snakemake workflow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    beside = Path(sys.executable).with_name("ruff")  # the test extra installs it into this environment
    found = str(beside) if beside.is_file() else shutil.which("ruff")
    assert found, "ruff is not installed: pip install -e '.[test]'"
    return [found]


def test_ruff_check_is_clean():
    run = subprocess.run([*_ruff(), "check", "--no-cache", "src", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_finds_a_long_line_and_an_unused_import(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\n\nX = '" + "x" * 130 + "'\n")
    run = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", "bad.py"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 1 and "F401" in run.stdout and "E501" in run.stdout


# --- the Snakemake files: snakefmt's formatting and `snakemake --lint` ------------------------------------------

SNAKE_FILES = ["Snakefile", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflow" / "rules").glob("*.smk"))]


def _snakefmt() -> str:
    beside = Path(sys.executable).with_name("snakefmt")  # the test extra installs it into this environment
    found = str(beside) if beside.is_file() else shutil.which("snakefmt")
    assert found, "snakefmt is not installed: pip install -e '.[test]'"
    return found


def test_snakemake_files_are_formatted_by_snakefmt():
    """The Snakefile and workflow/rules/*.smk as `snakefmt` writes them (pyproject.toml [tool.snakefmt]: line length
    120, directives in its default order); fix with `snakefmt Snakefile workflow/rules`."""
    assert len(SNAKE_FILES) >= 3
    run = subprocess.run([_snakefmt(), "--check", *SNAKE_FILES], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_snakefmt_finds_an_unformatted_rule(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.smk").write_text('rule a:\n    output: "x"\n    log: "a.log"\n    shell: "touch {output}"\n')
    run = subprocess.run([_snakefmt(), "--check", "bad.smk"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1, run.stdout + run.stderr


def _lint(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=project, capture_output=True, text=True)


def test_snakemake_lint_is_clean(tmp_path):
    """`snakemake --lint` (Snakemake's own checks: a log and a conda environment for every rule, no absolute paths,
    no missing params for a shell command's placeholders, ...) finds nothing in the workflow with the default
    params.yaml; it runs in a scratch copy so that its .snakemake/ stays out of the checkout. No lint is excluded."""
    from project import copy_workflow

    run = _lint(copy_workflow(tmp_path / "project"))
    assert run.returncode == 0 and "Congratulations" in run.stdout + run.stderr, run.stdout + run.stderr


def test_snakemake_lint_finds_a_rule_without_log_or_environment(tmp_path):
    (tmp_path / "Snakefile").write_text('rule a:\n    output:\n        "x",\n    shell:\n        "touch {output}"\n')
    run = _lint(tmp_path)
    assert run.returncode == 1 and "No log directive defined" in run.stdout + run.stderr, run.stdout + run.stderr
