"""The README's first screen: what the run found (a generated block), then what to type; no sentence on it over 40
words and no internal key; CI runs the README's test command verbatim, every page it links exists, and every
generated block in the README and docs/ is the table of its JSON file as committed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medsr.report.answer import MAX_WORDS
from medsr.report.readme import ANSWER_BEGIN_END, BENCHMARK_BLOCK, benchmark_blocks

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


def _first_screen() -> str:
    """The README above its commands, without markdown markup: what a newcomer reads first."""
    text = README.read_text().split("## Run it")[0]
    return re.sub(r"<!--.*?-->|^#[^\n]*|[*`]", "", text, flags=re.S | re.M)


def _sentences(text: str) -> list[str]:
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
    return [s for p in paragraphs for s in re.split(r"(?<=[.!?])\s+", p)]


def test_the_first_screen_says_what_the_run_found_in_short_sentences():
    text = README.read_text()
    begin, end = ANSWER_BEGIN_END
    assert 0 <= text.index(begin) < text.index(end) < text.index("## Run it")  # `medsr readme` fills it from a run
    long = [s for s in _sentences(_first_screen()) if len(s.split()) > MAX_WORDS]
    assert not long, long
    assert not re.search(r"\w@\w|Q\d:|_vs_", _first_screen())  # comparison names, not results keys


def test_the_cross_machine_tables_are_in_the_evaluation_page():
    names = {page.name: {m.group(2) for m in BENCHMARK_BLOCK.finditer(page.read_text())} for page in PAGES}
    assert {"cross_machine", "cross_machine_10"} <= names["evaluation.md"]
    assert not names["README.md"] & {"cross_machine", "cross_machine_10"}


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
