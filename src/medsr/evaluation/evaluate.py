"""`medsr evaluate`: metrics with intervals, paired tests, image quality, figures and DVC plot data.

Inputs: the predictions CSV from `medsr classify` and the same named image sets (`hr` required).
Outputs (each atomic): metrics JSON, a figures folder (PNGs + summary.rst), a plots folder (CSVs).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsr.config import CLASSES, EvaluateParams
from medsr.errors import MedsrError
from medsr.evaluation import figures as draw
from medsr.evaluation import quality
from medsr.evaluation.metrics import bootstrap_weights, confusion, set_metrics, summarize_spread
from medsr.evaluation.statistics import compare, holm
from medsr.evaluation.summary import summary_rst, summary_text
from medsr.io import (Record, atomic_dir, image_path, read_csv, read_image, read_json, read_manifest, write_csv,
                      write_json)

REFERENCE = "hr"
PREDICTION_COLUMNS = ("set", "id", "label", "label_index", "pred_index", "prob_unhealthy")
SR_NAME = re.compile(r"^sr_(?P<guidance>.+)_seed(?P<seed>\d+)$")
BASELINES = ("bicubic", "hr", "regression")  # SR is compared with each, in this order (bicubic first)
FIGURES = ("examples.png", "difference_maps.png", "confusion_matrices.png", "mcnemar_tables.png",
           "training_curves.png", "fnr_intervals.png")


# --- predictions ---------------------------------------------------------------------------

class SetPredictions:
    """One set's predictions in id order."""

    def __init__(self, ids: list[str], labels: np.ndarray, preds: np.ndarray, scores: np.ndarray):
        self.ids, self.labels, self.preds, self.scores = ids, labels, preds, scores


def read_predictions(path: Path) -> dict[str, SetPredictions]:
    rows = read_csv(path)
    if not rows:
        raise MedsrError(f"{path}: no predictions")
    missing = [c for c in PREDICTION_COLUMNS if c not in rows[0]]
    if missing:
        raise MedsrError(f"{path}: missing column(s) {', '.join(missing)}")
    grouped: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        by_id = grouped.setdefault(row["set"], {})
        if row["id"] in by_id:
            raise MedsrError(f"{path}: set {row['set']} lists image {row['id']} twice")
        by_id[row["id"]] = row
    reference = REFERENCE if REFERENCE in grouped else next(iter(grouped))
    order = sorted(grouped[reference])
    out = {}
    for name, by_id in grouped.items():
        absent = next((i for i in order if i not in by_id), None)
        extra = next((i for i in sorted(by_id) if i not in grouped[reference]), None)
        if absent or extra:
            raise MedsrError(f"{path}: set {name} " + (f"lacks image {absent}" if absent else f"has extra image {extra}")
                             + f" compared with set {reference}")
        try:
            labels = np.array([int(by_id[i]["label_index"]) for i in order])
            preds = np.array([int(by_id[i]["pred_index"]) for i in order])
            scores = np.array([float(by_id[i]["prob_unhealthy"]) for i in order])
        except ValueError as err:
            raise MedsrError(f"{path}: set {name}: non-numeric label_index / pred_index / prob_unhealthy ({err})") from err
        if not set(np.unique(labels)) | set(np.unique(preds)) <= {0, 1}:
            raise MedsrError(f"{path}: set {name}: label_index and pred_index must be 0 (healthy) or 1 (unhealthy)")
        out[name] = SetPredictions(order, labels, preds, scores)
    for name, pred in out.items():
        bad = next((i for i, a, b in zip(order, pred.labels, out[reference].labels) if a != b), None)
        if bad is not None:
            raise MedsrError(f"{path}: set {name} labels image {bad} differently from set {reference}")
    return out


# --- set descriptions ----------------------------------------------------------------------

