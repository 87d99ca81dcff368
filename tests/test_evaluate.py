"""`medsr evaluate` end to end on made-up predictions and tiny image sets: the verdict wording must follow the
numbers (SR wins, SR loses, neither), oracle sets are flagged everywhere, the headline file stays small."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medsr.stages import evaluate
from medsr.stages.train_classifier import HISTORY_FIELDS
from medsr.core.parameters import CLASSES, DeployedParams, EvaluateParams, TrainClassifierParams
from medsr.core.errors import MedsrError
from medsr.evaluation.compute import classifier_analysis
from medsr.evaluation.gate import chance_pvalue
from medsr.evaluation.metrics import bootstrap_weights
from medsr.data.image_sets import ImageSet
from medsr.core.io import Record, read_csv, write_csv, write_image, write_json, write_manifest
from medsr.classifier.predictions import COLUMNS, Scores
from medsr.report import readme
from medsr.report.headline import MAX_NUMBERS, arm_key, count_numbers
from medsr.report.render import FIGURES
from medsr.report.answer import answer_text
from medsr.report.tables import VERDICT_HEADER, interval, verdict_rows

SIZE = 16
N_VAL = 20  # per class
N_HEALTHY, N_UNHEALTHY = 20, 30  # test
SEEDS = (0, 1)
SET_SPECS = [("hr", "hr", {"matched": "hr"}), ("bicubic", "bicubic", {"matched": "bicubic"}),
             ("regression", "regression", {}),
             ("sr_null_seed0", "sr", {"guidance": "null", "seed": 0}),
             ("sr_oracle_seed0", "sr", {"guidance": "oracle", "seed": 0, "leaks_label": True}),
             ("ext_mine", "external", {})]


NO_DEPLOYED = DeployedParams(file="", architecture="", image_size=SIZE, channels=1, mean=(0.0,), std=(1.0,), outputs=2,
                             unhealthy_index=1)


def _params(**overrides) -> EvaluateParams:
    values = dict(train_seeds=SEEDS, sampling_seeds=(0,), bootstrap=200, bootstrap_seed=0, confidence=0.95,
                  exact_below=25, val_specificity=0.95, external={"mine": "x"},
                  figure_images=4, lpips_weights="", rcps_alpha=0.2, rcps_delta=0.1,
                  error_threshold=0.05, crc_alpha=0.1, sr_classifier=(), verdict_rule="pooled",
                  equivalence_margin=0.05,
                  gate_min_hr_val_auroc=0.9, gate_require_converged=True, gate_chance_alpha=0.05,
                  deployed=NO_DEPLOYED)
    values.update(overrides)
    return EvaluateParams(**values)


def _train_params(architectures: tuple[str, ...] = ("resnet18",)) -> TrainClassifierParams:
    return TrainClassifierParams(architectures=architectures, epochs=1, batch_size=2, learning_rate=1e-3,
                                 lr_schedule="cosine", weight_decay=0.0, hflip=True, crop=0, precise_bn=True,
                                 patience=0, min_epochs=0, monitor="val_loss")


def _ids(split: str) -> tuple[list[str], list[int]]:
    n_h, n_u = (N_VAL, N_VAL) if split == "val" else (N_HEALTHY, N_UNHEALTHY)
    return [f"{split}_{i:03d}" for i in range(n_h + n_u)], [0] * n_h + [1] * n_u


def _write_set(root: Path, images: dict[str, np.ndarray], splits: tuple[str, ...]) -> None:
    records = []
    for split in splits:
        ids, labels = _ids(split)
        for image_id, label, image in zip(ids, labels, images[split]):
            rel = f"{split}/{CLASSES[label]}/{image_id}.png"
            write_image(root / rel, image)
            records.append(Record(image_id, split, CLASSES[label], rel))
    write_manifest(root, records)


def _scores(split: str, misses: int, caught: float) -> list[float]:
    """Healthy scores evenly spread in [0.05, 0.30] (so the val threshold at specificity 0.95 is the 19th of 20);
    the first `misses` unhealthy images score 0.02 (missed at any threshold), the others `caught`."""
    ids, labels = _ids(split)
    n_h = labels.count(0)
    healthy = list(np.linspace(0.05, 0.30, n_h))
    return healthy + [0.02 if i < misses else caught for i in range(len(ids) - n_h)]


def write_history(path: Path, best_epoch: int, epochs: int = 4, val_auroc: float = 0.9) -> None:
    """A classifier history CSV as train-classifier writes it; converged when the best epoch is not the last; the
    kept epoch's val AUROC `val_auroc` (the others 0.5)."""
    run = {"epochs_run": epochs, "best_epoch": best_epoch, "stopped_early": False, "converged": best_epoch < epochs}
    write_csv(path, [{"epoch": e, "learning_rate": 1e-3, "train_loss": 1 / e, "train_acc": 0.5, "val_loss": 1.5 / e,
                      "val_acc": 0.5, "val_auroc": val_auroc if e == best_epoch else 0.5, **run}
                     for e in range(1, epochs + 1)], HISTORY_FIELDS)


def write_experiment(root: Path, misses: dict[str, int], caught: dict[str, float] | None = None,
                     other: dict[str, dict[str, int]] | None = None, hr_val_misses: int = 0,
                     unconverged: tuple[str, ...] = (), rule: str = "pooled") -> dict:
    """`misses[arm]`: unhealthy test images the arm misses (both train seeds); val images are all caught but
    `hr_val_misses` unhealthy HR val images through the HR classifier (lowering its val AUROC).

    `other`: architecture -> its own `misses` (a second classifier family, with the same `caught`). Every
    classifier's history is converged but those named in `unconverged` (history file stems)."""
    caught = caught or {}
    families = {"resnet18": misses, **(other or {})}
    rng = np.random.default_rng(0)
    hr = {split: rng.uniform(0.2, 0.8, (len(_ids(split)[0]), SIZE, SIZE)) for split in ("val", "test")}
    sets = []
    for k, (name, kind, extra) in enumerate(SET_SPECS):
        noisy = {s: np.clip(x + rng.normal(0, 0.02 * k, x.shape), 0, 1) if k else x for s, x in hr.items()}
        splits = ("test",) if kind == "external" else ("val", "test")
        _write_set(root / name, noisy, splits)
        sets.append(ImageSet(name, kind, root / name, **extra))
    _write_set(root / "lr", {s: x[:, ::2, ::2] for s, x in hr.items()}, ("val", "test"))
    rows = []
    for architecture, family_misses in families.items():
        for classifier in ("hr", "bicubic"):
            for seed in SEEDS:
                for image_set in sets:
                    arm = f"{image_set.name}@{classifier}"
                    for split in ("val", "test"):
                        if split == "val" and image_set.kind == "external":
                            continue
                        ids, labels = _ids(split)
                        val_misses = hr_val_misses if arm == f"{SET_SPECS[0][0]}@hr" else 0
                        values = _scores(split, family_misses.get(arm, 0) if split == "test" else val_misses,
                                         caught.get(arm, 0.9))
                        rows += [{"architecture": architecture, "classifier": classifier, "train_seed": seed,
                                  "set": image_set.name, "split": split, "id": i, "label": CLASSES[y],
                                  "label_index": y, "prob_unhealthy": f"{p:.6f}"}
                                 for i, y, p in zip(ids, labels, values)]
    write_csv(root / "predictions.csv", rows, COLUMNS)
    write_csv(root / "classifier_hr_seed0.csv", [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.5 / e}
                                                 for e in range(1, 5)], ("epoch", "train_loss", "val_loss"))
    write_csv(root / "other.csv", [{"x": 1}], ("x",))
    histories = [root / "train" / f"classifier_{a}_{d}_seed{seed}.csv" for a in families for d in ("hr", "bicubic")
                 for seed in SEEDS]
    for path in histories:
        write_history(path, best_epoch=4 if path.stem in unconverged else 3)
    out = {"metrics": root / "out" / "metrics.json", "results": root / "out" / "evaluation.json",
           "figures": root / "out" / "figures", "plots": root / "out" / "plots"}
    evaluate.run(_params(verdict_rule=rule), _train_params(tuple(families)), predictions=root / "predictions.csv",
                 sets=sets, lr=root / "lr", logs=[root / "classifier_hr_seed0.csv", root / "other.csv", *histories],
                 **out)
    return {"root": root, "sets": sets, "misses": misses, **out,
            "results_data": json.loads(out["results"].read_text()),
            "metrics_data": json.loads(out["metrics"].read_text()),
            "summary_rst": (out["figures"] / "summary.rst").read_text()}


