"""`medsr evaluate`: read -> compute (a plain dict) -> render (files).

Inputs: the predictions CSV from `medsr classify` (scores of every architecture x classifier x train seed x image
set x split)
and the ImageSets it classified (the first is hr). Outputs, each written atomically: the headline metrics JSON
(DVC metrics), the full results JSON (with provenance), a figures folder (PNGs + summary.rst) and a plots folder
(DVC plot CSVs). What is compared with what is declared in `evaluation/comparisons.py`; the numbers are
computed in medsr.evaluation, the files written by medsr.report.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsr.core.config import classifier_domains
from medsr.core.parameters import CLASSES, EvaluateParams, TrainClassifierParams
from medsr.core.errors import MedsrError
from medsr.evaluation import quality
from medsr.evaluation.audit import audit
from medsr.evaluation.comparisons import arms
from medsr.evaluation.compute import compute
from medsr.evaluation.deployed import analysis as deployed_analysis
from medsr.evaluation.gate import learning_gate
from medsr.data.image_sets import ImageSet, paired_records
from medsr.core.io import Record, read_csv, read_manifest, read_record_image
from medsr.classifier.predictions import read_predictions
from medsr.core.provenance import provenance
from medsr.report.render import FIGURES, figure_ids, write_figures, write_outputs, write_plots
from medsr.report.summary import summary_text



# --- images --------------------------------------------------------------------------------

def set_images(sets: Sequence[ImageSet], ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Every set's test images in `ids` order (external folders without a manifest included)."""
    paired = paired_records(sets, ("test",))
    out = {}
    for image_set in sets:
        by_id = {ref.id: own for ref, own in paired[image_set.name]}
        missing = next((i for i in ids if i not in by_id), None)
        if missing is not None:
            raise MedsrError(f"{image_set.path}: set {image_set.name} lacks test image {missing}")
        images = [read_record_image(image_set.path, by_id[i]) for i in ids]
        if len({im.shape for im in images}) > 1:
            raise MedsrError(f"{image_set.path}: set {image_set.name} test images differ in size")
        out[image_set.name] = np.stack(images).astype(np.float32)
    return out


def load_by_id(folder: Path, ids: Sequence[str], what: str) -> np.ndarray:
    records: dict[str, Record] = {r.id: r for r in read_manifest(folder, split="test")}
    missing = next((i for i in ids if i not in records), None)
    if missing is not None:
        raise MedsrError(f"{Path(folder) / 'manifest.csv'}: {what} lacks test image {missing}")
    images = [read_record_image(folder, records[i]) for i in ids]  # checked against the manifest hash
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise MedsrError(f"{folder}: {what} test images differ in size ({sorted(shapes)[:2]})")
    return np.stack(images).astype(np.float32)


def subjects_of_test_images(hr: ImageSet, ids: Sequence[str]) -> list[str] | None:
    """The subjects of the test images `ids` from the hr manifest (an image without one is its own subject), or
    None when no test image has one: the bootstrap then resamples images."""
    records = {r.id: r for r in read_manifest(hr.path, split="test")}
    if not any(records[i].subject for i in ids if i in records):
        return None
    return [records[i].unit if i in records else f"image:{i}" for i in ids]


# --- training logs -------------------------------------------------------------------------

def loss_curve(path: Path) -> tuple[str, np.ndarray, dict[str, np.ndarray]] | None:
    """(x label, x, {series: loss}) of a CSV with step + loss or epoch + *_loss columns, else None."""
    rows = read_csv(path)
    if not rows:
        return None
    columns = list(rows[0])
    if "step" in columns and "loss" in columns:
        xlabel, series = "step", [c for c in columns if c == "loss" or c.endswith("_loss")]
    elif "epoch" in columns and any(c.endswith("_loss") for c in columns):
        xlabel, series = "epoch", [c for c in columns if c.endswith("_loss")]
    else:
        return None

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])

    try:
        return xlabel, column(xlabel), {name: column(name) for name in series}
    except ValueError as err:
        raise MedsrError(f"{path}: non-numeric value in a loss column ({err})") from err


# --- the stage -----------------------------------------------------------------------------