def describe_set(name: str, folder: Path) -> dict[str, Any]:
    """kind (hr, bicubic, regression, sr, other), guidance, seed, leaks_label (metadata.json or oracle)."""
    match = SR_NAME.match(name)
    kind = "sr" if match else name if name in BASELINES else "other"
    metadata_file = Path(folder) / "metadata.json"
    metadata = read_json(metadata_file) if metadata_file.is_file() else {}
    guidance = match["guidance"] if match else metadata.get("guidance")
    leaks = bool(metadata.get("leaks_label", False)) or guidance == "oracle"
    return {"kind": kind, "guidance": guidance, "seed": int(match["seed"]) if match else metadata.get("seed"),
            "leaks_label": leaks}


def comparison_pairs(names: Sequence[str], kinds: Mapping[str, str]) -> list[tuple[str, str]]:
    """SR vs bicubic, SR vs HR, SR vs regression for every SR set; then regression vs bicubic, bicubic vs HR."""
    present = set(names)
    pairs = [(sr, base) for sr in names if kinds[sr] == "sr" for base in BASELINES if base in present]
    pairs += [(a, b) for a, b in (("regression", "bicubic"), ("bicubic", "hr")) if a in present and b in present]
    return pairs


# --- images --------------------------------------------------------------------------------

def load_by_id(folder: Path, ids: Sequence[str], what: str) -> np.ndarray:
    records: dict[str, Record] = {r.id: r for r in read_manifest(folder, split="test")}
    missing = next((i for i in ids if i not in records), None)
    if missing is not None:
        raise MedsrError(f"{Path(folder) / 'manifest.csv'}: {what} lacks test image {missing}")
    images = [read_image(image_path(folder, records[i])) for i in ids]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise MedsrError(f"{folder}: {what} test images differ in size ({sorted(shapes)[:2]})")
    return np.stack(images).astype(np.float32)


def figure_ids(ids: Sequence[str], labels: np.ndarray, count: int) -> list[int]:
    """Deterministic: evenly spaced over the id order, ceil(count / 2) unhealthy, the rest healthy."""
    chosen = []
    n_unhealthy = min(math.ceil(count / 2), int(labels.sum()))
    for cls, k in ((1, n_unhealthy), (0, min(count - n_unhealthy, int((labels == 0).sum())))):
        members = np.flatnonzero(labels == cls)
        if k > 0:
            chosen += [int(members[j]) for j in np.unique(np.linspace(0, len(members) - 1, k).round().astype(int))]
    return chosen


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

