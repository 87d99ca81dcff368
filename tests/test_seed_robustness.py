"""benchmarks/seed_robustness.py: two runs' verdicts compared one by one; leaking comparisons kept apart."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from seed_robustness import compare  # noqa: E402


def _run(seeds, verdicts):
    def verdict(vid, answer, leaks=False):
        return {"id": vid, "verdict": answer, "holds": 3 if answer != "not_significant" else 0, "replicates": 3,
                "leaks_label": leaks, "fnr_first_val": {"value": 0.1}, "fnr_second_val": {"value": 0.2},
                "pvalue_holm": 0.01, "pvalue_holm_median": 0.02, "rule": "pooled"}
    return {"settings": {"train_seeds": seeds}, "provenance": {"git": {"commit": "x"}},
            "verdicts": [verdict(*v) for v in verdicts]}


def test_a_changed_verdict_is_counted_and_leaking_ones_are_not():
    a = _run([0, 1, 2], [("Q1:x", "first_better"), ("Q2:x", "not_significant"), ("Q1:o", "first_better", True)])
    b = _run([3, 4, 5], [("Q1:x", "first_better"), ("Q2:x", "second_better"), ("Q1:o", "not_significant", True)])
    out = compare(a, b)
    assert (out["fair_verdicts"], out["fair_verdicts_same"]) == (2, 1)
    same = {r["id"]: r["same"] for r in out["rows"]}
    assert same == {"Q1:x": True, "Q2:x": False, "Q1:o": False}
    assert out["train_seeds"] == {"a": [0, 1, 2], "b": [3, 4, 5]}


def test_a_verdict_missing_from_one_run_is_not_the_same():
    out = compare(_run([0], [("Q1:x", "first_better")]), _run([1], []))
    assert out["rows"][0]["same"] is False and out["rows"][0]["b"] is None


def test_cross_machine_check_shows_both_p_values_and_refuses_runs_of_two_commits():
    from cross_machine import compare as machine_compare  # noqa: E402

    from medsr.report.benchmark_tables import cross_machine_markdown

    a = _run([0, 1], [("Q1:x", "first_better"), ("Q2:x", "not_significant")])
    b = _run([0, 1], [("Q1:x", "first_better"), ("Q2:x", "second_better")])
    b["verdicts"][1]["pvalue_holm"] = 0.0031
    b["provenance"]["machine"] = {"cpu": "CPU B", "numeric_environment": {"MKL_CBWR": "COMPATIBLE"}}
    out = machine_compare(a, b)
    assert (out["fair_verdicts"], out["fair_verdicts_same"]) == (2, 1)
    table = cross_machine_markdown(out)
    assert "| Q2:x | not_significant | 0/3 | 0.01 | second_better | 3/3 | 0.0031 | **no** |" in table
    assert "MKL_CBWR=COMPATIBLE" in table and "1 of 2 fair verdicts the same" in table
    other = _run([0, 1], [])
    other["provenance"]["git"]["commit"] = "y"
    with pytest.raises(SystemExit, match="two commits"):
        machine_compare(a, other)


def test_the_two_run_command_line_writes_the_record_and_prints_the_table(tmp_path, capsys):
    from medsr.report.agreement import compare_runs_cli
    from medsr.report.benchmark_tables import seed_robustness_markdown
    from medsr.core.io import read_json, write_json

    write_json(tmp_path / "a.json", _run([0, 1, 2], [("Q1:x", "first_better")]))
    write_json(tmp_path / "b.json", _run([3, 4, 5], [("Q1:x", "not_significant")]))
    compare_runs_cli("check", compare, seed_robustness_markdown, tmp_path / "out.json",
                     [str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert read_json(tmp_path / "out.json")["fair_verdicts_same"] == 0
    printed = capsys.readouterr().out
    assert "0 of 1 fair verdicts the same" in printed and "verdict rule pooled" in printed
    assert "| Q1:x | first_better | 3/3 | 0.01 | not_significant | 0/3 | 0.01 | **no** |" in printed  # both Holm p
