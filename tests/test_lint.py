"""The linter runs in the tests: `ruff check` with the rules of pyproject.toml ([tool.ruff]: line length 120,
pycodestyle, pyflakes) over the package, the tests and the benchmarks."""

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
