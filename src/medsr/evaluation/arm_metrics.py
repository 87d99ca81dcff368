"""What each arm (image set x classifier) measures, per train seed and pooled over replicates.

The operating points (0.5 and the threshold chosen on val: the smallest reaching `evaluate.val_specificity`),
confusion counts and rates with bootstrap intervals (Efron & Tibshirani 1993), AUROC;
an arm group's pooled numbers are the mean over its replicates (train seeds x sets) with the paired bootstrap
interval of the mean, and so are a comparison group's FNRs and their difference (`pooled_comparison`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsr.core.parameters import EvaluateParams
from medsr.evaluation.comparisons import Arm
from medsr.evaluation.metrics import bootstrap_auroc, bootstrap_rates, finite_or_none, mean_estimate, set_metrics
from medsr.evaluation.operating_point import DEFAULT_THRESHOLD, OperatingPoint, predict, val_threshold
from medsr.data.image_sets import ImageSet
from medsr.classifier.predictions import Key, Scores

POINTS = ("val", "0.5")  # operating points; "val" is primary
CLASSIFIER_TITLE = {"hr": "HR-trained classifier", "bicubic": "HR classifier fine-tuned on bicubic",
                    "sr": "HR classifier fine-tuned on SR"}


def group_title(image_set: ImageSet) -> str:
    if image_set.kind == "sr":
        return f"SR ({image_set.guidance} guidance{', LEAKS THE LABEL' if image_set.leaks_label else ''})"
    return image_set.title


def arm_title(image_set: ImageSet, classifier: str) -> str:
    return f"{group_title(image_set)} + {CLASSIFIER_TITLE.get(classifier, classifier + ' classifier')}"


# --- operating points ----------------------------------------------------------------------

def operating_points(params: EvaluateParams, sets: Sequence[ImageSet], scores: Mapping[Key, Scores],
                     arm_list: Sequence[Arm]) -> dict[tuple[str, str, int], dict[str, OperatingPoint]]:
    """(set, classifier, seed) -> {"val": chosen on that arm's val images (or its domain's), "0.5": fixed}."""
    home = {s.matched: s.name for s in sets if s.matched}  # classifier domain -> the set it was trained on
    out = {}
    for seed in params.train_seeds:
        for name, classifier in arm_list:
            key = (classifier, seed, name, "val")
            if key in scores:
                point = val_threshold(scores[key].labels, scores[key].scores, params.val_specificity,
                                      f"predictions of {classifier} classifier, seed {seed}, set {name}, split val")
            else:  # an external set without val images: the classifier's threshold on its own domain's val set
                own = (classifier, seed, home[classifier], "val")
                base = val_threshold(scores[own].labels, scores[own].scores, params.val_specificity,
                                     f"predictions of {classifier} classifier, seed {seed}, set {own[2]}, split val")
                point = OperatingPoint(base.threshold, f"val of {own[2]} (fallback: {name} has no val images)",
                                       base.val_specificity, base.val_sensitivity)
            out[(name, classifier, seed)] = {"val": point, "0.5": OperatingPoint(DEFAULT_THRESHOLD, "0.5")}
    return out


# --- arms ----------------------------------------------------------------------------------

def arm_seed_metrics(test: Scores, points: Mapping[str, OperatingPoint], weights: np.ndarray,
                     confidence: float) -> dict[str, Any]:
    labels = test.labels.astype(bool)
    out: dict[str, Any] = {"operating_points": {p: points[p].as_dict() for p in POINTS}}
    for p in POINTS:
        out[p] = set_metrics(test.labels, predict(test.scores, points[p].threshold),
                             test.scores if p == "val" else None, weights, confidence)
    out["auroc"] = out["val"].pop("auroc")  # threshold-free
    out["mean_prob_unhealthy"] = {"unhealthy": finite_or_none(test.scores[labels].mean() if labels.any() else np.nan),
                                  "healthy": finite_or_none(test.scores[~labels].mean() if (~labels).any() else np.nan)}
    return out


def pooled_arm(members: Sequence[tuple[int, str]], scores: Mapping[Key, Scores], classifier: str,
               points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]], weights: np.ndarray,
               confidence: float) -> dict[str, Any]:
    """Mean over replicates (train seed, set) with the paired bootstrap interval of the mean."""
    out: dict[str, Any] = {}
    for p in POINTS:
        for rate in ("fnr", "accuracy", "specificity"):
            values, samples = [], []
            for seed, name in members:
                test = scores[(classifier, seed, name, "test")]
                preds = predict(test.scores, points[(name, classifier, seed)][p].threshold)
                values.append(float(bootstrap_rates(np.ones((1, len(preds))), test.labels, preds)[rate][0]))
                samples.append(bootstrap_rates(weights, test.labels, preds)[rate])
            out[f"{rate}_{p}"] = mean_estimate(values, samples, confidence)
    values, samples = [], []
    for seed, name in members:
        test = scores[(classifier, seed, name, "test")]
        values.append(float(bootstrap_auroc(np.ones((1, len(test.labels))), test.labels, test.scores)[0]))
        samples.append(bootstrap_auroc(weights, test.labels, test.scores))
    out["auroc"] = mean_estimate(values, samples, confidence)
    return out


def pooled_comparison(replicates: Sequence[dict[str, Any]], scores: Mapping[Key, Scores],
                      points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]], weights: np.ndarray,
                      params: EvaluateParams) -> dict[str, Any]:
    """Mean FNR each side and mean difference over replicates, with paired bootstrap intervals."""
    out: dict[str, Any] = {}
    for p in POINTS:
        sides = {"first": ([], []), "second": ([], []), "difference": ([], [])}
        for r in replicates:
            per_side = []
            for side in ("first", "second"):
                name, classifier = Arm.parse(r[side])
                test = scores[(classifier, r["train_seed"], name, "test")]
                preds = predict(test.scores, points[(name, classifier, r["train_seed"])][p].threshold)
                point = float(bootstrap_rates(np.ones((1, len(preds))), test.labels, preds)["fnr"][0])
                sample = bootstrap_rates(weights, test.labels, preds)["fnr"]
                sides[side][0].append(point), sides[side][1].append(sample)
                per_side.append((point, sample))
            sides["difference"][0].append(per_side[0][0] - per_side[1][0])
            sides["difference"][1].append(per_side[0][1] - per_side[1][1])
        for side, (values, samples) in sides.items():
            out[f"fnr_{side}_{p}"] = mean_estimate(values, samples, params.confidence)
    return out