BASE = {"hr@hr": 1, "bicubic@hr": 12, "regression@hr": 8, "sr_oracle_seed0@hr": 0, "ext_mine@hr": 11}
# the HR classifier on bicubic: caught unhealthy images score 0.4 (above the val threshold ~0.29, below 0.5)
SHIFT = {"bicubic@hr": 0.4}


@pytest.fixture(scope="module")
def sr_wins(tmp_path_factory) -> dict:
    return write_experiment(tmp_path_factory.mktemp("wins"), {**BASE, "sr_null_seed0@hr": 2, "bicubic@bicubic": 14},
                            SHIFT)


@pytest.fixture(scope="module")
def sr_loses(tmp_path_factory) -> dict:
    return write_experiment(tmp_path_factory.mktemp("loses"), {**BASE, "sr_null_seed0@hr": 14, "bicubic@bicubic": 2})


@pytest.fixture(scope="module")
def neither(tmp_path_factory) -> dict:
    return write_experiment(tmp_path_factory.mktemp("neither"), {**BASE, "sr_null_seed0@hr": 5, "bicubic@bicubic": 6})


@pytest.fixture(scope="module")
def family_specific(tmp_path_factory) -> dict:
    """resnet18 as in sr_wins; a second family for which SR misses as many unhealthy images as bicubic (Q1)."""
    other = {**BASE, "sr_null_seed0@hr": 12, "bicubic@bicubic": 14}
    return write_experiment(tmp_path_factory.mktemp("family"), {**BASE, "sr_null_seed0@hr": 2, "bicubic@bicubic": 14},
                            SHIFT, other={"mobilenet_v3_small": other})


def _verdict(experiment: dict, vid: str) -> dict:
    return next(v for v in experiment["results_data"]["verdicts"] if v["id"] == vid)


Q2_SR = "Q2:sr_null@hr_vs_bicubic@bicubic"
Q1_SR = "Q1:sr_null@hr_vs_bicubic@hr"


def test_sr_wins_numbers_and_wording(sr_wins):
    v = _verdict(sr_wins, Q2_SR)
    assert v["verdict"] == "first_better" and (v["holds"], v["replicates"]) == (2, 2)
    assert v["fnr_first_val"]["value"] == pytest.approx(2 / N_UNHEALTHY)
    assert v["fnr_second_val"]["value"] == pytest.approx(14 / N_UNHEALTHY)
    assert v["fnr_difference_val"]["ci_high"] < 0
    assert sr_wins["metrics_data"]["p"]["q2_sr_null"] < 0.05
    assert sr_wins["metrics_data"]["fnr"]["bicubic_m"] == pytest.approx(14 / N_UNHEALTHY)
    q2 = sr_wins["summary_rst"].split("**Q2.")[1].split("**Q")[0] if "**Q2." in sr_wins["summary_rst"] else ""
    assert "Yes: SR (null guidance) + HR-trained classifier misses fewer unhealthy images than bicubic + " \
           "HR classifier fine-tuned on bicubic" in q2
    assert "holds in 2/2" in q2


def test_sr_loses_to_the_matched_baseline(sr_loses):
    v = _verdict(sr_loses, Q2_SR)
    assert v["verdict"] == "second_better" and v["holds"] == 2
    assert v["fnr_first_val"]["value"] > v["fnr_second_val"]["value"]
    assert v["fnr_difference_val"]["ci_low"] > 0
    q2 = sr_loses["summary_rst"].split("**Q2.")[1].split("**Q")[0]
    assert "No: SR (null guidance) + HR-trained classifier misses more unhealthy images than bicubic + " \
           "HR classifier fine-tuned on bicubic" in q2
    assert "Yes:" not in q2
    assert "misses more unhealthy" in sr_loses["results_data"]["summary"]


def test_neither_significant(neither):
    v = _verdict(neither, Q2_SR)
    assert v["verdict"] == "inconclusive" and v["holds"] == 0  # the pooled rule: no standard error, no equivalence
    assert v["equivalence"]["pvalue"] is None and v["mde"]["value"] is None and v["mde"]["reason"]
    assert v["pvalue_holm"] >= 0.05 and v["pvalue_holm_median"] >= 0.05
    assert neither["metrics_data"]["p"]["q2_sr_null"] == pytest.approx(v["pvalue_holm"])
    q2 = neither["summary_rst"].split("**Q2.")[1].split("**Q")[0]
    assert "Not shown: no significant difference in missed unhealthy images between SR (null guidance)" in q2
    assert "Yes:" not in q2 and "No:" not in q2


def test_val_operating_point_removes_the_threshold_shift(sr_wins):
    """The HR classifier on bicubic: its caught unhealthy images score 0.4, so at 0.5 it misses them all."""
    arm = sr_wins["results_data"]["arm_groups"]["bicubic@hr"]["pooled"]
    assert arm["fnr_0.5"]["value"] == pytest.approx(1.0)
    assert arm["fnr_val"]["value"] == pytest.approx(12 / N_UNHEALTHY)
    point = sr_wins["results_data"]["arms"]["bicubic@hr"]["per_seed"]["0"]["operating_points"]
    assert point["val"]["source"] == "val" and point["val"]["val_specificity"] >= 0.95
    assert point["val"]["threshold"] == pytest.approx(np.linspace(0.05, 0.30, N_VAL)[18], abs=1e-6)
    assert point["0.5"]["threshold"] == 0.5
    # Q1 at the val point: SR (2 misses) vs bicubic through the HR classifier (12 misses)
    assert _verdict(sr_wins, Q1_SR)["verdict"] == "first_better"


def test_external_set_uses_the_hr_val_threshold_and_joins_q1(sr_wins):
    data = sr_wins["results_data"]
    point = data["arms"]["ext_mine@hr"]["per_seed"]["1"]["operating_points"]["val"]
    assert point["source"].startswith("val of hr (fallback: ext_mine has no val images)")
    assert point["threshold"] == data["arms"]["hr@hr"]["per_seed"]["1"]["operating_points"]["val"]["threshold"]
    assert _verdict(sr_wins, "Q1:ext_mine@hr_vs_bicubic@hr")["fnr_first_val"]["value"] == pytest.approx(11 / 30)
    assert not any(v["first"].startswith("ext_mine") for v in data["verdicts"] if v["question"] != "Q1")


def test_oracle_is_flagged_everywhere_and_in_its_own_family(sr_wins):
    data = sr_wins["results_data"]
    assert data["leaks_label"] == ["sr_oracle_seed0"]
    oracle = [v for v in data["verdicts"] if "sr_oracle" in v["first"]]
    assert oracle and all(v["leaks_label"] and v["family"].endswith("leaks_label") for v in oracle)
    fair = [c for c in data["comparisons"] if not c["leaks_label"]]
    assert all(c["family"].endswith("fair") for c in fair)
    assert not any("oracle" in c["first"] for c in fair)
    assert "ORACLE_sr_oracle" in sr_wins["metrics_data"]["fnr"]
    assert not any("oracle" in k and not k.startswith("ORACLE_") for block in sr_wins["metrics_data"].values()
                   if isinstance(block, dict) for k in block)
    rst = sr_wins["summary_rst"]
    assert "oracle guidance" in rst and "ORACLE, leaks the label" in rst
    assert "[ORACLE" in data["summary"]
    assert [r for r in read_csv(sr_wins["plots"] / "fnr.csv") if r["arm"] == "sr_oracle@hr"][0]["leaks_label"] == "True"


def test_holm_families_per_question_and_seed(sr_wins):
    """Q1 fair family (per seed): regression, sr_null, ext_mine vs bicubic -> Holm over three p-values."""
    from medsr.evaluation.statistics import holm

    comps = [c for c in sr_wins["results_data"]["comparisons"] if c["family"] == "Q1/fair" and c["train_seed"] == 0]
    assert sorted(c["first"] for c in comps) == ["ext_mine@hr", "regression@hr", "sr_null_seed0@hr"]
    raw = [c["val"]["unhealthy_only"]["mcnemar"]["pvalue"] for c in comps]
    adjusted = [c["val"]["unhealthy_only"]["mcnemar"]["pvalue_holm"] for c in comps]
    assert adjusted == pytest.approx(holm(raw))


def test_headline_metrics_are_few_and_match_the_results(sr_wins):
    metrics = sr_wins["metrics_data"]
    assert count_numbers(metrics) <= MAX_NUMBERS
    assert set(metrics) >= {"fnr", "p", "auroc", "acc", "psnr", "ssim"}
    groups = {arm_key(name): group for name, group in sr_wins["results_data"]["arm_groups"].items()}
    assert {"sr_null", "bicubic", "bicubic_m", "hr"} <= set(metrics["fnr"])
    for key, value in metrics["fnr"].items():
        assert value == groups[key.removeprefix("ORACLE_")]["pooled"]["fnr_val"]["value"]
    assert "q2_sr_null" in metrics["p"] and "q1_sr_null" in metrics["p"]
    assert "hr" not in metrics["psnr"] and "sr_null" in metrics["psnr"]


