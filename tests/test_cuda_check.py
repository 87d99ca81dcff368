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
    assert train["same_run_twice_exact"] and train["same_run_twice_max_abs_difference"] == 0.0
    assert train["resumed_final_loss_equal"] and train["same_run_twice_final_loss_equal"]
    assert train["nondeterminism_warnings"] == [] and isinstance(train["warnings"], list)
    sample = report["parts"]["sample"]
    assert [(r["sampler"], r["batch"], r["precision"]) for r in sample["rows"]] == [  # CPU: fp32 only
        (name, batch, "fp32") for batch in (1, 2) for name in ("ddim 20", "resshift 4", "student")]
    by_name = {(r["sampler"], r["batch"]): r for r in sample["rows"]}
    assert all(by_name[("student", b)]["tflops"] * 4 == pytest.approx(by_name[("resshift 4", b)]["tflops"] * (
        by_name[("student", b)]["images_per_s"] / by_name[("resshift 4", b)]["images_per_s"])) for b in (1, 2))
    assert all(r["images_per_s"] > 0 and r["x_seed_style"] > 0 for r in sample["rows"])
    assert all(r["tflops"] > 0 and 0 < r["share_of_matmul_rate"] for r in sample["rows"])
    assert sample["gflop_per_call_batch1"] > 0 and sample["matmul"]["tflops"] > 0
    assert sample["seed_style_images_per_s"] > 0 and sample["image_size"] == 32
    quality = report["parts"]["quality"]  # no --run: skipped, and said so
    assert quality["ok"] is True and "no --run" in quality["skipped"]
    assert set(report["part_seconds"]) == {"pipeline", "train", "sample", "quality"}
    assert report["within_budget"]["budget_s"] == 300


