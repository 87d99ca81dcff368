"""Do the verdicts survive other training seeds? Compares two runs' `results/evaluation.json` (the same
commit and parameters except `evaluate.train_seeds`) verdict by verdict.

A verdict is the answer to one comparison (Q1, Q2, reference): first_better | second_better | equivalent |
inconclusive, under the run's `evaluate.verdict_rule` (see medsr.evaluation.verdicts.verdict and comparisons).
Two runs' verdicts of a comparison are consistent when their labels are not opposite (first_better against
second_better) and their between-run z = |d_A - d_B| / sqrt(se_A^2 + se_B^2) is <= 3
(medsr.report.agreement.runs_consistent); the table also says whether the labels are the same. Label-leaking
comparisons are listed but flagged.

    .venv/bin/python benchmarks/seed_robustness.py RUN_A/results/evaluation.json RUN_B/results/evaluation.json

Prints a table and writes results/benchmarks/seed_robustness.json.
"""

from __future__ import annotations

from pathlib import Path

from medsr.report.agreement import compare_runs_cli, verdict_agreement
from medsr.report.benchmark_tables import seed_robustness_markdown


def compare(first: dict, second: dict) -> dict:
    return {"benchmark": "seed_robustness", **verdict_agreement(first["verdicts"], second["verdicts"]),
            "train_seeds": {"a": first["settings"].get("train_seeds"), "b": second["settings"].get("train_seeds")},
            "provenance": {"a": first.get("provenance"), "b": second.get("provenance")}}


def main() -> None:
    compare_runs_cli(
        __doc__.splitlines()[0], compare, seed_robustness_markdown, Path("results/benchmarks/seed_robustness.json")
    )


if __name__ == "__main__":
    main()
