"""ROC curves, their vertical average over replicates and the McClish-standardized partial AUROC of the tail."""

from __future__ import annotations

import numpy as np
import pytest

from medsr.evaluation.metrics import auroc, bootstrap_weights
from medsr.evaluation.roc import (FPR_GRID, MAX_FPR, mcclish, partial_area, partial_auroc, roc_vertices, tpr_at,
                                  vertical_average)

# 2 unhealthy, 5 healthy; 0.6 is tied between an unhealthy and a healthy image (one diagonal segment)
LABELS = np.array([1, 1, 0, 0, 0, 0, 0])
SCORES = np.array([0.9, 0.6, 0.6, 0.2, 0.1, 0.05, 0.0])


def _one(labels, scores, max_fpr=MAX_FPR) -> float:
    return float(partial_auroc(np.ones((1, len(labels))), labels, scores, max_fpr)[0])


def test_roc_vertices_by_hand():
    fpr, tpr = roc_vertices(np.ones((1, 7)), LABELS, SCORES)
    assert fpr[0] == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert tpr[0] == pytest.approx([0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_partial_auroc_by_hand():
    """Over FPR [0, 0.1] the curve runs along the tie's diagonal from (0, 0.5) towards (0.2, 1): at 0.1 it is at
    0.75, so A = 0.1 (0.5 + 0.75) / 2 = 0.0625; McClish: 1/2 (1 + (0.0625 - 0.005) / (0.1 - 0.005))."""
    fpr, tpr = roc_vertices(np.ones((1, 7)), LABELS, SCORES)
    assert partial_area(fpr, tpr, 0.1)[0] == pytest.approx(0.0625)
    assert _one(LABELS, SCORES) == pytest.approx(0.5 * (1 + 0.0575 / 0.095))
    # chance and perfect
    assert mcclish(np.array(0.1 ** 2 / 2)) == pytest.approx(0.5) and mcclish(np.array(0.1)) == pytest.approx(1.0)
    assert _one(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(1.0)


def test_the_whole_area_is_the_auroc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.uniform(size=60) + 0.3 * labels, 1)  # many ties
    assert _one(labels, scores, max_fpr=1.0) == pytest.approx(auroc(labels, scores))


def test_partial_auroc_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for round_to in (None, 2, 1):
        for n in (30, 200):
            labels = rng.integers(0, 2, n)
            scores = rng.normal(size=n) + labels
            if round_to is not None:
                scores = np.round(scores, round_to)
            for max_fpr in (0.1, 0.05, 0.3):
                assert _one(labels, scores, max_fpr) == pytest.approx(
                    metrics.roc_auc_score(labels, scores, max_fpr=max_fpr), abs=1e-12)


def test_weights_count_images_as_often_as_drawn():
    """Every bootstrap resample's pAUC equals that of the data set with each image repeated its multiplicity."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 40)
    scores = np.round(rng.normal(size=40) + labels, 1)
    weights = bootstrap_weights(40, 5, 0)
    samples = partial_auroc(weights, labels, scores)
    for w, value in zip(weights.astype(int), samples):
        repeated = np.repeat(np.arange(40), w)
        assert value == pytest.approx(metrics.roc_auc_score(labels[repeated], scores[repeated], max_fpr=MAX_FPR))


def test_a_resample_without_healthy_images_is_undefined():
    weights = np.array([[1.0, 1.0, 0, 0, 0, 0, 0], [1.0] * 7])
    values = partial_auroc(weights, LABELS, SCORES)
    assert np.isnan(values[0]) and np.isfinite(values[1])


def test_tpr_at_takes_the_top_of_a_vertical_step_and_interpolates_a_diagonal():
    fpr, tpr = roc_vertices(np.ones((1, 7)), LABELS, SCORES)
    assert tpr_at(np.array([0.0, 0.1, 0.2, 0.5]), fpr[0], tpr[0]) == pytest.approx([0.5, 0.75, 1.0, 1.0])
    # a flat stretch before a jump stays flat up to the jump's foot
    steps = np.array([0.0, 0.0, 0.2, 0.2, 1.0]), np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    assert tpr_at(np.array([0.0, 0.1, 0.19, 0.2, 0.6, 1.0]), *steps) == pytest.approx([0.5, 0.5, 0.5, 1.0, 1.0, 1.0])


def test_vertical_average_of_a_perfect_and_a_chance_curve():
    perfect = (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    chance = (np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0]))
    pooled = vertical_average([perfect, chance])
    grid = np.asarray(pooled["fpr"])
    assert grid[0] == 0 and grid[-1] == 1 and np.all(np.diff(grid) > 0)
    assert np.sum(grid <= MAX_FPR) > 20  # fine where the val point lies
    assert pooled["tpr_mean"] == pytest.approx((1 + grid) / 2)
    assert pooled["tpr_low"] == pytest.approx(grid) and pooled["tpr_high"] == pytest.approx(np.ones_like(grid))
    assert np.array_equal(grid, FPR_GRID)