def test_results_json_records_provenance_and_per_seed_numbers(sr_wins):
    data = sr_wins["results_data"]
    prov = data["provenance"]
    assert set(prov) == {"git", "machine", "date_utc"} and prov["date_utc"].endswith("Z")
    assert {"platform", "cpu", "logical_cores", "torch", "torch_threads"} <= set(prov["machine"])
    assert set(data["arms"]["sr_null_seed0@hr"]["per_seed"]) == {"0", "1"}
    assert len(_verdict(sr_wins, Q2_SR)["per_replicate"]) == 2
    assert data["verdicts"][0]["question"] == "Q1"


def test_every_figure_and_plot_is_written(sr_wins):
    for name in FIGURES + ("summary.rst",):
        path = sr_wins["figures"] / name
        assert path.is_file() and path.stat().st_size > 0, name
    for image_set in sr_wins["sets"]:
        rows = read_csv(sr_wins["plots"] / "confusion" / f"{image_set.name}.csv")
        assert len(rows) == N_HEALTHY + N_UNHEALTHY and set(rows[0]) == {"actual", "predicted"}
    assert {r["arm"] for r in read_csv(sr_wins["plots"] / "fnr.csv")} >= {"bicubic@bicubic", "sr_null@hr"}
    logs = sr_wins["results_data"]["training_logs"]
    assert [v.split(":")[0] for v in logs.values()].count("skipped") == 1 and len(logs) == 2 + 2 * len(SEEDS)


def assert_valid_rst(rst: str) -> None:
    """docutils renders `rst` to HTML without a warning (the report embeds summary.rst)."""
    docutils_core = pytest.importorskip("docutils.core")
    import io

    warnings = io.StringIO()
    docutils_core.publish_string(rst, writer="html", settings_overrides={"warning_stream": warnings,
                                                                           "report_level": 2})
    assert warnings.getvalue() == ""


def test_summary_opens_with_the_answer_then_the_verdict_and_is_valid_restructuredtext(sr_wins):
    rst = sr_wins["summary_rst"]
    assert rst.startswith(answer_text(sr_wins["results_data"]) + "\n\nVerdict\n=======")
    assert rst.index("**Q1.") < rst.index("**Q2.") < rst.index("list-table") < rst.index("Details")
    assert_valid_rst(rst)


def test_readme_block_is_regenerated(sr_wins, tmp_path):
    target = tmp_path / "README.md"
    target.write_text("# medsr\n\nintro\n\n<!-- results:begin -->\nstale numbers 0.69\n<!-- results:end -->\n\nrest\n")
    readme.update_readme(target, sr_wins["results"])
    text = target.read_text()
    assert "stale numbers" not in text and text.startswith("# medsr\n\nintro") and text.endswith("rest\n")
    block = text.split("<!-- results:begin -->")[1].split("<!-- results:end -->")[0]
    assert "Generated by `medsr readme` from results/evaluation.json of commit" in block
    assert (
        "| Q2 | resnet18 | SR (null guidance) + HR-trained classifier vs bicubic + HR classifier fine-tuned on bicubic"
        in block
    )
    assert f"{2 / N_UNHEALTHY:.3f}" in block
    readme.update_readme(target, sr_wins["results"])  # idempotent
    assert target.read_text() == text
    target.write_text("no markers\n")
    with pytest.raises(MedsrError, match="README.md.*markers"):
        readme.update_readme(target, sr_wins["results"])


def test_readme_verdict_block_and_docs_results_block(sr_wins, tmp_path):
    """The README's first screen gets the verdict block; docs/results.md the full block, its figure path relative to
    the page; the figure is copied once, beside the README."""
    (tmp_path / "docs").mkdir()
    target, page = tmp_path / "README.md", tmp_path / "docs" / "results.md"
    target.write_text("# medsr\n\n<!-- verdict:begin -->\nstale\n<!-- verdict:end -->\n\n[more](docs/results.md)\n")
    page.write_text("# results\n\n<!-- results:begin -->\nstale\n<!-- results:end -->\nend\n")
    figures = Path(sr_wins["results"]).parent / "figures"
    figures.mkdir(exist_ok=True)
    (figures / "posterior_maps.png").write_bytes(b"png")
    readme.update_readme(target, sr_wins["results"])
    short = target.read_text().split("<!-- verdict:begin -->\n")[1].split("<!-- verdict:end -->")[0]
    full = page.read_text().split("<!-- results:begin -->\n")[1].split("<!-- results:end -->")[0]
    assert "stale" not in short and "stale" not in full
    assert "| Q2 | resnet18 |" in short and "### Per image set" not in short and "Generated by `medsr readme`" in short
    assert full.startswith("### Verdict\n") and "### Per image set and classifier" in full
    table = "| Question |" + short.split("| Question |")[1].split("\n\n")[0]
    assert table.count("\n") >= 3 and table in full  # the same verdict table in both
    if "trust audit" in full:
        assert "](results/posterior_maps.png)" in full
        assert (tmp_path / "docs" / "results" / "posterior_maps.png").read_bytes() == b"png"
    before = target.read_text(), page.read_text()
    readme.update_readme(target, sr_wins["results"])  # idempotent
    assert (target.read_text(), page.read_text()) == before


def test_readme_benchmark_blocks_come_from_their_json(sr_wins, tmp_path):
    from medsr.report.benchmark_tables import difficulty_row

    bench = tmp_path / "benchmarks"
    row = {"lesion_radius": 2.0, "lesion_radius_lr_px": 1.0, "seconds": 12.0,
           "hr": {"auroc": 0.987, "fnr": 0.0625}, "bicubic": {"auroc": 0.5931, "fnr": 0.875},
           "mcnemar_unhealthy_hr_vs_bicubic": {"a": 6, "b": 39, "c": 0, "d": 3, "pvalue": 1.2e-9}}
    write_json(bench / "difficulty.json", {"split": "val", "rows": [row], "machine": {"platform": "x"},
                                          "settings": {"epochs": 6, "train_per_class": 320, "val_specificity": 0.95}})
    target = tmp_path / "README.md"
    target.write_text("<!-- results:begin -->\n<!-- results:end -->\n\nsweep:\n\n<!-- benchmark:difficulty:begin -->\n"
                      "| stale | 0.5 |\n<!-- benchmark:difficulty:end -->\nrest\n")
    readme.update_readme(target, sr_wins["results"], bench)
    text = target.read_text()
    block = text.split("<!-- benchmark:difficulty:begin -->\n")[1].split("<!-- benchmark:difficulty:end -->")[0]
    assert "stale" not in block and difficulty_row(row) in block and "| 2 | 1 | 0.987 | 0.062 | 0.593 |" in block
    assert f"from {bench / 'difficulty.json'}" in block and text.endswith("rest\n")
    readme.update_readme(target, sr_wins["results"], bench)  # idempotent
    assert target.read_text() == text
    (bench / "difficulty.json").unlink()
    with pytest.raises(MedsrError, match="difficulty.json: missing"):
        readme.update_readme(target, sr_wins["results"], bench)
    assert target.read_text() == text  # nothing written on error
    target.write_text("<!-- results:begin -->\n<!-- results:end -->\n<!-- benchmark:nope:begin -->\n"
                      "<!-- benchmark:nope:end -->\n")
    with pytest.raises(MedsrError, match="'nope' is not one of"):
        readme.update_readme(target, sr_wins["results"], bench)


def test_readme_classifier_recipe_table_shows_every_seed():
    from medsr.report.benchmark_tables import TABLES

    def run(seed, ema_acc, precise_acc):
        return {"seed": seed, "best": {"ema": {"epoch": 2, "val_acc": ema_acc, "val_auroc": 0.5},
                                       "precise": {"epoch": 8, "val_acc": precise_acc, "val_auroc": 0.99}}}
    data = {"runs": [run(0, 0.49, 0.917), run(1, 0.9, 0.95)], "architecture": "resnet18", "images": "data/hr",
            "params": {"epochs": 8, "batch_size": 32, "learning_rate": 1e-3, "lr_schedule": "cosine"},
            "not_learned_below_val_acc": 0.75,
            "summary": {"ema": {"seeds_not_learned": 1}, "precise": {"seeds_not_learned": 0}}, "machine": None}
    table = TABLES["classifier_recipe"](data)
    assert "| 0 | 2 | 0.490 | 0.500 | 8 | 0.917 | 0.990 |" in table and "| 1 | 2 | 0.900 |" in table
    assert "1 with ema, 0 with precise BN" in table and "8 epochs" in table


