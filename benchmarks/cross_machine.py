"""Do the verdicts survive another machine? Compares two runs' `results/evaluation.json` made from one clean commit
with the same parameters on two machines, or on one machine under another CPU code path (other float summation
orders give other trained classifiers, as another CPU would):

    snakemake --cores 2 --max-threads 1                                       # run A, in one clone
    ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE snakemake --cores 2 --max-threads 1   # run B, in another
    .venv/bin/python benchmarks/cross_machine.py RUN_A/results/evaluation.json RUN_B/results/evaluation.json

A verdict's label is first_better | second_better | equivalent | inconclusive | no_verdict; the table shows both
runs' labels and Holm-adjusted p-values and whether the two verdicts are consistent (no opposite labels, between-run
z <= 3: medsr.report.agreement.runs_consistent), so a verdict that moves shows by how much. Prints a table and writes
results/benchmarks/cross_machine.json (both runs' commits, machines and numeric environments).
"""

from __future__ import annotations

from pathlib import Path

from medsr.report.agreement import compare_runs_cli, verdict_agreement
from medsr.report.benchmark_tables import cross_machine_markdown


def compare(first: dict, second: dict) -> dict:
    """Verdict by verdict; refuses runs of other commits or parameters (then it is not a machine check)."""
    commits = [(r.get("provenance") or {}).get("git", {}).get("commit") for r in (first, second)]
    if commits[0] != commits[1]:
        raise SystemExit(f"cross_machine: runs of two commits ({commits[0]}, {commits[1]}): not a machine check")
    if first.get("settings") != second.get("settings"):
        raise SystemExit("cross_machine: the two runs' evaluation settings differ: not a machine check")
    return {"benchmark": "cross_machine", **verdict_agreement(first["verdicts"], second["verdicts"]),
            "train_seeds": first["settings"].get("train_seeds"),
            "provenance": {"a": first.get("provenance"), "b": second.get("provenance")}}


def main() -> None:
    compare_runs_cli(
        __doc__.splitlines()[0], compare, cross_machine_markdown, Path("results/benchmarks/cross_machine.json")
    )


if __name__ == "__main__":
    main()
