"""Classification metrics with bootstrap percentile intervals; the positive class is `unhealthy` (1).

Confusion matrix (rows true, columns predicted, index 0 healthy, 1 unhealthy):
    [[tn, fp],
     [fn, tp]]
FNR = FN / (FN + TP) = 1 - recall (the seed thesis wrote FN / (TN + FP), which is not a rate of anything).
Every function over counts also takes numpy arrays of counts, one per bootstrap resample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

RATE_NAMES = ("accuracy", "precision", "recall", "specificity", "fnr", "f1")


@dataclass(frozen=True)
class Confusion:
    tn: int
    fp: int
    fn: int
    tp: int

    def as_dict(self) -> dict[str, int]:
        return {"tn": self.tn, "fp": self.fp, "fn": self.fn, "tp": self.tp}

    def matrix(self) -> np.ndarray:
        """[[tn, fp], [fn, tp]]: rows true healthy/unhealthy, columns predicted healthy/unhealthy."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])


def confusion(labels: np.ndarray, preds: np.ndarray) -> Confusion:
    labels, preds = np.asarray(labels).astype(bool), np.asarray(preds).astype(bool)
    return Confusion(tn=int(np.sum(~labels & ~preds)), fp=int(np.sum(~labels & preds)),
                     fn=int(np.sum(labels & ~preds)), tp=int(np.sum(labels & preds)))


def _ratio(num, den):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def rates(tn, fp, fn, tp) -> dict[str, np.ndarray]:
    """Rates from counts (scalars or arrays); NaN where a denominator is zero."""
    return {
        "accuracy": _ratio(np.add(tp, tn), np.add(np.add(tp, tn), np.add(fp, fn))),
        "precision": _ratio(tp, np.add(tp, fp)),
        "recall": _ratio(tp, np.add(tp, fn)),  # sensitivity, true positive rate
        "specificity": _ratio(tn, np.add(tn, fp)),
        "fnr": _ratio(fn, np.add(fn, tp)),  # miss rate = 1 - recall
        "f1": _ratio(np.multiply(2, tp), np.add(np.multiply(2, tp), np.add(fp, fn))),
    }


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = Mann-Whitney U / (n_pos n_neg), ties counted one half (Hanley & McNeil 1982)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def auroc_kernel(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """K[i, j] = 1 if positive i outscores negative j, 1/2 on a tie, else 0 (the U statistic's kernel)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels][:, None], scores[~labels][None, :]
    return (pos > neg).astype(np.float64) + 0.5 * (pos == neg)


# --- bootstrap over test images ------------------------------------------------------------

def bootstrap_weights(n: int, resamples: int, seed: int, groups: Sequence[str] | None = None) -> np.ndarray:
    """[resamples, n] multiplicities of each test image in each resample (Efron & Tibshirani 1993).

    One matrix serves every set, so intervals of differences between sets are paired. With `groups` (each test
    image's subject), the cluster bootstrap (Davison & Hinkley 1997, Section 3.8): the G subjects are drawn G times
    with replacement and every image of a subject drawn m times gets multiplicity m, since slices of one patient
    are not independent. Without groups (or with every image its own group) the images are drawn.
    """
    rng = np.random.default_rng(seed)
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"bootstrap_weights: {len(groups)} groups for {n} images")
        _, group_of = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        n_groups = int(group_of.max()) + 1 if n else 0
        if n_groups < n:
            draws = rng.integers(0, n_groups, size=(resamples, n_groups))
            offsets = draws + (np.arange(resamples) * n_groups)[:, None]
            counts = np.bincount(offsets.ravel(), minlength=resamples * n_groups).reshape(resamples, n_groups)
            return counts[:, group_of].astype(np.float64)
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = draws + (np.arange(resamples) * n)[:, None]
    return np.bincount(offsets.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def bootstrap_confusion(weights: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> dict[str, np.ndarray]:
    labels, preds = np.asarray(labels).astype(bool), np.asarray(preds).astype(bool)
    return {"tn": weights @ (~labels & ~preds), "fp": weights @ (~labels & preds),
            "fn": weights @ (labels & ~preds), "tp": weights @ (labels & preds)}


def bootstrap_rates(weights: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> dict[str, np.ndarray]:
    return rates(**bootstrap_confusion(weights, labels, preds))


def bootstrap_auroc(weights: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of every resample: weighted U statistic w_pos^T K w_neg / (sum w_pos * sum w_neg)."""
    labels = np.asarray(labels).astype(bool)
    w_pos, w_neg = weights[:, labels], weights[:, ~labels]
    num = np.einsum("bj,bj->b", w_pos @ auroc_kernel(labels, scores), w_neg)
    return _ratio(num, w_pos.sum(1) * w_neg.sum(1))


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Bootstrap percentile interval; resamples where the statistic is undefined are left out."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    low, high = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def estimate(value: float, samples: np.ndarray, confidence: float) -> dict[str, float | None]:
    """{"value", "ci_low", "ci_high"}; undefined numbers become None (JSON null)."""
    low, high = percentile_interval(samples, confidence)
    return {"value": finite_or_none(value), "ci_low": finite_or_none(low), "ci_high": finite_or_none(high)}


def finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def set_metrics(labels: np.ndarray, preds: np.ndarray, scores: np.ndarray | None, weights: np.ndarray,
                confidence: float) -> dict[str, object]:
    """Confusion counts and every rate (plus AUROC unless `scores` is None), each with its bootstrap interval."""
    counts = confusion(labels, preds)
    point = rates(**counts.as_dict())
    boot = bootstrap_rates(weights, labels, preds)
    out: dict[str, object] = {"n": int(len(labels)), "confusion": counts.as_dict()}
    for name in RATE_NAMES:
        out[name] = estimate(point[name], boot[name], confidence)
    if scores is not None:
        out["auroc"] = estimate(auroc(labels, scores), bootstrap_auroc(weights, labels, scores), confidence)
    return out


def mean_estimate(points: list[float], samples: list[np.ndarray], confidence: float) -> dict[str, float | None]:
    """The mean over replicates (seeds) of a statistic, with the percentile interval of the mean of its
    per-replicate bootstrap samples; all replicates use the same resamples of the test images (paired)."""
    with np.errstate(invalid="ignore"):
        return estimate(float(np.mean(points)), np.mean(np.stack(samples), axis=0), confidence)


def summarize_spread(values: Mapping[str, float | None] | list[float | None]) -> dict[str, float | int | None]:
    """mean, sample std (ddof 1; None for one value), min, max of the defined values."""
    items = list(values.values()) if isinstance(values, Mapping) else list(values)
    array = np.array([v for v in items if v is not None and np.isfinite(v)], dtype=np.float64)
    if array.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": int(array.size), "mean": float(array.mean()),
            "std": float(array.std(ddof=1)) if array.size > 1 else None,
            "min": float(array.min()), "max": float(array.max())}