def test_recipe_choice_takes_the_best_median_val_auroc_or_a_cheaper_recipe_close_to_it(tmp_path):
    import importlib.util

    from medsr.report.benchmark_tables import TABLES
    from medsr.core.io import read_json, write_json

    spec = importlib.util.spec_from_file_location(
        "recipe_choice", Path(__file__).resolve().parents[1] / "benchmarks/recipe_choice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def recipe(epochs, aurocs, init=None):
        return {"params": {"epochs": epochs, "learning_rate": 1e-3}, "images": "data/bicubic", "init_images": init,
                "runs": [{"seed": s, "best": {"precise": {"val_auroc": a, "val_acc": a - 0.1}}}
                         for s, a in enumerate(aurocs)]}
    scratch, tuned8, tuned4 = recipe(8, [0.6, 0.55, 0.58]), recipe(8, [0.85, 0.8, 0.9], "data/hr"), \
        recipe(4, [0.84, 0.845, 0.7], "data/hr")
    assert module.choose({"scratch": scratch, "finetune": tuned8})["chosen"] == "finetune"
    assert module.choose({"scratch": scratch, "finetune": tuned8, "finetune4": tuned4})["chosen"] == "finetune4"
    tuned4["runs"][1]["best"]["precise"]["val_auroc"] = 0.78  # median 0.78: more than 0.02 below 0.85
    result = module.choose({"scratch": scratch, "finetune": tuned8, "finetune4": tuned4})
    assert result["chosen"] == "finetune" and result["recipes"]["finetune"]["median_val_auroc"] == 0.85
    write_json(tmp_path / "r.json", result)  # the README reads it back: seeds become string keys
    table = TABLES["bicubic_recipe"](read_json(tmp_path / "r.json"))
    assert "| 1 | 0.550 / 0.450 | 0.800 / 0.700 | 0.780 / 0.745 |" in table

    def stopped(data, runs):  # (epochs run, converged) per seed
        for run, (epochs, converged) in zip(data["runs"], runs):
            run["best"]["precise"]["stopping"] = {"epochs_run": epochs, "converged": converged}
        return data
    cosine = stopped(recipe(12, [0.99, 0.98, 0.99]), [(12, False), (10, True), (9, True)])
    constant = stopped(recipe(12, [0.97, 0.975, 0.96]), [(7, True), (8, True), (6, True)])
    slow = stopped(recipe(12, [0.99, 0.99, 0.99]), [(12, True), (12, True), (11, True)])
    assert module.choose({"cosine": cosine, "constant": constant})["chosen"] == "cosine"  # without the requirement
    result = module.choose({"cosine": cosine, "constant": constant, "slow": slow}, converged=True)
    assert result["eligible"] == ["constant", "slow"] and result["chosen"] == "constant"  # within 0.02, fewer epochs
    none = module.choose({"cosine": cosine, "unconverged": stopped(recipe(12, [0.9] * 3), [(12, False)] * 3)},
                         converged=True)
    assert none["eligible"] == [] and none["chosen"] == "cosine"  # the most converged seeds
    assert "| median | 0.580 / 0.480 | 0.850 / 0.750 |" in table
    assert "chosen: **fine-tuned from hr, lr 0.001, 8 epochs**" in table
    assert "| fine-tuned from hr, lr 0.001, 4 epochs |" in table and "| from scratch, lr 0.001, 8 epochs |" in table


def test_recipe_choice_replays_early_stopping_rules_on_full_curves_and_takes_the_cheapest_near_the_best(tmp_path):
    """Two domains' full-length val curves (precise BN): the HR one learns at once; the bicubic one sits at chance
    loss for 4 epochs while its AUROC rises. Watching the loss with patience 2 stops bicubic at epoch 3 (kept
    AUROC 0.5); no stop before epoch 6 lets it reach 0.8; watching the AUROC does too, at fewer epochs."""
    import importlib.util

    from medsr.report.benchmark_tables import TABLES
    from medsr.core.io import read_json, write_json

    spec = importlib.util.spec_from_file_location(
        "recipe_choice", Path(__file__).resolve().parents[1] / "benchmarks/recipe_choice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def curves(losses, aurocs):
        epochs = [{"epoch": e + 1, "precise": {"val_loss": lo, "val_auroc": a, "val_acc": a - 0.1}}
                  for e, (lo, a) in enumerate(zip(losses, aurocs))]
        return {"params": {"epochs": len(losses)}, "runs": [{"seed": s, "epochs": epochs} for s in (0, 1)]}
    hr = curves([0.7, 0.3, 0.2, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2],
                [0.6, 0.9, 0.95, 0.99, 0.98, 0.97, 0.97, 0.97, 0.97, 0.97])
    bicubic = curves([0.70, 0.72, 0.73, 0.71, 0.65, 0.60, 0.66, 0.67, 0.68, 0.69],
                     [0.50, 0.55, 0.62, 0.70, 0.75, 0.80, 0.79, 0.78, 0.77, 0.76])
    result = module.replay({"hr": hr, "bicubic": bicubic}, ["val_loss", "val_auroc"], [2], [0, 6])
    loss0, loss6 = result["candidates"]["val_loss, patience 2, min_epochs 0"], \
        result["candidates"]["val_loss, patience 2, min_epochs 6"]
    assert loss0["domains"]["bicubic"]["runs"]["0"] == {"epochs_run": 3, "best_epoch": 1, "stopped_early": True,
                                                         "converged": True, "val_auroc": 0.5, "val_acc": 0.4,
                                                         "val_loss": 0.7}
    assert loss6["domains"]["bicubic"]["runs"]["0"]["best_epoch"] == 6 and \
        loss6["domains"]["bicubic"]["runs"]["0"]["epochs_run"] == 8
    auroc0 = result["candidates"]["val_auroc, patience 2, min_epochs 0"]
    assert auroc0["domains"]["bicubic"]["mean_val_auroc"] == 0.8
    assert auroc0["domains"]["bicubic"]["mean_epochs_run"] == 8
    assert auroc0["domains"]["hr"]["runs"]["1"]["best_epoch"] == 4 and auroc0["domains"]["hr"]["mean_epochs_run"] == 6
    assert loss0["domains"]["hr"]["mean_epochs_run"] == 6  # the loss rule: best epoch 4, stop at 6
    assert result["near"] == ["val_loss, patience 2, min_epochs 6", "val_auroc, patience 2, min_epochs 0",
                              "val_auroc, patience 2, min_epochs 6"]
    assert result["chosen"] == "val_loss, patience 2, min_epochs 6"  # (8 + 6) / 2 epochs: the earliest of the ties
    write_json(tmp_path / "s.json", result)
    table = TABLES["stop_rule"](read_json(tmp_path / "s.json"))
    assert "| val_loss, patience 2, min_epochs 0 | 0.990 / 0.990, 6.0 | 0.500 / 0.500, 3.0 | 4/4 |" in table
    assert "chosen: **val_loss, patience 2, min_epochs 6**" in table
    with pytest.raises(SystemExit, match="bicubic seed 0 has 9 of 10 epochs"):
        bicubic["runs"][0]["epochs"].pop()
        module.replay({"hr": hr, "bicubic": bicubic}, ["val_loss"], [2], [0])


def test_verdicts_are_reported_per_classifier_family(family_specific, sr_wins):
    data = family_specific["results_data"]
    assert data["architectures"] == ["resnet18", "mobilenet_v3_small"]
    first, other = _verdict(family_specific, Q1_SR), next(
        v for v in data["other_architectures"]["mobilenet_v3_small"]["verdicts"] if v["id"] == Q1_SR)
    assert (first["architecture"], first["verdict"]) == ("resnet18", "first_better")
    assert (other["architecture"], other["verdict"]) == ("mobilenet_v3_small", "inconclusive")
    assert other["fnr_first_val"]["value"] == pytest.approx(12 / N_UNHEALTHY)
    # the first family's numbers (headline, verdicts) are those of a run with it alone
    assert family_specific["metrics_data"] == sr_wins["metrics_data"]
    assert [v["verdict"] for v in data["verdicts"]] == [v["verdict"] for v in sr_wins["results_data"]["verdicts"]]


def test_a_gain_in_one_family_only_shows_as_such(family_specific):
    data = family_specific["results_data"]
    agreement = {a["id"]: a for a in data["architecture_agreement"]}
    assert agreement[Q1_SR]["verdicts"] == {"resnet18": "first_better", "mobilenet_v3_small": "inconclusive"}
    assert not agreement[Q1_SR]["agree"] and agreement[Q1_SR]["specific_to"] == {"first_better": ["resnet18"]}
    assert agreement["reference:hr@hr_vs_bicubic@bicubic"]["agree"]  # the same made-up scores in both families
    assert f"{Q1_SR}: first lower FNR only with resnet18 (resnet18 first lower FNR, mobilenet_v3_small " \
           "inconclusive)" in data["summary"]
    assert "[mobilenet_v3_small] Not shown: no significant difference in missed unhealthy images between SR (null " \
        "guidance)" in data["summary"]
    rows = [r for r in verdict_rows(data) if r[0] == "Q1" and r[2].startswith("SR (null guidance)")]
    no_se = "; detectable: n/a (no standard error)"  # the pooled rule's test has none
    assert [(r[1], r[-1]) for r in rows] == [("resnet18", f"first lower FNR{no_se}"),
                                             ("mobilenet_v3_small", f"inconclusive{no_se}")]
    assert "mobilenet_v3_small" in family_specific["summary_rst"]


def test_predictions_of_an_unlisted_family_are_an_error(family_specific, tmp_path):
    with pytest.raises(MedsrError, match=r"architectures \['mobilenet_v3_small', 'resnet18'\] differ"):
        evaluate.run(_params(), _train_params(), predictions=family_specific["root"] / "predictions.csv",
                     sets=family_specific["sets"], lr=family_specific["root"] / "lr", logs=[],
                     metrics=tmp_path / "m.json", results=tmp_path / "r.json", figures=tmp_path / "f",
                     plots=tmp_path / "p")
    assert not (tmp_path / "m.json").exists()


def _run_into(tmp_path: Path, params, predictions: Path, sr_wins) -> None:
    """evaluate.run on sr_wins' image sets, every output under tmp_path."""
    evaluate.run(params, _train_params(), predictions=predictions, sets=sr_wins["sets"], lr=sr_wins["root"] / "lr",
                 logs=[], metrics=tmp_path / "m.json", results=tmp_path / "r.json", figures=tmp_path / "f",
                 plots=tmp_path / "p")


def test_predictions_without_a_required_classifier_are_an_error(sr_wins, tmp_path):
    rows = [r for r in read_csv(sr_wins["root"] / "predictions.csv") if r["classifier"] != "bicubic"]
    write_csv(tmp_path / "p.csv", rows, COLUMNS)
    with pytest.raises(MedsrError, match="p.csv: no rows for resnet18 classifier bicubic"):
        _run_into(tmp_path, _params(), tmp_path / "p.csv", sr_wins)
    assert not (tmp_path / "m.json").exists()


def test_train_seeds_must_match_the_predictions(sr_wins, tmp_path):
    with pytest.raises(MedsrError, match="train seeds"):
        _run_into(tmp_path, _params(train_seeds=(0, 1, 2)), sr_wins["root"] / "predictions.csv", sr_wins)


def test_lpips_weights_path_must_exist(sr_wins, tmp_path):
    with pytest.raises(MedsrError, match="lpips_weights"):
        _run_into(tmp_path, _params(lpips_weights=str(tmp_path / "none.pth")), sr_wins["root"] / "predictions.csv",
                  sr_wins)


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


def test_headline_drops_whole_blocks_when_a_large_run_exceeds_the_cap(sr_wins):
    import copy

    from medsr.report.headline import headline

    results = copy.deepcopy(sr_wins["results_data"])
    template = results["arm_groups"]["sr_null@hr"]
    for k in range(12):  # e.g. many external sets
        results["arm_groups"][f"ext_{k}@hr"] = template
    metrics = headline(results)
    assert count_numbers(metrics) <= MAX_NUMBERS
    assert metrics["omitted"].startswith("acc") and "acc" not in metrics
    assert len(metrics["fnr"]) == len(results["arm_groups"])  # FNR is never dropped


def test_the_trust_audit_reads_the_posterior_rows_of_the_first_family_only(tmp_path):
    from medsr.classifier.predictions import posterior_rows

    rows = [{"architecture": a, "classifier": "hr", "train_seed": 0, "set": "sr_null_seed0~sample0", "split": "test",
             "id": "test_000", "label": "healthy", "label_index": 0, "prob_unhealthy": p}
            for a, p in (("resnet18", "0.25"), ("densenet121", "0.75"))]
    write_csv(tmp_path / "p.csv", rows, COLUMNS)
    assert posterior_rows(tmp_path / "p.csv", "resnet18") == {("hr", 0, "sr_null_seed0~sample0", "test"):
                                                               {"test_000": 0.25}}
    assert posterior_rows(tmp_path / "p.csv", "densenet121")[("hr", 0, "sr_null_seed0~sample0", "test")] == {
        "test_000": 0.75}


def _spread_misses(misses_per_seed: dict[str, list[range]], seeds: tuple[int, ...]) -> dict:
    """Scores of hr, bicubic and sr_null_seed0 through the hr and bicubic classifiers: val as in `_scores`; on test
    the unhealthy images in misses_per_seed[arm][seed index] score 0.02 (missed), the others 0.9."""
    out = {}
    for seed_index, seed in enumerate(seeds):
        for arm in ("hr@hr", "bicubic@hr", "sr_null_seed0@hr", "hr@bicubic", "bicubic@bicubic",
                    "sr_null_seed0@bicubic"):
            name, classifier = arm.split("@")
            for split in ("val", "test"):
                ids, labels = _ids(split)
                values = np.array(_scores(split, 0, 0.9))
                if split == "test":
                    first_unhealthy = labels.index(1)
                    for i in misses_per_seed.get(arm, [range(0)] * len(seeds))[seed_index]:
                        values[first_unhealthy + i] = 0.02
                out[(classifier, seed, name, split)] = Scores(tuple(ids), np.array(labels), values)
    return out


@pytest.mark.parametrize("rule, expected, holds", [("pooled", "first_better", 0), ("majority", "inconclusive", 0)])
def test_the_pooled_rule_tests_every_replicate_at_once(rule, expected, holds):
    """Each seed alone: SR misses none, bicubic + bicubic classifier misses 5 (exact McNemar p = 0.0625), on other
    images in each seed: neither seed alone is significant, the pooled test over 10 informative images is
    (p = 2^-9 before Holm)."""
    sets = [
        ImageSet("hr", "hr", Path("hr"), matched="hr"),
        ImageSet("bicubic", "bicubic", Path("b"), matched="bicubic"),
        ImageSet("sr_null_seed0", "sr", Path("s"), guidance="null", seed=0),
    ]
    scores = _spread_misses({"bicubic@bicubic": [range(0, 5), range(5, 10)],
                             "bicubic@hr": [range(0, 20), range(0, 20)]}, SEEDS)
    params = _params(verdict_rule=rule)
    weights = bootstrap_weights(N_HEALTHY + N_UNHEALTHY, params.bootstrap, params.bootstrap_seed, None)
    analysis = classifier_analysis(params, sets, scores, ("hr", "bicubic"), weights, "resnet18")
    v = next(v for v in analysis["verdicts"] if v["id"] == Q2_SR)
    assert [r["table_unhealthy"]["b"] for r in v["per_replicate"]] == [5, 5]
    assert all(r["pvalue"] == pytest.approx(0.0625) for r in v["per_replicate"])
    assert v["pooled_test"]["informative_images"] == 10 and v["pooled_test"]["statistic"] == -10
    assert v["pvalue"] == pytest.approx(2.0 ** -9)
    assert v["verdict"] == expected and v["rule"] == rule and v["holds"] == holds


def _mcclish_of_flat_tail(tpr: float) -> float:
    """McClish pAUC over FPR [0, 0.1] of a curve at TPR `tpr` across the whole tail (every unhealthy test image of
    `_scores` is missed below or caught above every healthy one)."""
    return 0.5 * (1 + (0.1 * tpr - 0.1 ** 2 / 2) / (0.1 - 0.1 ** 2 / 2))


def test_test_specificity_and_partial_auroc_beside_each_fnr(sr_wins):
    data = sr_wins["results_data"]
    v = _verdict(sr_wins, Q2_SR)
    groups = data["arm_groups"]
    assert v["specificity_first_val"] == groups["sr_null@hr"]["pooled"]["specificity_val"]
    assert v["specificity_second_val"]["value"] == pytest.approx(19 / N_HEALTHY)  # the val point's 1 of 20 healthy
    assert v["specificity_difference_val"]["value"] == pytest.approx(0.0)
    # SR misses 2 of 30 unhealthy images, bicubic through the bicubic classifier 14
    assert v["pauc_first"]["value"] == pytest.approx(_mcclish_of_flat_tail(28 / N_UNHEALTHY))
    assert v["pauc_second"]["value"] == pytest.approx(_mcclish_of_flat_tail(16 / N_UNHEALTHY))
    assert v["pauc_difference"]["value"] == pytest.approx(0.5 * 0.1 * 12 / N_UNHEALTHY / 0.095)
    assert v["pauc_difference"]["ci_low"] > 0
    assert data["arms"]["bicubic@hr"]["per_seed"]["1"]["pauc"]["value"] == pytest.approx(_mcclish_of_flat_tail(0.6))
    for key, group in groups.items():
        assert sr_wins["metrics_data"]["spec"][arm_key(key) if not group["leaks_label"] else
                                               f"ORACLE_{arm_key(key)}"] == group["pooled"]["specificity_val"]["value"]
    row = next(r for r in verdict_rows(data) if r[0] == "Q2" and r[2].startswith("SR (null guidance)"))
    assert row[VERDICT_HEADER.index("Specificity first vs second")] == "0.950 vs 0.950"
    assert row[-2].startswith("+0.211 [")
    assert "FNR 0.067 vs 0.467 (test specificity 0.950 vs 0.950), difference" in sr_wins["summary_rst"]
    assert "pAUC 0.965 vs 0.754, difference +0.211" in sr_wins["summary_rst"]
    block = readme.results_markdown(data)
    assert "| FNR first vs second | Specificity first vs second |" in block
    assert "| FNR (val point) | per seed, min-max | Specificity (val point) | per seed, min-max | FNR at 0.5 |" in block
    assert "| 0.950 [" in block and "| 0.950 |" in block  # both train seeds at 0.950: one value, not a range


def test_pooled_roc_and_operating_points_of_an_arm(sr_wins):
    """bicubic through the HR classifier: the val threshold (19th of 20 healthy val scores) catches every unhealthy
    val image; on test it catches the 18 unhealthy images scoring 0.4 and calls 1 of 20 healthy ones unhealthy."""
    roc = sr_wins["results_data"]["arm_groups"]["bicubic@hr"]["roc"]
    assert roc["points"]["val"]["fpr"] == pytest.approx(0.05) and roc["points"]["val"]["tpr"] == pytest.approx(1.0)
    assert roc["points"]["test"]["fpr"] == pytest.approx(1 / N_HEALTHY)
    assert roc["points"]["test"]["tpr"] == pytest.approx(18 / N_UNHEALTHY)
    assert len(roc["points"]["test"]["per_replicate"]) == len(SEEDS)
    fpr, mean = np.array(roc["fpr"]), np.array(roc["tpr_mean"])
    assert mean[(fpr > 0) & (fpr < 1)] == pytest.approx(0.6) and mean[-1] == pytest.approx(1.0)
    assert roc["tpr_low"] == roc["tpr_high"] == roc["tpr_mean"]  # both seeds have the same made-up scores


def test_roc_figures_show_the_fair_comparisons_of_each_question(sr_wins, tmp_path):
    from medsr.report import figures
    from medsr.report.render import roc_panels

    data = sr_wins["results_data"]
    panels = roc_panels(data, "Q2")
    assert len(panels) == 1  # the oracle's Q2 comparison is no evidence and not drawn
    (title, arms), = panels
    assert "first lower FNR" in title and "pAUC difference +0.211" in title
    assert [roc for _, roc in arms] == [data["arm_groups"]["sr_null@hr"]["roc"],
                                        data["arm_groups"]["bicubic@bicubic"]["roc"]]
    assert len(roc_panels(data, "Q1")) == 3
    figures.roc_curves(tmp_path / "none.png", "Q2", [], 0.1, 0.05)  # a run without SR sets has no Q2
    assert (tmp_path / "none.png").stat().st_size > 0
    assert {"roc_q1.png", "roc_q2.png", "roc_reference.png"} <= set(data["figures"])


@pytest.mark.parametrize("rule, test_name", [("seed_image_t", "seed_image_t"),
                                             ("two_level_bootstrap", "two_level_bootstrap"),
                                             ("crossed_t", "crossed_t")])
def test_a_seed_level_rule_records_its_test_p_and_holm_p_and_what_it_generalizes_over(rule, test_name):
    """Five seeds: SR misses none, bicubic + bicubic classifier misses 5 of 30 (other images per seed), bicubic +
    HR classifier the same 20 of 30 in every seed: the seed-level tests carry the image-level variance."""
    from medsr.evaluation.settings import settings

    seeds = (0, 1, 2, 3, 4)
    sets = [
        ImageSet("hr", "hr", Path("hr"), matched="hr"),
        ImageSet("bicubic", "bicubic", Path("b"), matched="bicubic"),
        ImageSet("sr_null_seed0", "sr", Path("s"), guidance="null", seed=0),
    ]
    scores = _spread_misses({"bicubic@bicubic": [range(5 * i, 5 * i + 5) for i in range(5)],
                             "bicubic@hr": [range(0, 20)] * 5}, seeds)
    params = _params(verdict_rule=rule, train_seeds=seeds)
    weights = bootstrap_weights(N_HEALTHY + N_UNHEALTHY, params.bootstrap, params.bootstrap_seed, None)
    analysis = classifier_analysis(params, sets, scores, ("hr", "bicubic"), weights, "resnet18")
    for v in analysis["verdicts"]:
        test = v["verdict_test"]
        assert test["test"] == test_name and v["rule"] == rule and test["seeds"] == len(seeds)
        assert v["pvalue"] == test["pvalue"] and v["pvalue_holm"] == test["pvalue_holm"] >= test["pvalue"]
        assert v["pooled_test"]["pvalue_holm"] >= v["pooled_test"]["pvalue"]  # still reported beside it
    q2 = next(v for v in analysis["verdicts"] if v["id"] == Q2_SR)
    assert q2["verdict_test"]["difference"] == pytest.approx(-5 / 30) and q2["direction"] == "first lower FNR"
    q1 = next(v for v in analysis["verdicts"] if v["id"].startswith("Q1:sr_null"))  # 20 of 30 missed in both seeds
    assert q1["verdict"] == "first_better" and q1["pvalue"] < 0.02
    text = settings(params, ("hr", "bicubic"))["verdict"]
    assert "new training seeds" in text and "does not generalize to other data sets" in text
    if rule in ("seed_image_t", "crossed_t"):  # the verdict table shows the test's own interval: mean +- t x its SE
        from scipy.stats import t as student_t

        from medsr.report.tables import difference_interval
        shown = difference_interval(q2, 0.95)
        df = q2["verdict_test"]["df"]
        assert df == 4 if rule == "seed_image_t" else df > 4  # S - 1, or Satterthwaite's (seeds and images)
        half = student_t.ppf(0.975, df) * q2["verdict_test"]["se"]
        assert shown["value"] == q2["verdict_test"]["difference"] and shown["ci_high"] - shown["value"] == \
            pytest.approx(half) and half > 0
        assert difference_interval({**q2, "verdict_test": {}}, 0.95) is q2["fnr_difference_val"]  # other rules



@pytest.mark.parametrize("rule, over", [("seed_image_t", ["classifier training seed", "test images"]),
                                        ("crossed_t", ["classifier training seed", "test images",
                                                       "val threshold images"])])
def test_four_labels_the_minimum_detectable_effect_and_what_a_verdict_generalizes_over(rule, over):
    """Five seeds: SR through the HR classifier misses 4-5 of 30 unhealthy images, bicubic + bicubic classifier 5
    (other images, per seed): a difference of -0.02, not significant. Within a margin of 0.3 it is "equivalent", within
    0.02 "inconclusive"; every verdict carries the minimum detectable effect of its test at alpha / k (k: its Holm
    family's size) and the sources of variance its test generalizes over."""
    from medsr.evaluation.power import minimum_detectable_effect
    from medsr.report.summary import verdict_sentence
    from medsr.report.tables import verdict_words

    seeds = (0, 1, 2, 3, 4)
    sets = [ImageSet("hr", "hr", Path("hr"), matched="hr"),
            ImageSet("bicubic", "bicubic", Path("b"), matched="bicubic"),
            ImageSet("sr_null_seed0", "sr", Path("s"), guidance="null", seed=0)]
    scores = _spread_misses({"bicubic@bicubic": [range(5 * i, 5 * i + 5) for i in range(5)],
                             "sr_null_seed0@hr": [range(5 * i + 2, 5 * i + 6 + i % 2) for i in range(5)],
                             "bicubic@hr": [range(0, 20)] * 5}, seeds)
    labels = {}
    for margin in (0.3, 0.02):
        params = _params(verdict_rule=rule, train_seeds=seeds, equivalence_margin=margin)
        weights = bootstrap_weights(N_HEALTHY + N_UNHEALTHY, params.bootstrap, params.bootstrap_seed, None)
        verdicts = classifier_analysis(params, sets, scores, ("hr", "bicubic"), weights, "resnet18")["verdicts"]
        q2 = next(v for v in verdicts if v["id"] == Q2_SR)
        labels[margin] = q2["verdict"]
        assert q2["pvalue_holm"] > 0.05 and q2["verdict_test"]["difference"] == pytest.approx(-0.02)
        assert q2["equivalence"]["margin"] == margin and (q2["equivalence"]["pvalue"] < 0.05) == (margin == 0.3)
    assert labels == {0.3: "equivalent", 0.02: "inconclusive"}
    for v in verdicts:
        test, k = v["verdict_test"], 2 if v["question"] == "reference" else 1  # the two references: one family
        assert v["mde"]["family_size"] == k and v["mde"]["alpha"] == pytest.approx(0.05 / k)
        assert v["mde"]["value"] == pytest.approx(minimum_detectable_effect(test["se"], test["df"], 0.05 / k))
        assert v["generalizes_over"] == over and "SR model training run" in v["held_fixed"]
        assert f"detectable: |d| >= {v['mde']['value']:.2g}" in verdict_words(v)
    q1 = next(v for v in verdicts if v["id"] == Q1_SR)
    assert q1["verdict"] == "first_better"
    assert verdict_words(q2) == f"inconclusive; detectable: |d| >= {q2['mde']['value']:.2g}"
    assert verdict_sentence(q2, 0.95).endswith(f"; verdict: {verdict_words(q2)}.")
    assert verdict_words({**q2, "verdict": "equivalent"}).startswith("equivalent within +-0.02; detectable: |d| >= ")
    assert verdict_words({**q2, "mde": {"value": 1.7}}) == "inconclusive; detectable: no |d| <= 1"  # too few seeds

def test_the_default_rule_adds_no_seed_level_test():
    sets = [
        ImageSet("hr", "hr", Path("hr"), matched="hr"),
        ImageSet("bicubic", "bicubic", Path("b"), matched="bicubic"),
        ImageSet("sr_null_seed0", "sr", Path("s"), guidance="null", seed=0),
    ]
    scores = _spread_misses({"bicubic@bicubic": [range(0, 5), range(5, 10)]}, SEEDS)
    params = _params()
    weights = bootstrap_weights(N_HEALTHY + N_UNHEALTHY, params.bootstrap, params.bootstrap_seed, None)
    analysis = classifier_analysis(params, sets, scores, ("hr", "bicubic"), weights, "resnet18")
    assert all("verdict_test" not in v and v["pvalue"] == v["pooled_test"]["pvalue"] for v in analysis["verdicts"])


@pytest.mark.parametrize("rule, words", [("two_level_bootstrap", "two-level bootstrap"),
                                         ("crossed_t", "crossed seeds x images t test")])
def test_the_whole_stage_runs_under_a_rule_that_recomputes_the_val_thresholds(tmp_path, rule, words):
    """evaluate end to end under a seed-level rule that resamples the healthy val images: the external set (no val
    images of its own) takes its classifier's home val scores for the resampled thresholds; results, report and
    summary are written."""
    experiment = write_experiment(tmp_path, {**BASE, "sr_null_seed0@hr": 2, "bicubic@bicubic": 14}, SHIFT,
                                  rule=rule)
    results = experiment["results_data"]
    assert results["settings"]["verdict_rule"] == rule
    assert "new training seeds" in results["settings"]["verdict"]
    ext = next(v for v in results["verdicts"] if v["id"].startswith("Q1:ext_mine"))
    assert ext["verdict_test"]["test"] == rule and ext["pvalue_holm"] == ext["verdict_test"]["pvalue_holm"]
    assert words in experiment["summary_rst"]


# --- the learning gate -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def not_learned(tmp_path_factory) -> dict:
    """sr_wins's test scores, but the HR classifiers score half the unhealthy HR val images below every healthy
    one (val AUROC 0.8) and one bicubic classifier's val loss still fell in its last epoch."""
    return write_experiment(tmp_path_factory.mktemp("not_learned"),
                            {**BASE, "sr_null_seed0@hr": 2, "bicubic@bicubic": 14}, SHIFT, hr_val_misses=N_VAL // 5,
                            unconverged=("classifier_resnet18_bicubic_seed1",))


def test_the_gate_passes_when_the_classifiers_learned_and_changes_no_verdict(sr_wins):
    gate = sr_wins["results_data"]["gate"]
    assert gate["passed"] is True and gate["reasons"] == []
    assert gate["hr_val_auroc"] == {"resnet18": {"0": 1.0, "1": 1.0}}
    record = gate["classifiers"]["classifier_resnet18_bicubic_seed1.csv"]
    assert record == {"epochs_run": 4, "best_epoch": 3, "stopped_early": False, "converged": True, "val_auroc": 0.9,
                      "chance_pvalue": pytest.approx(chance_pvalue(0.9, N_VAL, N_VAL))}
    assert record["chance_pvalue"] < 1e-4
    assert sr_wins["metrics_data"]["gate"] == "passed"
    assert _verdict(sr_wins, Q2_SR)["verdict"] == "first_better"
    assert sr_wins["summary_rst"].startswith("Diffusion SR lowers the HR-trained classifier's misses")
    assert "did not learn" not in sr_wins["results_data"]["summary"]


def test_the_gate_withholds_every_verdict_when_the_classifiers_did_not_learn(not_learned, sr_wins):
    data = not_learned["results_data"]
    gate = data["gate"]
    assert gate["passed"] is False and gate["hr_val_auroc"]["resnet18"] == {"0": 0.8, "1": 0.8}
    assert gate["reasons"] == [
        "resnet18 HR-trained classifier, train seed 0: HR val AUROC 0.800, below the floor 0.9 "
        "(evaluate.gate_min_hr_val_auroc)",
        "resnet18 HR-trained classifier, train seed 1: HR val AUROC 0.800, below the floor 0.9 "
        "(evaluate.gate_min_hr_val_auroc)",
        "classifier_resnet18_bicubic_seed1: not converged: best val criterion at epoch 4 of 4 trained, still "
        "improving at the budget (train_classifier.epochs / patience; evaluate.gate_require_converged)"]
    assert {v["verdict"] for v in data["verdicts"]} == {"no_verdict"}
    assert {a["agree"] for a in data["architecture_agreement"]} == {True}
    for name in ("fnr_first_val", "fnr_difference_val", "pvalue_holm"):  # the numbers stay, as description
        assert _verdict(not_learned, Q2_SR)[name] == _verdict(sr_wins, Q2_SR)[name]
    assert not_learned["metrics_data"]["gate"] == "no_verdict"
    sentence = "The classifiers did not learn this data: no verdict."
    assert data["summary"].startswith(sentence + "\n  resnet18 HR-trained classifier, train seed 0")
    rst = not_learned["summary_rst"]
    assert rst.startswith(f"**{sentence}**\n\n- resnet18 HR-trained classifier, train seed 0: HR val AUROC 0.800")
    assert "Not shown" not in rst and "Yes:" not in rst and "No verdict: SR (null guidance)" in rst
    assert all(row[-1] == "no verdict (the classifiers did not learn)" for row in verdict_rows(data))
    assert_valid_rst(rst)


def test_the_readme_block_leads_with_no_verdict(not_learned, tmp_path):
    target = tmp_path / "README.md"
    target.write_text("# medsr\n\n<!-- results:begin -->\n<!-- results:end -->\n")
    readme.update_readme(target, not_learned["results"])
    block = target.read_text().split("<!-- results:begin -->\n")[1]
    assert block.startswith("### Verdict\n\n**The classifiers did not learn this data: no verdict.**\n\n"
                            "- resnet18 HR-trained classifier, train seed 0: HR val AUROC 0.800")
    assert "| no verdict (the classifiers did not learn) |" in block and "| first lower FNR |" not in block


def test_a_missing_or_old_classifier_history_fails_a_gate_that_requires_convergence(tmp_path):
    from medsr.evaluation.gate import classifier_records

    write_history(tmp_path / "classifier_resnet18_hr_seed0.csv", best_epoch=2)
    write_csv(
        tmp_path / "classifier_resnet18_bicubic_seed0.csv", [{"epoch": 1, "val_loss": 0.5}], ("epoch", "val_loss")
    )
    records = classifier_records(_params(train_seeds=(0,)), ["resnet18"],
                                 [tmp_path / "classifier_resnet18_hr_seed0.csv",
                                  tmp_path / "classifier_resnet18_bicubic_seed0.csv"])
    assert records == {"classifier_resnet18_hr_seed0.csv": {"epochs_run": 4, "best_epoch": 2, "stopped_early": False,
                                                            "converged": True, "val_auroc": 0.9},
                       "classifier_resnet18_bicubic_seed0.csv": None}


def test_the_gate_withholds_the_verdicts_when_any_classifier_ranks_its_own_val_images_at_chance(tmp_path):
    """The HR classifiers rank HR val perfectly, but one bicubic classifier kept an epoch at val AUROC 0.52 (20 + 20
    val images: p 0.41): no verdict, whatever the HR floor says. 0.80 passes (p 6e-4); a history without the
    column (written before it existed) fails."""
    from medsr.evaluation.gate import learning_gate

    ids, labels = _ids("val")
    scores = {("hr", seed, "hr", "val"): Scores(tuple(ids), np.array(labels), np.array(labels, dtype=float))
              for seed in SEEDS}
    logs = []
    for domain in ("hr", "bicubic"):
        for seed in SEEDS:
            logs.append(tmp_path / f"classifier_resnet18_{domain}_seed{seed}.csv")
            write_history(logs[-1], best_epoch=3, val_auroc=0.52 if (domain, seed) == ("bicubic", 1) else 0.8)
    gate = learning_gate(_params(), {"resnet18": scores}, "hr", logs)
    assert gate["passed"] is False and gate["chance_alpha"] == 0.05
    assert gate["reasons"] == ["classifier_resnet18_bicubic_seed1: val AUROC 0.520 on its own val images is not above "
                               "chance (one-sided p 0.41 >= 0.05, 20 + 20 val images; evaluate.gate_chance_alpha)"]
    assert gate["classifiers"]["classifier_resnet18_hr_seed0.csv"]["chance_pvalue"] == pytest.approx(5.85e-4, rel=0.01)
    assert learning_gate(_params(gate_chance_alpha=0.0), {"resnet18": scores}, "hr", logs)["passed"] is True
    write_csv(logs[0], [{"epoch": 1, "val_loss": 0.5, "epochs_run": 1, "best_epoch": 1, "stopped_early": False,
                         "converged": True}], ("epoch", "val_loss", "epochs_run", "best_epoch", "stopped_early",
                                               "converged"))
    gate = learning_gate(_params(gate_require_converged=False), {"resnet18": scores}, "hr", logs)
    assert gate["reasons"][0] == ("classifier_resnet18_hr_seed0: no val AUROC of its kept epoch in its training "
                                  "history (evaluate.gate_chance_alpha)")


def test_the_gate_fails_on_an_undefined_hr_val_auroc():
    from medsr.evaluation.gate import learning_gate

    ids = ("v0", "v1")
    scores = {("hr", seed, "hr", "val"): Scores(ids, np.array([0, 0]), np.array([0.1, 0.2])) for seed in SEEDS}
    gate = learning_gate(_params(gate_require_converged=False), {"resnet18": scores}, "hr", [])
    assert gate["passed"] is False and gate["hr_val_auroc"] == {"resnet18": {"0": None, "1": None}}
    assert gate["reasons"][0] == ("resnet18 HR-trained classifier, train seed 0: HR val AUROC undefined (one class in "
                                  "val), below the floor 0.9 (evaluate.gate_min_hr_val_auroc)")


def test_each_verdict_sentence_quotes_the_interval_of_its_table_row(tmp_path):
    """A verdict's FNR difference has one interval, the one its own test implies (the seed-level t test's), in the
    summary's sentence as in the verdict table; the image bootstrap's narrower one never stands beside its p."""
    experiment = write_experiment(tmp_path, {**BASE, "sr_null_seed0@hr": 2, "bicubic@bicubic": 14}, SHIFT,
                                  rule="seed_image_t")
    data, rst = experiment["results_data"], experiment["summary_rst"]
    rows = [r for r in verdict_rows(data) if r[1] == "resnet18"]
    assert rows and all(v["verdict_test"]["test"] == "seed_image_t" for v in data["verdicts"])
    cells = [row[VERDICT_HEADER.index("FNR difference [CI]")] for row in rows]
    for cell in cells:
        assert f"difference {cell}; Holm p" in rst, cell
    bootstrap = {interval(v["fnr_difference_val"], signed=True) for v in data["verdicts"]} - set(cells)
    assert bootstrap and not any(f"difference {b}; Holm p" in rst for b in bootstrap)


def test_a_new_verdict_test_is_one_class(monkeypatch):
    """Defining a `VerdictTest` subclass is all that the verdict code, the settings block, the summary and the verdict
    table need: a scratch rule defined here (an exact sign test of the seed-level FNR differences, its interval their
    range) is registered by its definition and used by each of them (the params enum: tests/test_config.py)."""
    from scipy.stats import binomtest

    from medsr.evaluation import verdicts
    from medsr.evaluation.settings import GENERALIZES, settings
    from medsr.report.summary import basis
    from medsr.report.tables import difference_interval, verdict_rows

    monkeypatch.setitem(verdicts.VERDICT_TESTS, "scratch_sign", None)  # the class's entry is removed after the test

    class ScratchSign(verdicts.VerdictTest):
        name = "scratch_sign"
        description = "scratch: exact sign test of the seed-level FNR differences"
        summary = "a scratch sign test over training seeds"
        seed_unit = True
        interval_text = "the range of the seed-level differences (scratch)"

        @classmethod
        def test(cls, group):
            arrays = group.arrays
            d = arrays["first"]["misses"].mean(axis=(1, 2)) - arrays["second"]["misses"].mean(axis=(1, 2))
            below, above = int(np.sum(d < 0)), int(np.sum(d > 0))
            p = binomtest(min(below, above), below + above).pvalue if below + above else 1.0
            return {"test": cls.name, "difference": float(d.mean()), "low": float(d.min()), "high": float(d.max()),
                    "pvalue": float(p)}

        @classmethod
        def interval(cls, test, confidence):
            return {"value": test["difference"], "ci_low": test["low"], "ci_high": test["high"]}

    assert verdicts.VERDICT_TESTS["scratch_sign"] is ScratchSign
    seeds = tuple(range(7))
    sets = [ImageSet("hr", "hr", Path("hr"), matched="hr"),
            ImageSet("bicubic", "bicubic", Path("b"), matched="bicubic"),
            ImageSet("sr_null_seed0", "sr", Path("s"), guidance="null", seed=0)]
    scores = _spread_misses({"bicubic@bicubic": [range(4 * i, 4 * i + 3 + i % 3) for i in range(7)],
                             "bicubic@hr": [range(0, 20)] * 7}, seeds)
    params = _params(verdict_rule="seed_image_t", train_seeds=seeds)
    object.__setattr__(params, "verdict_rule", "scratch_sign")  # past the enum of the installed verdicts.py
    weights = bootstrap_weights(N_HEALTHY + N_UNHEALTHY, params.bootstrap, params.bootstrap_seed, None)
    analysis = classifier_analysis(params, sets, scores, ("hr", "bicubic"), weights, "resnet18")
    q2 = next(v for v in analysis["verdicts"] if v["id"] == Q2_SR)
    assert q2["rule"] == "scratch_sign" and q2["verdict_test"]["test"] == "scratch_sign"
    assert q2["verdict_test"]["difference"] == pytest.approx(-27 / (7 * 30))  # 3, 4, 5, 3, 4, 5, 3 of 30 missed
    assert q2["pvalue"] == pytest.approx(2 * 0.5 ** 7) and q2["pvalue_holm"] == q2["verdict_test"]["pvalue_holm"]
    assert q2["pvalue_holm"] == pytest.approx(2 * 0.5 ** 7) and q2["verdict"] == "first_better"  # alone in its family
    assert difference_interval(q2, 0.95) == {"value": pytest.approx(-27 / 210), "ci_low": pytest.approx(-5 / 30),
                                             "ci_high": pytest.approx(-3 / 30)}
    block = settings(params, ("hr", "bicubic"))
    assert block["verdict"] == f"{ScratchSign.description}; significant when its Holm-adjusted p is < 1 - " \
                               f"confidence. {GENERALIZES}"
    sentence = basis({"settings": block, "n_test": N_HEALTHY + N_UNHEALTHY, "n_unhealthy": N_UNHEALTHY})
    assert f"the verdict's FNR difference: {ScratchSign.interval_text}" in sentence
    assert f"Verdict: {ScratchSign.summary}. It is Holm-adjusted" in sentence
    row = next(r for r in verdict_rows({"verdicts": analysis["verdicts"], "settings": block})
               if r[2].startswith(q2["first_title"]) and q2["second_title"] in r[2])
    assert row[VERDICT_HEADER.index("FNR difference [CI]")] == interval(difference_interval(q2, 0.95), signed=True) \
        == "-0.129 [-0.167, -0.100]"
