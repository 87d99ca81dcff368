"""benchmarks/seed_robustness.py and cross_machine.py: two runs' verdicts compared one by one (consistent: no opposite
labels and a between-run z <= 3); leaking comparisons kept apart."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from seed_robustness import compare  # noqa: E402

from medsr.report.benchmark_tables import seed_robustness_markdown  # noqa: E402


def _run(seeds, verdicts):
    def verdict(vid, answer, leaks=False, difference=-0.1, se=0.02):
        return {"id": vid, "verdict": answer, "holds": 3 if answer != "inconclusive" else 0, "replicates": 3,
                "leaks_label": leaks, "fnr_first_val": {"value": 0.1}, "fnr_second_val": {"value": 0.2},
                "pvalue_holm": 0.01, "pvalue_holm_median": 0.02, "rule": "seed_image_t",
                "verdict_test": {"difference": difference, "se": se}}
    return {"settings": {"train_seeds": seeds}, "provenance": {"git": {"commit": "x"}},
            "verdicts": [verdict(*v) for v in verdicts]}


def test_a_changed_verdict_is_counted_and_leaking_ones_are_not():
    a = _run([0, 1, 2], [("Q1:x", "first_better"), ("Q2:x", "inconclusive"), ("Q1:o", "first_better", True),
                         ("Q1:y", "first_better"), ("Q2:z", "first_better", False, -0.1, 0.03)])
    b = _run([3, 4, 5], [("Q1:x", "first_better"), ("Q2:x", "second_better"), ("Q1:o", "inconclusive", True),
                         ("Q1:y", "second_better"), ("Q2:z", "first_better", False, -0.25, 0.03)])
    out = compare(a, b)
    assert (out["fair_verdicts"], out["fair_verdicts_same"], out["fair_verdicts_consistent"]) == (4, 2, 2)
    rows = {r["id"]: r for r in out["rows"]}
    assert {k: r["same"] for k, r in rows.items()} == {"Q1:x": True, "Q2:x": False, "Q1:o": False, "Q1:y": False,
                                                       "Q2:z": True}
    # another label is consistent unless opposite; the same label is not when the estimates are > 3 SE apart
    assert {k: r["consistent"] for k, r in rows.items()} == {"Q1:x": True, "Q2:x": True, "Q1:o": True,
                                                             "Q1:y": False, "Q2:z": False}
    assert rows["Q2:z"]["z"] == pytest.approx(0.15 / np.sqrt(2 * 0.03 ** 2)) and rows["Q1:x"]["z"] == 0.0
    assert "| Q2:z | first_better | 3/3 | 0.01 | first_better | 3/3 | 0.01 | **no** (3.5) |" in \
        seed_robustness_markdown(out)
    assert out["train_seeds"] == {"a": [0, 1, 2], "b": [3, 4, 5]}


def test_the_between_run_z_and_the_consistency_of_two_runs():
    from medsr.report.agreement import between_run_z, runs_consistent

    assert between_run_z((-0.1, 0.03), (-0.02, 0.04)) == pytest.approx(1.6)  # 0.08 / 0.05
    assert between_run_z((-0.1, None), (-0.02, 0.04)) is None and between_run_z(None, (0.0, 0.1)) is None
    assert between_run_z((0.1, 0.0), (0.1, 0.0)) == 0.0 and between_run_z((0.1, 0.0), (0.2, 0.0)) == np.inf
    assert runs_consistent("first_better", "inconclusive", 2.9) is True
    assert runs_consistent("equivalent", "equivalent", 3.1) is False  # the same label, estimates too far apart
    assert runs_consistent("second_better", "first_better", 0.0) is False  # opposite labels, whatever z
    assert runs_consistent("inconclusive", "first_better", None) is None  # no standard error: not judged


def test_a_verdict_missing_from_one_run_is_not_the_same():
    out = compare(_run([0], [("Q1:x", "first_better")]), _run([1], []))
    assert out["rows"][0]["same"] is False and out["rows"][0]["b"] is None


def test_cross_machine_check_shows_both_p_values_and_refuses_runs_of_two_commits():
    from cross_machine import compare as machine_compare  # noqa: E402

    from medsr.report.benchmark_tables import cross_machine_markdown

    a = _run([0, 1], [("Q1:x", "first_better"), ("Q2:x", "inconclusive")])
    b = _run([0, 1], [("Q1:x", "first_better"), ("Q2:x", "second_better", False, 0.05)])
    b["verdicts"][1]["pvalue_holm"] = 0.0031
    b["provenance"]["machine"] = {"cpu": "CPU B", "numeric_environment": {"MKL_CBWR": "COMPATIBLE"}}
    out = machine_compare(a, b)
    assert (out["fair_verdicts"], out["fair_verdicts_same"]) == (2, 1)
    table = cross_machine_markdown(out)
    assert "| Q2:x | inconclusive | 0/3 | 0.01 | second_better | 3/3 | 0.0031 | **no** (5.3) |" in table  # 0.15 / 0.028
    assert "MKL_CBWR=COMPATIBLE" in table and "1 of 2 fair verdicts the same" in table
    assert "1 of 2 fair verdicts consistent (no opposite labels, between-run z <= 3)" in table
    other = _run([0, 1], [])
    other["provenance"]["git"]["commit"] = "y"
    with pytest.raises(SystemExit, match="two commits"):
        machine_compare(a, other)


def test_the_two_run_command_line_writes_the_record_and_prints_the_table(tmp_path, capsys):
    from medsr.report.agreement import compare_runs_cli
    from medsr.report.benchmark_tables import seed_robustness_markdown
    from medsr.core.io import read_json, write_json

    write_json(tmp_path / "a.json", _run([0, 1, 2], [("Q1:x", "first_better")]))
    write_json(tmp_path / "b.json", _run([3, 4, 5], [("Q1:x", "inconclusive")]))
    compare_runs_cli("check", compare, seed_robustness_markdown, tmp_path / "out.json",
                     [str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert read_json(tmp_path / "out.json")["fair_verdicts_same"] == 0
    printed = capsys.readouterr().out
    assert "0 of 1 fair verdicts the same" in printed and "verdict rule seed_image_t" in printed
    assert "1 of 1 fair verdicts consistent" in printed
    assert "| Q1:x | first_better | 3/3 | 0.01 | inconclusive | 0/3 | 0.01 | yes (0.0) |" in printed  # both Holm p