def check_sets(sets: Sequence[ImageSet]) -> None:
    if not sets or sets[0].kind != "hr":
        raise MedsrError("evaluate: the first image set must be hr (the reference)")
    if not any(s.kind == "bicubic" for s in sets):
        raise MedsrError("evaluate: no bicubic image set: every question compares with bicubic")
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise MedsrError(f"evaluate: image set names repeat ({', '.join(names)})")


def read_curves(logs: Sequence[Path]) -> tuple[dict[str, str], list[tuple]]:
    status: dict[str, str] = {}
    curves = []
    for log in logs:
        curve = loss_curve(Path(log))
        status[str(log)] = "plotted" if curve else "skipped: no step+loss or epoch+*_loss columns"
        if curve:
            curves.append((Path(log).stem, curve[0], curve[2], curve[1]))
    return status, curves


def run(params: EvaluateParams, train_classifier: TrainClassifierParams, *, predictions: Path,
        sets: Sequence[ImageSet], lr: Path, logs: Sequence[Path], metrics: Path, results: Path, figures: Path,
        plots: Path, deployed: Path | None = None) -> None:
    """The analysis once per classifier family (train_classifier.architectures); the first (resnet18) is the
    headline's, the trust audit's and the figures'; the verdict table and summary list every family. The learning
    gate (medsr.evaluation.gate: HR val AUROC, and the classifier histories among `logs`) decides first whether
    there are verdicts at all. `deployed`: classify-deployed's predictions, given exactly when evaluate.deployed.file
    is set (its Q1 verdicts: medsr.evaluation.deployed)."""
    sets = list(sets)
    check_sets(sets)
    if bool(params.deployed.file) != (deployed is not None):
        raise MedsrError("evaluate: --deployed (classify-deployed's predictions) is given exactly when "
                         "evaluate.deployed.file is set")
    classifiers = classifier_domains(params)
    architectures = list(train_classifier.architectures)
    by_architecture = read_predictions(Path(predictions), architectures=architectures, arms=arms(sets, classifiers),
                                       train_seeds=list(params.train_seeds),
                                       optional_val=[s.name for s in sets if s.kind == "external"])
    scores = by_architecture[architectures[0]]
    test = scores[("hr", params.train_seeds[0], sets[0].name, "test")]
    ids, labels = list(test.ids), test.labels
    images = set_images(sets, ids)
    for s in sets[1:]:
        if images[s.name].shape != images[sets[0].name].shape:
            raise MedsrError(f"{s.path}: set {s.name} test images are {images[s.name].shape[1:]}, HR are "
                             f"{images[sets[0].name].shape[1:]}: quality needs HR-size images")
    lpips_net = quality.load_lpips(params.lpips_weights) if params.lpips_weights else None
    log_status, curves = read_curves(logs)
    gate = learning_gate(params, by_architecture, sets[0].name, logs)  # before any verdict

    result: dict[str, Any] = compute(params, sets=sets, scores=scores, classifiers=classifiers, images=images,
                                     lpips_net=lpips_net, subjects=subjects_of_test_images(sets[0], ids),
                                     architecture=architectures[0],
                                     other_scores={a: by_architecture[a] for a in architectures[1:]}, gate=gate)
    result["trust"], trust_data = audit(params, sets=sets, scores=scores, result=result,
                                        predictions=Path(predictions))
    if deployed is not None:
        result["deployed"] = deployed_analysis(params, sets, Path(deployed))
    result.update(training_logs=log_status, provenance=provenance())
    result["summary"] = summary_text(result)

    chosen = figure_ids(ids, labels, params.figure_images)
    lr_images = load_by_id(lr, [ids[i] for i in chosen], "LR folder")
    row_titles = [f"{ids[i]} ({CLASSES[labels[i]]})" for i in chosen]
    trust_figures = write_figures(Path(figures), result, scores, images, lr_images, chosen, row_titles, curves,
                                  trust_data, params.figure_images)
    result["figures"] = list(FIGURES) + trust_figures + ["summary.rst"]
    write_plots(Path(plots), result, scores)
    write_outputs(results=result, metrics=Path(metrics), results_path=Path(results))
    print(result["summary"], file=sys.stderr)
