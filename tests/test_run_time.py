"""benchmarks/run_time.py: a Snakemake log read into jobs, core-seconds per rule, idle cores and the budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import run_time  # noqa: E402

LOG = """\
Select jobs to execute...
[Sat Dec  5 12:00:00 2026]
localrule download:
    output: data/hr
    jobid: 3
    reason: Missing output files: data/hr
[Sat Dec  5 12:00:10 2026]
Finished jobid: 3 (Rule: download)
Execute 2 jobs...
[Sat Dec  5 12:00:10 2026]
localrule train_classifier:
    input: data/hr
    jobid: 1
    wildcards: arch=resnet18, domain=hr, seed=0
[Sat Dec  5 12:00:10 2026]
rule train_sr:
    jobid: 2
[Sat Dec  5 12:00:40 2026]
Finished jobid: 2 (Rule: train_sr)
[Sat Dec  5 12:01:10 2026]
Finished jobid: 1 (Rule: train_classifier)
[Sat Dec  5 12:01:10 2026]
localrule all:
    jobid: 0
[Sat Dec  5 12:01:10 2026]
Finished jobid: 0 (Rule: all)
"""


def test_core_seconds_idle_cores_epochs_and_the_budget(tmp_path):
    train = tmp_path / "results" / "train"
    train.mkdir(parents=True)
    (train / "classifier_resnet18_hr_seed0.csv").write_text("epoch,val_auroc\n1,0.5\n2,0.9\n3,0.95\n")
    out = run_time.summarize(run_time.parse_log(LOG), cores=2, train_logs=train, total_s=1000.0)
    assert out["snakemake_jobs_s"] == 70 and out["busy_core_s"] == 100 and out["idle_core_s"] == 40
    assert out["seconds_with_jobs_running"] == {1: 40, 2: 30}  # download alone, then train_classifier alone
    assert [(r["rule"], r["jobs"], r["core_s"]) for r in out["rules"]] == [
        ("train_classifier", 1, 60), ("train_sr", 1, 30), ("download", 1, 10)]
    (classifier,) = out["classifiers"]
    assert (classifier["seed"], classifier["epochs"], classifier["s_per_epoch"]) == ("0", 3, 20)
    assert (out["outside_jobs_s"], out["over_budget_s"], out["core_s_to_lose"]) == (930, 100, 200)


def test_the_cli_reads_the_newest_log_and_writes_json(tmp_path, monkeypatch, capsys):
    logs = tmp_path / "run" / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-12-05T100000.000000.snakemake.log").write_text("Execute 1 jobs...\n")  # older, not read
    (logs / "2026-12-05T120000.000000.snakemake.log").write_text("  Platform: Linux-x86_64\n" + LOG)
    monkeypatch.setattr(sys, "argv", ["run_time.py", str(tmp_path / "run"), "--out", str(tmp_path / "t.json")])
    run_time.main()
    out = json.loads((tmp_path / "t.json").read_text())
    assert out["log"].startswith("2026-12-05T12") and out["log_platform"] == "Linux-x86_64"
    assert out["classifiers"][0]["epochs"] is None and "total_s" in out and out["total_s"] is None
    assert "train_classifier" in capsys.readouterr().out


def test_an_unfinished_run_is_refused():
    with pytest.raises(SystemExit, match="without an end.*train_sr"):
        run_time.parse_log(LOG.split("Finished jobid: 2")[0])
