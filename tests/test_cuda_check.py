"""benchmarks/cuda_check.py's logic on the CPU at tiny sizes: the parts run, report and judge as on CUDA."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("cuda_check", ROOT / "benchmarks" / "cuda_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cuda_check"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_cuda_check_runs_its_parts_on_cpu(tmp_path):
    out = tmp_path / "cuda_check.json"
    status = _script().main(["--device", "cpu", "--tiny", "--out", str(out)])
    report = json.loads(out.read_text())
    assert status == 0 and report["ok"] is True and report["device"] == "cpu" and report["tiny"] is True
    pipeline = report["parts"]["pipeline"]
    assert pipeline["dry_run"] is True and pipeline["returncode"] == 0  # the smoke DAG plans in a scratch copy
    (train,) = report["parts"]["train"]  # CPU: fp32 only
    assert train["losses_finite"] and all(math.isfinite(train[k]) for k in ("first_loss", "last_loss"))
    assert train["steps"] == 4 and train["resume_exact"] and train["resume_max_abs_difference"] == 0.0
    assert train["resumed_final_loss_equal"]
    sample = report["parts"]["sample"]
    assert [(r["sampler"], r["batch"]) for r in sample["rows"]] == [
        ("ddim 20", 1), ("resshift 4", 1), ("ddim 20", 2), ("resshift 4", 2)]
    assert all(r["images_per_s"] > 0 and r["x_seed_style"] > 0 for r in sample["rows"])
    assert sample["seed_style_images_per_s"] > 0 and sample["image_size"] == 32


def test_cuda_check_fails_on_an_inexact_resume(tmp_path, monkeypatch):
    """A resume that does not reproduce the straight run makes the check fail (exit 1, ok false)."""
    script = _script()
    original = script._max_difference
    monkeypatch.setattr(script, "_max_difference", lambda a, b: original(a, b) + 1e-3)
    out = tmp_path / "cuda_check.json"
    assert script.main(["--device", "cpu", "--tiny", "--parts", "train", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["parts"]["train"][0]["resume_exact"] is False


def test_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--device", "cpu", "--parts", "train,gpu-magic"])
    assert "gpu-magic" in capsys.readouterr().err
