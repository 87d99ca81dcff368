"""Operating points: from P(unhealthy) to a decision, the same rule for every (classifier, image set).

Decision: unhealthy iff P(unhealthy) > threshold. At 0.5 this is the argmax of the two softmax outputs (a tie
goes to healthy, index 0). The val-chosen threshold is the smallest one whose val specificity reaches the
target: with s_(1) <= ... <= s_(m) the healthy val scores and k = ceil(target * m) (at least 1), t = s_(k),
so at least k healthy val images score <= t (ties at s_(k) are all healthy-called) and every higher score is
called unhealthy: the largest sensitivity at that specificity. Chosen on val, applied unchanged to test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medsr.core.errors import MedsrError

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    source: str  # "0.5" | "val" | "val of <set> (fallback: <set> has no val images)"
    val_specificity: float | None = None  # reached on the val images it was chosen on
    val_sensitivity: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"threshold": self.threshold, "source": self.source, "val_specificity": self.val_specificity,
                "val_sensitivity": self.val_sensitivity}


def predict(scores: np.ndarray, threshold: float) -> np.ndarray:
    return (np.asarray(scores, dtype=np.float64) > threshold).astype(np.int64)


def val_threshold(labels: np.ndarray, scores: np.ndarray, specificity: float, what: str) -> OperatingPoint:
    """The smallest threshold with val specificity >= `specificity` (see the module docstring)."""
    labels = np.asarray(labels).astype(bool)
    healthy = np.sort(np.asarray(scores, dtype=np.float64)[~labels])
    if healthy.size == 0:
        raise MedsrError(f"{what}: no healthy val image: a specificity-based threshold cannot be chosen")
    k = max(1, math.ceil(specificity * healthy.size - 1e-9))  # 1e-9: 0.95 * 20 must give 19, not 20
    threshold = float(healthy[k - 1])
    preds = predict(scores, threshold).astype(bool)
    positives = int(labels.sum())
    return OperatingPoint(threshold, "val", float(np.mean(~preds[~labels])),
                          float(np.mean(preds[labels])) if positives else None)
