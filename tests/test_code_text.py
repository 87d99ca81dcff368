"""params.yaml, src/ and workflow/ say what each knob and module is, not when or at which commit something was
measured: no commit hashes and no dates there (issue #34). Measurements and the commits they came from live in
the docs (docs/pipeline.md "Where the defaults come from" and the generated tables)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("params.yaml", "Snakefile", "src", "workflow")  # files, or folders whose text files are all read
TEXT_SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".json", ".rst", ".md", ".txt", ".html", ".toml", ""}

# A commit-like hash: 7 to 40 lower-case hex digits standing alone, at least one of them a decimal digit. Short
# hashes can be all digits (4635038), so a 7-digit integer counts too: write large numbers with underscores
# (10_000_000) or in e-notation. The digit leaves English words alone (`deadbeef`, `facade`); not after `#` hex
# colours (`#1f77b4ff`); not after or before a decimal point the digits of a decimal number (0.00012345678); the
# boundaries at both ends leave longer hex strings alone, such as a 64-digit sha256 pin of a download (a checksum,
# not a commit).
HASH = re.compile(r"(?<![#\w.])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?!\w|\.\d)")
# A date: ISO (2024-05-31; year-month alone is left alone, as in the JSON schema URL .../draft/2020-12/schema) or a
# written day and/or month with a year (31 May 2024, May 2024, May 31, 2024). A bare year is left alone: citations
# (Yue et al. 2023) carry one.
MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
DATE = re.compile(r"\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b"
                  rf"|\b(?:[0-3]?\d )?{MONTH} (?:[0-3]?\d, )?(?:19|20)\d{{2}}\b")


def _built(path: Path) -> bool:
    """Files an install or a run writes into the trees (bytecode, the editable install's metadata): not sources."""
    return any(part == "__pycache__" or part.endswith(".egg-info") for part in path.parts)


def checked_files() -> list[Path]:
    files = []
    for name in CHECKED:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES and not _built(p))
    return files


def findings(text: str) -> list[str]:
    return [m.group(0) for pattern in (HASH, DATE) for m in pattern.finditer(text)]


def test_no_commit_hash_or_date_in_params_src_or_workflow():
    files = checked_files()
    assert any(f.name == "params.yaml" for f in files) and any(f.suffix == ".smk" for f in files)
    found = {}
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if findings(line):
                found[f"{path.relative_to(ROOT)}:{number}"] = findings(line)
    assert not found, f"commit hashes or dates (move them to the docs): {found}"


@pytest.mark.parametrize("text, expected", [
    ("the stopping rule of 4635038", ["4635038"]),
    ("fixed in 1d12d18 and 07f46f6", ["1d12d18", "07f46f6"]),
    ("commit 3cca7283be8e7c2c4d2d9ef2e1bd0c1b4d0e4f1a", ["3cca7283be8e7c2c4d2d9ef2e1bd0c1b4d0e4f1a"]),
    ("measured on 2024-05-31", ["2024-05-31"]),
    ("run of 31 May 2024", ["31 May 2024"]),
    ("as of March 2025", ["March 2025"]),
    ("on Sep 3, 2025", ["Sep 3, 2025"]),
    ("gpu_mem_mb=120000, 10_000_000 or 1e7 resamples, eps 0.00012345678, 1234567.5", []),
    ("colour #1f77b4ff, words deadbeef and facade", []),
    ("sha256 " + "0123456789abcdef" * 4, []),
    ("https://json-schema.org/draft/2020-12/schema", []),
    ("Yue et al. 2023; Wu & Johnson 2021", []),
])
def test_the_patterns_find_hashes_and_dates_only(text, expected):
    assert findings(text) == expected
