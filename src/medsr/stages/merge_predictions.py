"""`medsr merge-predictions`: classify's per-train-seed prediction CSVs joined into one.

`medsr classify` runs once per train seed (the seeds' jobs run side by side on the cores a run has). The joined
file holds every row of every seed's file, ordered as one classify over every classifier writes them: by
architecture, then classifier domain (each in the order classify met them), then train seed (the order of the
files, evaluate.train_seeds), each classifier's rows in the order its job wrote them. So `results/predictions.csv`,
and everything evaluate computes from it, does not depend on how the work was split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medsr.core.errors import MedsrError
from medsr.core.io import read_csv, write_csv
from medsr.classifier.predictions import COLUMNS


def _seed_rows(path: Path) -> tuple[str, list[dict[str, str]]]:
    """(train seed, rows) of one classify job's file: the prediction columns, one train seed."""
    if not path.is_file():
        raise MedsrError(f"{path}: predictions file not found (run medsr classify for its seed first)")
    rows = read_csv(path)
    if rows and tuple(rows[0]) != COLUMNS:
        raise MedsrError(f"{path}: columns {', '.join(rows[0])}, expected {', '.join(COLUMNS)}")
    seeds = sorted({row["train_seed"] for row in rows})
    if len(seeds) != 1:
        raise MedsrError(f"{path}: rows of train seeds {seeds or 'none'}; classify writes one seed per file")
    return seeds[0], rows


def run(*, predictions: Sequence[Path], out: Path) -> None:
    """Join the files `predictions` (one per train seed, in evaluate.train_seeds order) into `out`."""
    files: dict[str, Path] = {}
    rows: list[tuple[int, dict[str, str]]] = []
    for index, path in enumerate(map(Path, predictions)):
        seed, seed_rows = _seed_rows(path)
        if seed in files:
            raise MedsrError(f"{path}: train seed {seed} again (also in {files[seed]})")
        files[seed] = path
        rows += [(index, row) for row in seed_rows]
    first: dict[tuple[str, str], int] = {}  # (column, value) -> order of first appearance over the files
    for _, row in rows:
        for column in ("architecture", "classifier"):
            first.setdefault((column, row[column]), len(first))
    ordered = sorted(rows, key=lambda item: (first["architecture", item[1]["architecture"]],
                                             first["classifier", item[1]["classifier"]], item[0]))  # stable
    write_csv(out, [row for _, row in ordered], COLUMNS)
