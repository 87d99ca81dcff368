"""Classification metrics: the correct FNR, confusion orientation, AUROC, bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from medsr.evaluation.metrics import (auroc, bootstrap_auroc, bootstrap_rates, bootstrap_weights, confusion,
                                      percentile_interval, rates, set_metrics, summarize_spread)

# Thesis Tables 4.1-4.2 AS PRINTED: rows labelled "Healthy" / "Unhealthy" (true), columns predicted likewise.
# NOTE: the seed code built this matrix with labels=[True, False], which swapped the classes: the printed
# "Healthy" row and column are the unhealthy class in its code (True = unhealthy first). Read that way, Table 4.1
# is TP 627, FN 12, FP 40, TN 600: 639 unhealthy and 640 healthy test images (1279 in all, thesis Section 3.3), and
# its HR FNR is 12 / 639, not 40 / 640. The tests below take the tables as printed (the thesis's own reading) and
# check the other reading separately; the report's confusion-matrix caption (workflow/report/figures.rst) says so.
THESIS_HR = np.array([[627, 12], [40, 600]])
THESIS_SR = np.array([[636, 3], [24, 616]])


def _labels_preds(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    (tn, fp), (fn, tp) = matrix
    labels = np.array([0] * (tn + fp) + [1] * (fn + tp))
    preds = np.array([0] * tn + [1] * fp + [0] * fn + [1] * tp)
    return labels, preds


@pytest.mark.parametrize("matrix, fnr, accuracy, precision, recall", [
    (THESIS_HR, 40 / 640, 0.959, 0.980, 0.938),
    (THESIS_SR, 24 / 640, 0.979, 0.995, 0.963),
])
def test_thesis_tables_with_the_correct_fnr(matrix, fnr, accuracy, precision, recall):
    labels, preds = _labels_preds(matrix)
    counts = confusion(labels, preds)
    np.testing.assert_array_equal(counts.matrix(), matrix)
    r = rates(**counts.as_dict())
    assert r["fnr"] == pytest.approx(fnr)
    assert r["fnr"] == pytest.approx(1 - r["recall"])
    assert r["accuracy"] == pytest.approx(accuracy, abs=5e-4)
    assert r["precision"] == pytest.approx(precision, abs=5e-4)
    assert r["recall"] == pytest.approx(recall, abs=5e-4)


def test_thesis_tables_fnr_values_and_the_thesis_formula_differs():
    hr = rates(**confusion(*_labels_preds(THESIS_HR)).as_dict())
    sr = rates(**confusion(*_labels_preds(THESIS_SR)).as_dict())
    assert hr["fnr"] == pytest.approx(0.0625) and sr["fnr"] == pytest.approx(0.0375)
    # the seed code's FN / (TN + FP) is a count over the negatives, not a rate of missed positives
    for matrix, correct in ((THESIS_HR, 0.0625), (THESIS_SR, 0.0375)):
        (tn, fp), (fn, _tp) = matrix
        assert fn / (tn + fp) != pytest.approx(correct, abs=1e-5)
    # ... and with its swapped labels ([True, False]: TP<->TN, FN<->FP) it reads FP / (TP + FN) instead
    (tn, fp), (fn, tp) = THESIS_HR
    assert fp / (tp + fn) == pytest.approx(12 / 640) and fp / (tp + fn) != pytest.approx(0.0625)


def test_thesis_tables_read_with_the_seed_codes_swapped_classes():
    """Printed "Healthy" row / column = the unhealthy class in the seed code: swap both to get our orientation."""
    for printed, fnr in ((THESIS_HR, 12 / 639), (THESIS_SR, 3 / 639)):
        ours = printed[::-1, ::-1]  # rows / columns back to (healthy, unhealthy)
        labels, preds = _labels_preds(ours)
        counts = confusion(labels, preds)
        assert counts.as_dict() == {"tn": printed[1, 1], "fp": printed[1, 0], "fn": printed[0, 1], "tp": printed[0, 0]}
        assert rates(**counts.as_dict())["fnr"] == pytest.approx(fnr)
        assert int(labels.sum()) == 639 and int((labels == 0).sum()) == 640
    # accuracy does not depend on the reading; precision and recall do
    hr_printed = rates(**confusion(*_labels_preds(THESIS_HR)).as_dict())
    hr_swapped = rates(**confusion(*_labels_preds(THESIS_HR[::-1, ::-1])).as_dict())
    assert hr_printed["accuracy"] == pytest.approx(hr_swapped["accuracy"])
    assert hr_printed["recall"] != pytest.approx(hr_swapped["recall"], abs=1e-3)


def test_confusion_orientation_positive_is_unhealthy():
    labels = np.array([1, 1, 1, 0, 0])
    preds = np.array([1, 0, 0, 0, 1])
    counts = confusion(labels, preds)
    assert counts.as_dict() == {"tn": 1, "fp": 1, "fn": 2, "tp": 1}
    np.testing.assert_array_equal(counts.matrix(), [[1, 1], [2, 1]])
    assert rates(**counts.as_dict())["fnr"] == pytest.approx(2 / 3)
    assert rates(**counts.as_dict())["specificity"] == pytest.approx(1 / 2)


def test_rates_undefined_denominator_is_nan():
    r = rates(tn=5, fp=0, fn=0, tp=0)
    assert np.isnan(r["fnr"]) and np.isnan(r["precision"]) and r["specificity"] == 1.0


def test_auroc_matches_mann_whitney_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    u = mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    assert auroc(labels, scores) == pytest.approx(u / ((labels == 1).sum() * (labels == 0).sum()))
    ones = np.ones((1, len(labels)))
    assert bootstrap_auroc(ones, labels, scores)[0] == pytest.approx(auroc(labels, scores))
    assert auroc(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert auroc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


def test_bootstrap_weights_are_resamples_of_n():
    w = bootstrap_weights(50, 400, seed=3)
    assert w.shape == (400, 50) and np.all(w.sum(1) == 50)
    np.testing.assert_array_equal(w, bootstrap_weights(50, 400, seed=3))
    assert not np.array_equal(w, bootstrap_weights(50, 400, seed=4))
    assert w.mean() == pytest.approx(1.0)


def test_bootstrap_rates_with_unit_weights_equal_point_estimates():
    labels, preds = _labels_preds(THESIS_HR)
    boot = bootstrap_rates(np.ones((2, len(labels))), labels, preds)
    point = rates(**confusion(labels, preds).as_dict())
    for name, value in point.items():
        assert boot[name][0] == pytest.approx(value)


def test_intervals_contain_the_estimate_and_shrink_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        labels = np.repeat([0, 1], n // 2)
        preds = np.where(rng.uniform(size=n) < 0.1, 1 - labels, labels)
        scores = np.clip(preds * 0.6 + rng.uniform(0, 0.4, n), 0, 1)
        out = set_metrics(labels, preds, scores, bootstrap_weights(n, 500, 0), 0.95)
        for name in ("accuracy", "precision", "recall", "specificity", "fnr", "f1", "auroc"):
            assert out[name]["ci_low"] <= out[name]["value"] <= out[name]["ci_high"], name
        widths.append(out["fnr"]["ci_high"] - out["fnr"]["ci_low"])
    assert widths[1] < widths[0] / 2  # width ~ 1 / sqrt(n): 16x the images, about a quarter the width


def test_percentile_interval_ignores_undefined_resamples():
    samples = np.array([np.nan] * 10 + list(np.linspace(0, 1, 101)))
    low, high = percentile_interval(samples, 0.9)
    assert low == pytest.approx(0.05) and high == pytest.approx(0.95)
    assert np.isnan(percentile_interval(np.array([np.nan]), 0.95)[0])


def test_spread_over_seeds():
    spread = summarize_spread([0.1, 0.2, None, 0.3])
    assert spread == {"n": 3, "mean": pytest.approx(0.2), "std": pytest.approx(0.1), "min": 0.1, "max": 0.3}
    assert summarize_spread([0.1])["std"] is None


def test_cluster_bootstrap_draws_subjects_and_gives_their_images_one_multiplicity():
    groups = ["a", "a", "a", "b", "c", "c", "d", "e"]
    w = bootstrap_weights(len(groups), 500, seed=2, groups=groups)
    assert w.shape == (500, 8)
    for i, j in ((0, 1), (1, 2), (4, 5)):
        np.testing.assert_array_equal(w[:, i], w[:, j])  # one subject, one multiplicity
    per_subject = w[:, [0, 3, 4, 6, 7]]
    np.testing.assert_array_equal(per_subject.sum(axis=1), np.full(500, 5.0))  # 5 subjects drawn 5 times
    assert (w[:, 0] != w[:, 3]).any()
    np.testing.assert_array_equal(w, bootstrap_weights(8, 500, seed=2, groups=groups))
    # every image its own subject: exactly the image bootstrap
    np.testing.assert_array_equal(bootstrap_weights(8, 50, 3, groups=list("abcdefgh")), bootstrap_weights(8, 50, 3))


def test_cluster_bootstrap_interval_is_wider_when_slices_of_a_subject_agree():
    """10 subjects x 5 identical slices: the image bootstrap treats 50 slices as independent and is too narrow."""
    labels = np.ones(50, dtype=int)
    preds = np.repeat(np.arange(10) % 2, 5)  # a subject's slices are all hit or all missed
    groups = [f"s{k // 5}" for k in range(50)]
    width = {}
    for name, g in (("image", None), ("subject", groups)):
        fnr = bootstrap_rates(bootstrap_weights(50, 2000, 0, groups=g), labels, preds)["fnr"]
        low, high = np.percentile(fnr, [2.5, 97.5])
        width[name] = high - low
    assert width["subject"] > 1.5 * width["image"]
