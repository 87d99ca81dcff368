"""`medsr evaluate` end to end on a synthetic predictions CSV and tiny image sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medsr.config import CLASSES, EvaluateParams
from medsr.errors import MedsrError
from medsr.evaluation import evaluate
from medsr.io import Record, read_csv, write_csv, write_image, write_json, write_manifest

SIZE = 16
N_PER_CLASS = 12
SETS = ("hr", "bicubic", "regression", "sr_null_seed0", "sr_null_seed1", "sr_oracle_seed0")


def _params(**overrides) -> EvaluateParams:
    values = dict(seeds=(0, 1), bootstrap=200, bootstrap_seed=0, confidence=0.95, exact_below=25,
                  figure_images=4, lpips_weights="")
    values.update(overrides)
    return EvaluateParams(**values)


def _write_set(root: Path, ids: list[str], labels: list[int], images: np.ndarray, metadata: dict | None = None) -> None:
    records = []
    for image_id, label, image in zip(ids, labels, images):
        rel = f"test/{CLASSES[label]}/{image_id}.png"
        write_image(root / rel, image)
        records.append(Record(image_id, "test", CLASSES[label], rel))
    write_manifest(root, records)
    if metadata is not None:
        write_json(root / "metadata.json", metadata)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    ids = [f"test_{i:03d}" for i in range(2 * N_PER_CLASS)]
    labels = [0] * N_PER_CLASS + [1] * N_PER_CLASS
    hr = rng.uniform(0.2, 0.8, (len(ids), SIZE, SIZE))
    sets = {}
    for k, name in enumerate(SETS):
        noise = 0.0 if name == "hr" else 0.02 * (k + 1)
        images = np.clip(hr + rng.normal(0, noise, hr.shape), 0, 1) if noise else hr
        metadata = {"guidance": "oracle", "leaks_label": True} if "oracle" in name else None
        _write_set(root / name, ids, labels, images, metadata)
        sets[name] = root / name
    _write_set(root / "lr", ids, labels, hr[:, ::2, ::2])
    # predictions: HR misses 3 unhealthy, bicubic misses 6, SR misses 2 (seed 0) / 3 (seed 1), oracle none
    misses = {"hr": 3, "bicubic": 6, "regression": 5, "sr_null_seed0": 2, "sr_null_seed1": 3, "sr_oracle_seed0": 0}
    rows = []
    for name in SETS:
        for i, (image_id, label) in enumerate(zip(ids, labels)):
            missed = label == 1 and (i - N_PER_CLASS) < misses[name]
            false_alarm = label == 0 and i == 0 and name == "bicubic"
            pred = 0 if missed else 1 if false_alarm else label
            prob = float(np.clip(0.5 + (0.3 if pred else -0.3) + rng.normal(0, 0.1), 0, 1))
            rows.append({"set": name, "id": image_id, "label": CLASSES[label], "label_index": label,
                         "pred_index": pred, "prob_unhealthy": prob})
    write_csv(root / "predictions.csv", rows, evaluate.PREDICTION_COLUMNS)
    write_csv(root / "classifier_hr.csv", [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "val_loss": 1.5 / e,
                                            "val_acc": 0.5} for e in range(1, 5)],
              ("epoch", "train_loss", "train_acc", "val_loss", "val_acc"))
    write_csv(root / "sr_loss.csv", [{"step": s, "loss": 1 / s} for s in range(1, 20)], ("step", "loss"))
    write_csv(root / "other.csv", [{"x": 1}], ("x",))
    out = {"metrics": root / "out" / "metrics.json", "figures": root / "out" / "figures", "plots": root / "out" / "plots"}
    evaluate.run(_params(), predictions=root / "predictions.csv", sets=sets, lr=root / "lr",
                 logs=[root / "classifier_hr.csv", root / "sr_loss.csv", root / "other.csv"], **out)
    return {"root": root, "sets": sets, "misses": misses, "n": len(ids), **out}


def test_metrics_json_has_every_field(experiment):
    metrics = json.loads(experiment["metrics"].read_text())
    assert {"summary", "positive_class", "n_test", "n_unhealthy", "settings", "sets", "comparisons", "seed_spread",
            "leaks_label", "training_logs", "figures"} <= set(metrics)
    assert metrics["positive_class"] == "unhealthy" and metrics["n_test"] == experiment["n"]
    for name in SETS:
        entry = metrics["sets"][name]
        assert set(entry["confusion"]) == {"tn", "fp", "fn", "tp"}
        for rate in ("accuracy", "precision", "recall", "specificity", "fnr", "f1", "auroc"):
            assert set(entry[rate]) == {"value", "ci_low", "ci_high"}
        assert entry["fnr"]["value"] == pytest.approx(experiment["misses"][name] / N_PER_CLASS)
        if name != "hr":
            assert set(entry["quality"]) == {"psnr", "ssim", "lpips"}
            assert "skipped" in entry["quality"]["lpips"]
    assert "quality" not in metrics["sets"]["hr"]


def test_comparisons_and_order(experiment):
    metrics = json.loads(experiment["metrics"].read_text())
    keys = list(metrics["comparisons"])
    assert keys[0] == "sr_null_seed0_vs_bicubic"
    assert {"sr_null_seed0_vs_hr", "sr_null_seed0_vs_regression", "regression_vs_bicubic", "bicubic_vs_hr"} <= set(keys)
    comp = metrics["comparisons"]["sr_null_seed0_vs_bicubic"]
    assert comp["table"] == {"a": 17, "b": 5, "c": 0, "d": 2}  # SR right on 4 of bicubic's misses + its false alarm
    assert comp["mcnemar"]["primary"] == "exact" and "pvalue_holm" in comp["mcnemar"]
    assert comp["unhealthy_only"]["table"] == {"a": 6, "b": 4, "c": 0, "d": 2}
    assert comp["fnr_difference"]["value"] == pytest.approx((2 - 6) / N_PER_CLASS)
    low, high = comp["fnr_difference"]["ci_low"], comp["fnr_difference"]["ci_high"]
    assert low <= comp["fnr_difference"]["value"] <= high


def test_seed_spread_and_oracle_flag(experiment):
    metrics = json.loads(experiment["metrics"].read_text())
    spread = metrics["seed_spread"]["null"]
    assert spread["seeds"] == [0, 1] and spread["seeds_missing"] == []
    assert spread["fnr"]["mean"] == pytest.approx(2.5 / N_PER_CLASS)
    assert spread["fnr"]["min"] == pytest.approx(2 / N_PER_CLASS) and spread["fnr"]["max"] == pytest.approx(0.25)
    assert set(spread["mcnemar_pvalue_vs_bicubic"]) == {"n", "mean", "std", "min", "max"}
    assert metrics["leaks_label"] == ["sr_oracle_seed0"]
    assert metrics["sets"]["sr_oracle_seed0"]["leaks_label"] is True
    assert "oracle" in metrics["summary"] and "leaks" in metrics["summary"]
    rst = (experiment["figures"] / "summary.rst").read_text()
    assert "leaks the true label" in rst and "sr_null_seed0 vs bicubic" in rst


def test_every_figure_and_plot_is_written(experiment):
    for name in evaluate.FIGURES + ("summary.rst",):
        path = experiment["figures"] / name
        assert path.is_file() and path.stat().st_size > 0, name
    for name in SETS:
        rows = read_csv(experiment["plots"] / "confusion" / f"{name}.csv")
        assert len(rows) == experiment["n"] and set(rows[0]) == {"actual", "predicted"}
    assert [r["set"] for r in read_csv(experiment["plots"] / "fnr.csv")] == list(SETS)
    logs = json.loads(experiment["metrics"].read_text())["training_logs"]
    assert sorted(v.split(":")[0] for v in logs.values()) == ["plotted", "plotted", "skipped"]


def test_missing_set_folder_is_an_error(experiment, tmp_path):
    sets = dict(experiment["sets"])
    del sets["bicubic"]
    with pytest.raises(MedsrError, match="bicubic"):
        evaluate.run(_params(), predictions=experiment["root"] / "predictions.csv", sets=sets,
                     lr=experiment["root"] / "lr", logs=[], metrics=tmp_path / "m.json", figures=tmp_path / "f",
                     plots=tmp_path / "p")
    assert not (tmp_path / "m.json").exists()


def test_lpips_weights_path_must_exist(experiment, tmp_path):
    with pytest.raises(MedsrError, match="lpips_weights"):
        evaluate.run(_params(lpips_weights=str(tmp_path / "none.pth")), predictions=experiment["root"] / "predictions.csv",
                     sets=experiment["sets"], lr=experiment["root"] / "lr", logs=[], metrics=tmp_path / "m.json",
                     figures=tmp_path / "f", plots=tmp_path / "p")


def test_generated_summary_is_valid_restructuredtext(experiment):
    docutils_core = pytest.importorskip("docutils.core")
    import io

    warnings = io.StringIO()
    docutils_core.publish_string((experiment["figures"] / "summary.rst").read_text(), writer="html",
                                 settings_overrides={"warning_stream": warnings, "report_level": 2})
    assert warnings.getvalue() == ""


def test_lpips_from_local_weights_without_download(tmp_path):
    """A full LPIPS state dict on disk is loaded without any download (random weights here: code path only)."""
    import torch
    from safetensors.torch import save_file
    from torchmetrics.functional.image.lpips import _LPIPS

    from medsr.evaluation import quality

    torch.manual_seed(0)
    weights = tmp_path / "lpips_alex.safetensors"
    state = _LPIPS(pretrained=False, net="alex", pnet_rand=True).state_dict()
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("lins.")}, str(weights))
    net = quality.load_lpips(weights)
    images = np.random.default_rng(0).uniform(size=(3, 32, 32)).astype(np.float32)
    scores = quality.lpips_per_image(net, images, images[::-1].copy())
    assert scores.shape == (3,) and scores[1] == pytest.approx(0.0, abs=1e-6) and scores[0] > 0
    lins_only = tmp_path / "lins.safetensors"
    save_file({k: v.contiguous() for k, v in state.items() if k.startswith("lin0")}, str(lins_only))
    with pytest.raises(MedsrError, match="backbone"):
        quality.load_lpips(lins_only)
