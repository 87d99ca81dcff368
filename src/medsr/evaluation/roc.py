"""ROC curves and the partial AUROC of the high-specificity tail, where the val operating point lives.

The verdict is read at one point of each arm's ROC curve (the threshold reaching `evaluate.val_specificity` on
val); two arms with nearly the same AUROC can still differ there. This module gives what a reader needs to see
that: each arm's test ROC curve pooled over replicates, its val and test operating points, the test specificity
at the val point next to the FNR, and the partial AUROC over FPR in [0, MAX_FPR] (specificity >= 1 - MAX_FPR).

ROC curve (positive = unhealthy; decision "unhealthy iff score > t"): the vertices (FPR, TPR) at every distinct
score, highest first, from (0, 0) to (1, 1); tied scores make one diagonal segment (Fawcett 2006, Algorithm 2).
With bootstrap weights each image counts its multiplicity, so one resample matrix gives every resample's curve.

Partial AUROC: McClish's (1989) standardized partial area,
    pAUC = 1/2 (1 + (A - A_min) / (A_max - A_min)),   A = integral_0^MAX_FPR TPR(f) df,
A_min = MAX_FPR^2 / 2 (the chance diagonal), A_max = MAX_FPR (a perfect classifier): 0.5 is chance, 1 perfect,
as sklearn.metrics.roc_auc_score(max_fpr=...). A is the trapezoid area under the vertices, linearly interpolated
at FPR = MAX_FPR. (Below the diagonal in the tail it falls under 0.5.)

Pooled curve: vertical averaging (Fawcett 2006, Section 8.1): every replicate's TPR at the fixed FPR_GRID
(linear interpolation between vertices; on a vertical segment the top), averaged; the band is the min-max
over replicates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsr.evaluation.comparisons import Arm
from medsr.evaluation.metrics import bootstrap_rates, estimate, finite_or_none, mean_estimate
from medsr.evaluation.operating_point import OperatingPoint, predict
from medsr.classifier.predictions import Key, Scores

MAX_FPR = 0.1  # partial AUROC over specificity >= 0.9
# FPR grid of the pooled curves: fine over the tail [0, MAX_FPR] (where the val point is), coarse beyond
FPR_GRID = np.unique(np.r_[np.linspace(0.0, MAX_FPR, 41), np.linspace(MAX_FPR, 1.0, 37)])

Points = Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]]  # (set, classifier, seed) -> point


# --- one curve, every resample -----------------------------------------------------------------

def roc_vertices(weights: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR), each [resamples, distinct scores + 1], from (0, 0); NaN rows where a class has weight 0."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]  # last image of each distinct score
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))[:, order]
    tp = np.cumsum(w * labels[order], axis=1)[:, ends]
    fp = np.cumsum(w * ~labels[order], axis=1)[:, ends]
    zero = np.zeros((w.shape[0], 1))
    tp, fp = np.hstack([zero, tp]), np.hstack([zero, fp])
    with np.errstate(divide="ignore", invalid="ignore"):
        return fp / fp[:, -1:], tp / tp[:, -1:]


def partial_area(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float = MAX_FPR) -> np.ndarray:
    """A = integral_0^max_fpr TPR df per row: trapezoids between vertices, the last one cut at max_fpr."""
    f0, f1, t0, t1 = fpr[:, :-1], fpr[:, 1:], tpr[:, :-1], tpr[:, 1:]
    end = np.minimum(f1, max_fpr)
    width = np.clip(end - f0, 0.0, None)
    span = f1 - f0
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = np.where(span > 0, (end - f0) / np.where(span > 0, span, 1.0), 0.0)
    t_end = t0 + (t1 - t0) * cut
    return np.sum(width * (t0 + t_end) / 2.0, axis=1)


def mcclish(area: np.ndarray, max_fpr: float = MAX_FPR) -> np.ndarray:
    """McClish (1989) standardization of a partial area over FPR in [0, max_fpr]: chance 0.5, perfect 1."""
    low, high = max_fpr ** 2 / 2.0, max_fpr
    return 0.5 * (1.0 + (np.asarray(area) - low) / (high - low))


def partial_auroc(weights: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                  max_fpr: float = MAX_FPR) -> np.ndarray:
    """McClish-standardized partial AUROC over FPR in [0, max_fpr] of every resample (row of `weights`)."""
    fpr, tpr = roc_vertices(weights, labels, scores)
    past = np.flatnonzero(np.all((fpr >= max_fpr) | np.isnan(fpr), axis=0))  # vertices no row needs beyond
    keep = past[0] + 1 if past.size else fpr.shape[1]
    return mcclish(partial_area(fpr[:, :keep], tpr[:, :keep], max_fpr), max_fpr)


def tpr_at(grid: np.ndarray, fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    """TPR of one curve at each FPR of `grid` (within [0, 1]): at a vertex's FPR the top of its vertical segment,
    between two FPRs linear from the last vertex before to the first vertex after (the foot of the next jump)."""
    grid = np.asarray(grid, dtype=np.float64)
    last = np.clip(np.searchsorted(fpr, grid, side="right") - 1, 0, len(fpr) - 1)  # last vertex with FPR <= f
    after = np.minimum(last + 1, len(fpr) - 1)
    span = fpr[after] - fpr[last]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(span > 0, (grid - fpr[last]) / np.where(span > 0, span, 1.0), 0.0)
    return tpr[last] + (tpr[after] - tpr[last]) * share


def vertical_average(curves: Sequence[tuple[np.ndarray, np.ndarray]],
                     grid: np.ndarray = FPR_GRID) -> dict[str, list[float]]:
    """Fawcett (2006) vertical averaging: mean TPR over curves at each grid FPR, and the min-max band."""
    stacked = np.stack([tpr_at(grid, f, t) for f, t in curves])
    return {"fpr": grid.tolist(), "tpr_mean": stacked.mean(axis=0).tolist(), "tpr_low": stacked.min(axis=0).tolist(),
            "tpr_high": stacked.max(axis=0).tolist()}


# --- arms and comparisons of the evaluation ----------------------------------------------------

def tail_samples(scores: Mapping[Key, Scores], points: Points, weights: np.ndarray,
                 arm_list: Sequence[tuple[str, str]], seeds: Sequence[int]) -> dict[tuple[str, str, int], dict]:
    """Per (set, classifier, seed): pAUC and test specificity at the val point, point value and every resample."""
    out = {}
    for seed in seeds:
        for name, classifier in arm_list:
            test = scores[(classifier, seed, name, "test")]
            preds = predict(test.scores, points[(name, classifier, seed)]["val"].threshold)
            unit = np.ones((1, len(test.labels)))
            out[(name, classifier, seed)] = {
                "pauc": (float(partial_auroc(unit, test.labels, test.scores)[0]),
                         partial_auroc(weights, test.labels, test.scores)),
                "specificity": (float(bootstrap_rates(unit, test.labels, preds)["specificity"][0]),
                                bootstrap_rates(weights, test.labels, preds)["specificity"])}
    return out


def pooled_tail(members: Sequence[tuple[int, str]], classifier: str, samples: Mapping, confidence: float,
                stat: str) -> dict[str, float | None]:
    """Mean of `stat` over replicates (seed, set) with the paired bootstrap interval of the mean."""
    chosen = [samples[(name, classifier, seed)][stat] for seed, name in members]
    return mean_estimate([c[0] for c in chosen], [c[1] for c in chosen], confidence)


def arm_roc(members: Sequence[tuple[int, str]], classifier: str, scores: Mapping[Key, Scores],
            points: Points) -> dict[str, Any]:
    """The pooled test ROC curve of an arm group, and its operating points: per replicate and their mean, the val
    threshold's (FPR, TPR) measured on val ("val") and the same threshold applied to the test images ("test")."""
    curves, val, test = [], [], []
    for seed, name in members:
        data = scores[(classifier, seed, name, "test")]
        fpr, tpr = roc_vertices(np.ones((1, len(data.labels))), data.labels, data.scores)
        curves.append((fpr[0], tpr[0]))
        point = points[(name, classifier, seed)]["val"]
        if point.val_specificity is not None and point.val_sensitivity is not None:
            val.append((1.0 - point.val_specificity, point.val_sensitivity))
        preds = predict(data.scores, point.threshold).astype(bool)
        labels = data.labels.astype(bool)
        test.append((float(np.mean(preds[~labels])), float(np.mean(preds[labels]))))
    return {**vertical_average(curves), "points": {"val": _points(val), "test": _points(test)}}