def run(params: EvaluateParams, *, predictions: Path, sets: Mapping[str, Path], lr: Path,
        logs: Sequence[Path], metrics: Path, figures: Path, plots: Path) -> None:  # noqa: C901 - one linear story
    figures_dir, plots_dir = Path(figures), Path(plots)
    predicted = read_predictions(Path(predictions))
    if REFERENCE not in sets:
        raise MedsrError("--set hr=FOLDER: the HR set is required (reference for quality and figures)")
    for name in predicted:
        if name not in sets:
            raise MedsrError(f"{predictions}: set {name} has predictions but no --set {name}=FOLDER")
    for name in sets:
        if name not in predicted:
            raise MedsrError(f"--set {name}: {predictions} has no predictions for this set")
    names = list(predicted)
    ref = predicted[REFERENCE]
    labels, ids = ref.labels, ref.ids
    described = {name: describe_set(name, sets[name]) for name in names}
    weights = bootstrap_weights(len(ids), params.bootstrap, params.bootstrap_seed)

    # classification metrics per set
    per_set: dict[str, dict[str, Any]] = {}
    for name in names:
        p = predicted[name]
        per_set[name] = {**described[name], **set_metrics(labels, p.preds, p.scores, weights, params.confidence)}

    # paired tests (first set = rows of the 2x2 table)
    comparisons: dict[str, dict[str, Any]] = {}
    for first, second in comparison_pairs(names, {n: d["kind"] for n, d in described.items()}):
        result = compare(labels, predicted[first].preds, predicted[second].preds, weights, params.confidence,
                         params.exact_below)
        comparisons[f"{first}_vs_{second}"] = {
            "first": first, "second": second,
            "leaks_label": described[first]["leaks_label"] or described[second]["leaks_label"], **result}
    # Holm families: {all images, unhealthy only} x {fair, label-leaking}; oracle tests never dilute fair ones
    for leaks in (False, True):
        fair = [c for c in comparisons.values() if c["leaks_label"] is leaks]
        for family in (lambda c: c["mcnemar"], lambda c: c["unhealthy_only"]["mcnemar"]):
            tests = [family(c) for c in fair]
            for test, adjusted in zip(tests, holm([t["pvalue"] for t in tests])):
                test["pvalue_holm"] = adjusted

    # spread over SR sampling seeds, per guidance mode
    seed_spread: dict[str, dict[str, Any]] = {}
    for guidance in dict.fromkeys(d["guidance"] for d in described.values() if d["kind"] == "sr"):
        members = [n for n in names if described[n]["kind"] == "sr" and described[n]["guidance"] == guidance]
        seeds = sorted(described[n]["seed"] for n in members)
        spread = {"sets": members, "seeds": seeds,
                  "seeds_missing": [s for s in params.seeds if s not in seeds],
                  "leaks_label": any(described[n]["leaks_label"] for n in members),
                  "fnr": summarize_spread([per_set[n]["fnr"]["value"] for n in members]),
                  "accuracy": summarize_spread([per_set[n]["accuracy"]["value"] for n in members])}
        for base in ("bicubic", "hr"):
            keys = [f"{n}_vs_{base}" for n in members if f"{n}_vs_{base}" in comparisons]
            spread[f"mcnemar_pvalue_vs_{base}"] = summarize_spread([comparisons[k]["mcnemar"]["pvalue"] for k in keys])
            spread[f"fnr_difference_vs_{base}"] = summarize_spread(
                [comparisons[k]["fnr_difference"]["value"] for k in keys])
        seed_spread[guidance] = spread

    # image quality against HR (test images, paired by id)
    images = {name: load_by_id(sets[name], ids, f"set {name}") for name in names}
    hr = images[REFERENCE]
    lpips_net, skip_reason = None, "evaluate.lpips_weights is empty: no local LPIPS weights (nothing is downloaded)"
    if params.lpips_weights:
        lpips_net = quality.load_lpips(params.lpips_weights)
    for name in names:
        if name == REFERENCE:
            continue
        if images[name].shape != hr.shape:
            raise MedsrError(f"{sets[name]}: set {name} test images are {images[name].shape[1:]}, HR are "
                             f"{hr.shape[1:]}: quality needs HR-size images")
        per_set[name]["quality"] = quality.set_quality(images[name], hr, weights, params.confidence, lpips_net,
                                                       skip_reason)
        print(f"evaluate: {name}: PSNR {per_set[name]['quality']['psnr']['value']}", file=sys.stderr)

    log_status: dict[str, str] = {}
    curves = []
    for log in logs:
        curve = loss_curve(Path(log))
        log_status[str(log)] = "plotted" if curve else "skipped: no step+loss or epoch+*_loss columns"
        if curve:
            curves.append((Path(log).stem, curve[0], curve[2], curve[1]))

    result: dict[str, Any] = {
        "summary": "",
        "positive_class": CLASSES[1],
        "classes": list(CLASSES),
        "n_test": len(ids),
        "n_unhealthy": int(labels.sum()),
        "settings": {"confidence": params.confidence, "bootstrap": params.bootstrap,
                     "bootstrap_seed": params.bootstrap_seed, "exact_below": params.exact_below,
                     "interval": "bootstrap percentile over test images; one resample matrix shared by all sets "
                                 "(paired differences)",
                     "mcnemar_primary": "exact binomial if b + c < exact_below, else chi-square with continuity "
                                        "correction; uncorrected chi-square also reported",
                     "significance": "Holm-adjusted primary p-value < 1 - confidence; Holm families: all images / "
                                     "unhealthy images only, each split into fair and label-leaking comparisons"},
        "sets": per_set,
        "comparisons": comparisons,
        "seed_spread": seed_spread,
        "leaks_label": [n for n in names if described[n]["leaks_label"]],
        "training_logs": log_status,
        "figures": list(FIGURES) + ["summary.rst"],
    }
    result["summary"] = summary_text(result)

    # figures
    chosen = figure_ids(ids, labels, params.figure_images)
    chosen_ids = [ids[i] for i in chosen]
    row_titles = [f"{ids[i]} ({CLASSES[labels[i]]})" for i in chosen]
    lr_images = load_by_id(lr, chosen_ids, "LR folder")
    first_seed = {}
    for name in names:  # one SR set per guidance mode (its lowest seed) in the image figures
        d = described[name]
        if d["kind"] == "sr" and (d["guidance"] not in first_seed or d["seed"] < described[first_seed[d["guidance"]]]["seed"]):
            first_seed[d["guidance"]] = name
    shown = [n for n in ("bicubic", "regression") if n in images] + list(first_seed.values()) + \
            [n for n in names if described[n]["kind"] == "other"]
    def panel_text(c: Mapping[str, Any]) -> str:
        leak = " (oracle: leaks label)" if c["leaks_label"] else ""
        return f"{c['mcnemar']['primary']} McNemar p = {c['mcnemar']['pvalue']:.3g}{leak}"

    mcnemar_panels = [(c["first"], c["second"], c["table"], panel_text(c)) for c in comparisons.values()
                      if c["first"] in first_seed.values() and c["second"] in ("bicubic", "hr")]
    if not mcnemar_panels:  # no SR set: show the first baseline pairs instead
        mcnemar_panels = [(c["first"], c["second"], c["table"], panel_text(c)) for c in list(comparisons.values())[:2]]
    with atomic_dir(figures_dir) as tmp:
        draw.examples(tmp / "examples.png", [("LR", lr_images), ("HR", hr[chosen])]
                         + [(n, images[n][chosen]) for n in shown], row_titles)
        draw.difference_maps(tmp / "difference_maps.png", hr[chosen], [(n, images[n][chosen]) for n in shown],
                                row_titles)
        draw.confusion_matrices(tmp / "confusion_matrices.png",
                                   {n: confusion(labels, predicted[n].preds).matrix() for n in names})
        if mcnemar_panels:
            draw.mcnemar_tables(tmp / "mcnemar_tables.png", mcnemar_panels)
        else:
            draw.mcnemar_tables(tmp / "mcnemar_tables.png",
                                   [(REFERENCE, REFERENCE, {"a": 0, "b": 0, "c": 0, "d": 0}, "no pair to compare")])
        draw.training_curves(tmp / "training_curves.png", curves)
        draw.fnr_intervals(tmp / "fnr_intervals.png",
                              [(n, per_set[n]["fnr"]["value"], per_set[n]["fnr"]["ci_low"], per_set[n]["fnr"]["ci_high"],
                                described[n]["leaks_label"]) for n in names], params.confidence)
        (tmp / "summary.rst").write_text(summary_rst(result))

    # DVC plot data
    with atomic_dir(plots_dir) as tmp:
        (tmp / "confusion").mkdir()
        for name in names:
            write_csv(tmp / "confusion" / f"{name}.csv",
                      [{"actual": CLASSES[a], "predicted": CLASSES[b]} for a, b in zip(labels, predicted[name].preds)],
                      ("actual", "predicted"))
        write_csv(tmp / "fnr.csv", [{"set": n, "fnr": per_set[n]["fnr"]["value"], "ci_low": per_set[n]["fnr"]["ci_low"],
                                     "ci_high": per_set[n]["fnr"]["ci_high"],
                                     "leaks_label": described[n]["leaks_label"]} for n in names],
                  ("set", "fnr", "ci_low", "ci_high", "leaks_label"))

    write_json(metrics, result)
    print(result["summary"], file=sys.stderr)
