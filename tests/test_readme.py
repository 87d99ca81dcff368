"""The README's first screen: what to type comes first, CI runs the README's test command verbatim, every page it
links exists, and every generated block in the README and docs/ is the table of its JSON file as committed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medsr.report.readme import BENCHMARK_BLOCK, benchmark_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def _commands() -> dict[str, tuple[int, str]]:
    """The README's numbered commands: the line after '# 1. ...' (run) and '# 2. ...' (test), with line numbers."""
    lines = README.read_text().splitlines()
    found = {}
    for i, line in enumerate(lines):
        m = re.match(r"# ([12])\. ", line)
        if m:
            found["run" if m.group(1) == "1" else "test"] = (i + 2, lines[i + 1])  # 1-based line of the command
    return found


def test_the_two_commands_are_on_the_first_screen():
    commands = _commands()
    assert set(commands) == {"run", "test"}
    for line_number, command in commands.values():
        assert line_number <= 40, f"README line {line_number}: a newcomer's command is below the first screen"
        assert command.startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert commands["run"][1].endswith("snakemake --cores 2 --max-threads 1")
    assert commands["test"][1].endswith(".venv/bin/python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()["test"][1] in ci


def test_every_linked_page_exists():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: link to missing {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_generated_benchmark_blocks_match_their_json(page):
    """A benchmark JSON changed without `medsr readme`, or a table edited by hand, fails here."""
    text = page.read_text()
    assert benchmark_blocks(text, ROOT / "results" / "benchmarks").replace(str(ROOT) + "/", "") == text


def test_no_benchmark_block_is_shown_twice():
    names = [m.group(2) for page in PAGES for m in BENCHMARK_BLOCK.finditer(page.read_text())]
    assert len(names) == len(set(names)) and names