def test_cuda_check_fails_on_an_inexact_rerun_or_resume(tmp_path, monkeypatch):
    """Weights that differ between two runs (or after a resume) make the check fail (exit 1, ok false)."""
    script = _script()
    original = script._max_difference
    monkeypatch.setattr(script, "_max_difference", lambda a, b: original(a, b) + 1e-3)
    out = tmp_path / "cuda_check.json"
    assert script.main(["--device", "cpu", "--tiny", "--parts", "train", "--train-steps", "2",
                        "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    (train,) = report["parts"]["train"]
    assert report["ok"] is False and train["resume_exact"] is False and train["same_run_twice_exact"] is False


def test_a_nondeterminism_warning_is_recorded_by_name(tmp_path, monkeypatch):
    """A warning raised while training (as torch's warn_only deterministic mode raises one naming the op) lands in
    the report, so a failing GPU run says which op it was."""
    import warnings

    script = _script()
    original = script._train_runs

    def warning_runs(*args):
        warnings.warn("index_add_cuda_ does not have a deterministic implementation, but you set "
                      "'torch.use_deterministic_algorithms(True, warn_only=True)'", UserWarning)
        return original(*args)

    monkeypatch.setattr(script, "_train_runs", warning_runs)
    out = tmp_path / "cuda_check.json"
    script.main(["--device", "cpu", "--tiny", "--parts", "train", "--train-steps", "2", "--out", str(out)])
    (train,) = json.loads(out.read_text())["parts"]["train"]
    assert [w["message"][:20] for w in train["nondeterminism_warnings"]] == ["index_add_cuda_ does"]


def test_parts_past_max_seconds_are_skipped_and_fail(tmp_path):
    out = tmp_path / "cuda_check.json"
    assert _script().main(["--device", "cpu", "--tiny", "--parts", "quality", "--max-seconds", "0",
                           "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["ok"] is False and "max-seconds" in report["parts"]["quality"]["skipped"]


def _finished_run(root: Path) -> Path:
    """A run folder as the DAG leaves it, at smoke size: params, data/hr+lr, an (untrained) SR model and the
    first HR resnet18 classifier (one epoch)."""
    import dataclasses
    import shutil

    import torch

    from medsr.core.model_files import save_model
    from medsr.stages.train_classifier import run as train_classifier
    from medsr.core.config import load_params
    from medsr.stages.download import run as download
    from medsr.stages.degrade import run as degrade
    from medsr.diffusion.unet import build_unet
    from medsr.stages import CLASSIFIER_MODEL

    (root / "configs").mkdir(parents=True)
    shutil.copy2(ROOT / "params.yaml", root / "params.yaml")
    shutil.copy2(ROOT / "configs/smoke.yaml", root / "configs/smoke.yaml")
    params = load_params([root / "params.yaml", root / "configs/smoke.yaml"])
    download(params.data, out=root / "data/hr")
    degrade(params.degrade, hr=root / "data/hr", lr=root / "data/lr", bicubic=root / "data/bicubic")
    size = params.data.image_size
    torch.manual_seed(0)
    save_model(root / "models/sr.safetensors", build_unet(params.sr_model, "sr_diffusion").state_dict(),
               {"sr_model": dataclasses.asdict(params.sr_model), "scale": params.degrade.scale,
                "hr_size": [size, size], "lr_size": [size // params.degrade.scale] * 2, "kind": "sr_diffusion",
                "diffusion": dataclasses.asdict(params.diffusion)})
    seed = params.evaluate.train_seeds[0]
    name = CLASSIFIER_MODEL.format(arch="resnet18", domain="hr", seed=seed)
    train_classifier(dataclasses.replace(params.train_classifier, epochs=1), images=root / "data/hr",
                     model=root / "models/classifiers" / name, log=root / "classifier.csv", architecture="resnet18",
                     domain="hr", seed=seed)
    return root


def test_quality_part_compares_precisions_on_a_finished_runs_val_images(tmp_path):
    """On the CPU the candidate is fp32 itself (bf16 is refused there): the comparison machinery runs end to end
    and finds no difference; on CUDA the same code compares bf16."""
    run = _finished_run(tmp_path / "run")
    out = tmp_path / "cuda_check.json"
    status = _script().main(["--device", "cpu", "--tiny", "--parts", "quality", "--run", str(run),
                             "--run-config", "configs/smoke.yaml", "--quality-images", "4", "--out", str(out)])
    quality = json.loads(out.read_text())["parts"]["quality"]
    assert status == 0 and quality["ok"] is True and quality["candidate"] == "fp32" and quality["images"] == 4
    assert quality["psnr_difference_db"] == 0.0 and quality["decision_agreement"] == 1.0
    assert math.isfinite(quality["fp32"]["psnr"]) and 0 < quality["fp32"]["ssim"] <= 1


def test_quality_part_reports_what_a_run_lacks(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    out = tmp_path / "cuda_check.json"
    assert _script().main(["--device", "cpu", "--tiny", "--parts", "quality", "--run", str(tmp_path / "run"),
                           "--out", str(out)]) == 1
    quality = json.loads(out.read_text())["parts"]["quality"]
    assert quality["ok"] is False and "sr.safetensors" in quality["skipped"]


def test_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--device", "cpu", "--parts", "train,gpu-magic"])
    assert "gpu-magic" in capsys.readouterr().err


@pytest.mark.parametrize("fails", [False, True], ids=["compiles", "compile-fails"])
def test_compile_part_times_eager_and_compiled_and_survives_a_failed_compile(tmp_path, monkeypatch, fails):
    """torch.compile itself is slow on 2 CPU cores: stood in for by the identity (or by a failure, which is
    reported in the row while the check stays ok: the part measures speed only). It runs only when named."""
    import torch

    def fake_compile(model, **kwargs):
        if fails:
            raise RuntimeError("inductor: no C++ compiler")
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    out = tmp_path / "cuda_check.json"
    assert _script().main(["--device", "cpu", "--tiny", "--parts", "compile", "--out", str(out)]) == 0
    eager, tuned, compiled = json.loads(out.read_text())["parts"]["compile"]["rows"]
    assert [(r["compiled"], r["cudnn_benchmark"]) for r in (eager, tuned, compiled)] == [
        (False, False), (False, True), (True, True)] and eager["batch"] == 2
    assert eager["images_per_s"] > 0 and (("error" in compiled) if fails else compiled["images_per_s"] > 0)


def test_append_adds_parts_to_an_earlier_report(tmp_path):
    """A finished run's quality part joins the report of the parts run before it (device_run.sh does so)."""
    out = tmp_path / "cuda_check.json"
    script = _script()
    assert script.main(["--device", "cpu", "--tiny", "--parts", "quality", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    report["parts"]["train"] = [{"ok": False}]  # an earlier part's failure is kept and still fails the check
    out.write_text(json.dumps(report))
    assert script.main(["--device", "cpu", "--tiny", "--parts", "quality", "--append", "--out", str(out)]) == 1
    assert set(json.loads(out.read_text())["parts"]) == {"quality", "train"}


def test_device_run_script_parses_and_plans_its_steps_within_one_device_call(tmp_path):
    """benchmarks/device_run.sh (run by hand on a lent GPU): valid bash; its dry run lists the four steps, each
    under a timeout, the first three's caps summing to under the 600 s of one device call."""
    import re
    import subprocess

    script = ROOT / "benchmarks" / "device_run.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run(["bash", str(script)], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path), "DEVICE_RUN_DRY": "1",
                                 "PYTHON": sys.executable, "TMPDIR": str(tmp_path)})
    steps = re.findall(r"== (\w+) \(timeout (\d+)s", result.stdout)
    assert [name for name, _ in steps] == ["cuda_check", "default_dag", "quality", "compile"]
    assert sum(int(limit) for _, limit in steps[:3]) <= 580
    assert "--resources gpu_mem_mb=" in result.stdout and "MEDSR_DEVICE=cuda" in result.stdout
    assert (tmp_path / "steps.tsv").read_text().count("\t0\t") == 4


def test_the_readme_tables_of_a_cuda_check_say_what_ran_and_what_was_skipped():
    from medsr.report.benchmark_tables import TABLES

    train = {"amp": "bf16", "steps": 40, "batch_size": 32, "crop": 64, "same_run_twice_max_abs_difference": 0.0,
             "resume_max_abs_difference": 1.5e-4, "seconds_per_step": 0.28, "peak_memory_mb": 2048.0,
             "nondeterminism_warnings": ["an op"], "ok": False}
    report = {"gpu": "GPU X", "torch": "2.11", "cuda": "13.0", "seconds": 200.5, "ok": False,
              "parts": {"train": [train], "sample": {"ok": False, "skipped": "past --max-seconds 170"},
                        "quality": {"ok": True, "candidate": "bf16", "images": 400, "psnr_difference_db": -0.0014,
                                    "ssim_difference": -9e-05, "decision_agreement": 0.995}}}
    table = TABLES["cuda_check"](report)
    assert "resume: 0.00015" in table and "2.0 GiB; non-determinism warnings: 1 | **failed** |" in table
    assert "| sample | not run: past --max-seconds 170 | **not ok** |" in table
    assert "same HR-classifier decision on 0.995 | ok |" in table and "check **not passed**" in table
    rows = [{"sampler": "resshift 4", "batch": 64, "precision": "bf16", "compiled": c, "images_per_s": r,
             "tflops": r / 2, "share_of_matmul_rate": r / 1600, "warm_up_s": 1.0, "cudnn_benchmark": c}
            for c, r in ((False, 106.4), (True, 139.4))]
    compiled = TABLES["cuda_check_compile"]({"gpu": "GPU X", "torch": "2.11", "parts": {"compile": {
        "rows": rows, "gflop_per_call_batch1": 129.2, "matmul": {"tflops": 788.2}}}})
    assert "| resshift 4 | 64 | bf16 | torch.compile, cudnn.benchmark | 139 | 70 | 8.7% | 1.0 |" in compiled
    assert "788 TFLOP/s" in compiled
