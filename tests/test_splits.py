"""The split rule: training reads `train`, every selection reads `val`, nothing but inference and `evaluate` reads
`test`. Every image file medsr opens goes through `medsr.core.io._read_bytes`; a spy records them while each training
stage, the sampling benchmark's loader and the difficulty sweep's training and scoring run on a tiny dataset."""

from __future__ import annotations

import argparse
import json
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from medsr.core import io
from medsr.stages import train_classifier
from medsr.core.config import load_params
from medsr.stages import download
from medsr.stages.degrade import run as degrade
from medsr.stages import train_regression, train_sr

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params([ROOT / "params.yaml", ROOT / "configs/smoke.yaml"])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("splits")
    download.run(PARAMS.data, out=root / "hr")
    degrade(PARAMS.degrade, hr=root / "hr", lr=root / "lr", bicubic=root / "bicubic")
    return root


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    paths: list[str] = []
    original = io._read_bytes

    def spy(path):
        paths.append(str(path))
        return original(path)

    monkeypatch.setattr(io, "_read_bytes", spy)
    return paths


def splits_of(paths: list[str], root: Path) -> set[str]:
    return {Path(p).relative_to(root).parts[1] for p in paths}  # <set>/<split>/<label>/<id>.png


def test_download_writes_three_disjoint_splits(data):
    records = io.read_manifest(data / "hr")
    by_split = {s: {r.id for r in records if r.split == s} for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                or by_split["val"] & by_split["test"])


def test_train_sr_and_regression_read_only_train(data, tmp_path, opened):
    train_sr.run(PARAMS.sr_model, PARAMS.diffusion, dataclasses.replace(PARAMS.train_sr, steps=1),
                 hr=data / "hr", lr=data / "lr", model=tmp_path / "sr.safetensors", log=tmp_path / "sr.csv",
                 checkpoints=tmp_path / "ckpt", device=None)
    train_regression.run(PARAMS.sr_model, dataclasses.replace(PARAMS.train_regression, steps=1), hr=data / "hr",
                         lr=data / "lr", model=tmp_path / "reg.safetensors", log=tmp_path / "reg.csv", device=None)
    assert opened and splits_of(opened, data) == {"train"}


def test_classifier_reads_train_and_selects_on_val(data, tmp_path, opened):
    train_classifier.run(dataclasses.replace(PARAMS.train_classifier, epochs=1), images=data / "bicubic",
                         model=tmp_path / "c.safetensors", log=tmp_path / "c.csv", architecture="resnet18",
                         domain="bicubic", seed=0)
    assert splits_of(opened, data) == {"train", "val"}


def test_classifier_recipe_benchmark_fine_tunes_on_train_and_scores_on_val(data, tmp_path, opened):
    module = benchmark("classifier_recipe")
    params = dataclasses.replace(PARAMS.train_classifier, epochs=1)
    init = module.init_classifier(params, data / "hr", tmp_path, "resnet18", 0)
    run = module.one_seed(params, data / "bicubic", "resnet18", 0, 1, init=init)
    assert init.exists() and [row["epoch"] for row in run["epochs"]] == [1]
    assert opened and splits_of(opened, data) == {"train", "val"}


def test_sampling_benchmark_reads_val_images(data, opened):
    spec = importlib.util.spec_from_file_location("sampling_benchmark", ROOT / "benchmarks/sampling.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sampling_benchmark"] = module
    spec.loader.exec_module(module)
    records, _, hr = module.val_images(data / "hr", data / "lr", 4)
    assert {r.split for r in records} == {"val"} and len(hr) == 4
    assert opened and splits_of(opened, data) == {"val"}


def benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / f"benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"{name}_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def test_difficulty_benchmark_trains_on_train_and_scores_on_val(tmp_path, opened):
    module = benchmark("difficulty")
    args = argparse.Namespace(train_per_class=6, epochs=1, sr_model=None)
    module.build_level(PARAMS, 2.5, args, tmp_path)
    assert io.read_manifest(tmp_path / "hr", split="test")  # the level has a test split: it must stay unread
    opened.clear()
    row = module.score_level(PARAMS, args, tmp_path)
    assert opened and splits_of(opened, tmp_path) == {"train", "val"}
    assert {r.source for r in io.read_manifest(tmp_path / "hr")} == {"mni"}
    for domain in ("hr", "bicubic"):
        assert 0.0 <= row[domain]["fnr"] <= 1.0 and 0.0 <= row[domain]["auroc"] <= 1.0
    assert row["val_images"]["unhealthy"] == sum(
        r.label == "unhealthy" for r in io.read_manifest(tmp_path / "hr", "val")
    )