def _points(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    mean = np.mean(pairs, axis=0) if pairs else (np.nan, np.nan)
    return {"fpr": finite_or_none(mean[0]), "tpr": finite_or_none(mean[1]),
            "per_replicate": [{"fpr": f, "tpr": t} for f, t in pairs]}


def verdict_tail(verdict: Mapping[str, Any], samples: Mapping, confidence: float) -> dict[str, Any]:
    """Test specificity at the val point and pAUC of each side of a comparison group, mean over its replicates,
    and their paired differences (first - second) with the percentile interval of the same resamples."""
    out: dict[str, Any] = {}
    for stat, key in (("specificity", "specificity_{}_val"), ("pauc", "pauc_{}")):
        sides = {"first": ([], []), "second": ([], []), "difference": ([], [])}
        for r in verdict["per_replicate"]:
            pair = []
            for side in ("first", "second"):
                name, classifier = Arm.parse(r[side])
                point, sample = samples[(name, classifier, r["train_seed"])][stat]
                sides[side][0].append(point), sides[side][1].append(sample)
                pair.append((point, sample))
            sides["difference"][0].append(pair[0][0] - pair[1][0])
            sides["difference"][1].append(pair[0][1] - pair[1][1])
        for side, (values, draws) in sides.items():
            out[key.format(side)] = mean_estimate(values, draws, confidence)
    return out


def add_tail(analysis: dict[str, Any], scores: Mapping[Key, Scores], points: Points, weights: np.ndarray,
             arm_list: Sequence[tuple[str, str]], seeds: Sequence[int], confidence: float) -> None:
    """Adds to a classifier family's analysis (in place; nothing it holds changes): per arm and seed "pauc", per arm
    group pooled "pauc" and "roc", per verdict the test specificities and pAUCs with their differences."""
    samples = tail_samples(scores, points, weights, arm_list, seeds)
    for arm in analysis["arms"].values():
        for seed, entry in arm["per_seed"].items():
            point, draws = samples[(arm["set"], arm["classifier"], int(seed))]["pauc"]
            entry["pauc"] = estimate(point, draws, confidence)
    for group in analysis["arm_groups"].values():
        members = [(seed, name) for seed in seeds for name in group["sets"]]
        group["pooled"]["pauc"] = pooled_tail(members, group["classifier"], samples, confidence, "pauc")
        group["roc"] = arm_roc(members, group["classifier"], scores, points)
    for v in analysis["verdicts"]:
        v.update(verdict_tail(v, samples, confidence))


SETTINGS = {
    "specificity_at_val_point": "test specificity TN / (TN + FP) at the val-chosen threshold, beside the FNR: a lower "
                                "FNR bought with a lower specificity shows",
    "partial_auroc": f"secondary: McClish (1989) standardized partial AUROC over test FPR in [0, {MAX_FPR}] "
                     f"(specificity >= {1 - MAX_FPR:.1f}, where the val point lies): 0.5 chance, 1 perfect; "
                     "trapezoids under the ROC vertices, interpolated at the FPR bound",
    "roc": "per arm group the test ROC curves of its replicates, vertically averaged at fixed FPRs (Fawcett 2006), "
           "band min-max over replicates; operating points: the val threshold's (FPR, TPR) on val and on test",
}