def _fake_run(root: Path, seeds: tuple[int, ...], test_score) -> Path:
    """A finished default run as far as benchmarks/verdict_rule.py reads it: params.yaml and predictions.csv (val
    scores drawn per arm and seed; test scores from `test_score(i)`)."""
    import numpy as np

    from medsr.core.parameters import CLASSES
    from medsr.core.io import write_csv
    from medsr.classifier.predictions import COLUMNS

    params = load_params([ROOT / "params.yaml"])
    (root / "results").mkdir(parents=True)
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (root / "seeds.yaml").write_text(f"evaluate:\n  train_seeds: {list(seeds)}\n")
    sets = ["hr", "bicubic", "regression"] + [f"sr_{g}_seed{s}" for g in params.generate.guidance
                                             for s in params.evaluate.sampling_seeds]
    rng = np.random.default_rng(sum(seeds))
    rows = []
    for classifier in ("hr", "bicubic"):
        for seed in seeds:
            for k, name in enumerate(sets):
                for split, n in (("val", 24), ("test", 30)):
                    for i in range(2 * n):
                        label = int(i >= n)
                        p = rng.uniform(0.3 * label + 0.1 * k * label, 1.0) if split == "val" else test_score(i)
                        rows.append({"architecture": "resnet18", "classifier": classifier, "train_seed": seed,
                                     "set": name, "split": split, "id": f"{split}_{i:03d}", "label": CLASSES[label],
                                     "label_index": label, "prob_unhealthy": f"{p:.6f}"})
    write_csv(root / "results/predictions.csv", rows, COLUMNS)
    return root


def test_verdict_rule_benchmark_reads_only_val_predictions(tmp_path):
    module = benchmark("verdict_rule")
    outputs = []
    default_seeds = tuple(load_params([ROOT / "params.yaml"]).evaluate.train_seeds)  # run a: params.yaml's seeds
    for j, test_score in enumerate((lambda i: 0.9, lambda i: (i % 7) / 7)):  # two sets of test scores
        a = _fake_run(tmp_path / f"a{j}", default_seeds, test_score)
        b = _fake_run(tmp_path / f"b{j}", (5, 6, 7), test_score)
        outputs.append(module.compare_rules(a, b, [Path("seeds.yaml")]))
    for out in outputs:
        out.pop("runs")
    assert outputs[0] == outputs[1]  # the test rows changed, nothing else did
    assert outputs[0]["rules"]["pooled"]["fair_verdicts"] == 5 and outputs[0]["chosen"] in module.RULES


def test_aa_calibration_benchmark_trains_on_train_and_scores_val_only(data, tmp_path, opened):
    """The A/A benchmark end to end at smoke scale (2 epochs, 4 seeds, 20 splits): every file it opens is a train
    or val image (the test split stays unread), and its JSON has a row per split and every candidate's rates."""
    module = benchmark("aa_calibration")
    run = tmp_path / "run"
    run.mkdir()
    (run / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (run / "data").symlink_to(data)
    out = module.calibrate(run, [ROOT / "configs/smoke.yaml"], seeds=4, splits=20, workers=1,
                           models=tmp_path / "models", resamples=200)
    assert opened and splits_of(opened, run / "data") == {"train", "val"}
    assert sorted(p.name for p in (tmp_path / "models").glob("*.safetensors")) == [
        f"classifier_resnet18_hr_seed{s}.safetensors" for s in range(4)]
    assert out["params"]["seeds"] == 4 and out["params"]["train_classifier"]["epochs"] == 2
    assert out["splits"] == 20 and len(out["rows"]) == 20 and out["commit"] and out["machine"]["torch"]
    assert out["val_images"]["healthy"] > 0 and out["val_images"]["unhealthy"] > 0
    for row in out["rows"]:
        assert sorted(sum(row["pseudo_arms"], [])) == [0, 1, 2, 3]
        for arm in (*module.AA_ARMS, module.POWER_ARM):
            assert set(row[arm]["rejected"]) == set(module.CANDIDATES)
            assert all(0.0 <= p <= 1.0 for p in row[arm]["p"].values())
    low, high = out["null_interval"]
    assert 0.0 <= low <= 0.05 <= high
    for name, c in out["candidates"].items():
        assert c["calibrated"] == all(c[a]["interval"][0] <= 0.05 for a in module.AA_ARMS)
        assert 0.0 <= c["power"] <= 1.0 and c[module.POWER_ARM]["interval"][0] <= c["power"]
    assert out["chosen"] is None or out["candidates"][out["chosen"]]["calibrated"]
    assert "CRITERION" not in out["criterion"] and "highest power" in out["criterion"]
    opened.clear()  # a rerun reuses the four classifiers: it trains nothing (no train image opened)
    again = module.calibrate(run, [ROOT / "configs/smoke.yaml"], seeds=4, splits=20, workers=1,
                             models=tmp_path / "models", resamples=200)
    assert splits_of(opened, run / "data") == {"val"} and again["rows"] == out["rows"]
    table = module.aa_calibration_markdown(json.loads(json.dumps(out)))
    assert all(f"| {name} |" in table for name in module.CANDIDATES) and "Chosen: **" in table
