"""Paired tests: McNemar variants against the thesis and statsmodels / scipy; paired bootstrap differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, chi2
from statsmodels.stats.contingency_tables import mcnemar

from medsr.evaluation.metrics import bootstrap_weights
from medsr.evaluation.statistics import compare, contingency, holm, mcnemar_test, paired_rate_difference


def _table(a, b, c, d):
    return {"a": a, "b": b, "c": c, "d": d}


def test_thesis_table_4_4_uncorrected():
    test = mcnemar_test(_table(1212, 15, 40, 12), exact_below=25)
    assert test["chi2_uncorrected"]["statistic"] == pytest.approx(11.364, abs=5e-4)
    assert test["chi2_uncorrected"]["pvalue"] == pytest.approx(0.000749, abs=5e-7)
    assert test["primary"] == "chi2_corrected"
    assert test["chi2_corrected"]["statistic"] == pytest.approx((abs(15 - 40) - 1) ** 2 / 55)
    assert test["pvalue"] == test["chi2_corrected"]["pvalue"] > test["chi2_uncorrected"]["pvalue"]
    assert test["favours"] == "second"


@pytest.mark.parametrize("a, b, c, d", [(50, 30, 12, 8), (100, 40, 40, 3), (10, 25, 0, 1), (300, 7, 60, 2)])
def test_chi_square_variants_match_statsmodels_and_scipy(a, b, c, d):
    test = mcnemar_test(_table(a, b, c, d), exact_below=25)
    for name, correction in (("chi2_corrected", True), ("chi2_uncorrected", False)):
        reference = mcnemar([[a, b], [c, d]], exact=False, correction=correction)
        assert test[name]["statistic"] == pytest.approx(reference.statistic)
        assert test[name]["pvalue"] == pytest.approx(reference.pvalue)
        statistic = (abs(b - c) - (1 if correction else 0)) ** 2 / (b + c)
        assert test[name]["pvalue"] == pytest.approx(chi2.sf(statistic, df=1))
    assert "exact" not in test


@pytest.mark.parametrize("a, b, c, d", [(40, 3, 9, 2), (10, 0, 5, 0), (7, 1, 0, 1), (20, 12, 12, 0)])
def test_small_discordant_counts_use_the_exact_binomial_test(a, b, c, d):
    test = mcnemar_test(_table(a, b, c, d), exact_below=25)
    assert test["primary"] == "exact" and "chi2_corrected" not in test
    assert test["pvalue"] == pytest.approx(mcnemar([[a, b], [c, d]], exact=True).pvalue)
    assert test["pvalue"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue)


def test_no_discordant_pair_gives_p_one_even_with_exact_below_zero():
    for exact_below in (0, 25):
        test = mcnemar_test(_table(30, 0, 0, 4), exact_below=exact_below)
        assert test["primary"] == "exact" and test["pvalue"] == 1.0 and test["favours"] == "neither"


def test_contingency_uses_the_thesis_convention():
    first = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    second = np.array([1, 0, 0, 1, 0, 0], dtype=bool)
    assert contingency(first, second) == _table(1, 2, 1, 2)  # rows: first correct / wrong


def test_compare_restricts_the_fnr_test_to_unhealthy_images():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    first = np.array([1, 1, 0, 0, 1, 1, 1, 1, 1, 0])   # one false negative, two false positives
    second = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])  # three false negatives
    result = compare(labels, first, second, bootstrap_weights(10, 300, 0), 0.95, 25)
    assert result["table"] == _table(4, 3, 3, 0)
    assert result["unhealthy_only"]["table"] == _table(2, 3, 1, 0)
    assert result["fnr_difference"]["value"] == pytest.approx(1 / 6 - 3 / 6)


def test_paired_fnr_difference_interval():
    rng = np.random.default_rng(0)
    n = 400
    labels = np.repeat([0, 1], n // 2)
    second = np.where((labels == 1) & (rng.uniform(size=n) < 0.3), 0, labels)  # FNR about 0.3
    first = np.where((second == 0) & (labels == 1) & (rng.uniform(size=n) < 0.5), 1, second)  # fixes half
    weights = bootstrap_weights(n, 1000, 1)
    diff = paired_rate_difference(weights, labels, first, second, "fnr", 0.95)
    assert diff["ci_low"] <= diff["value"] <= diff["ci_high"] < 0
    same = paired_rate_difference(weights, labels, second, second, "fnr", 0.95)
    assert same == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    # pairing: the paired interval is narrower than differences of independently resampled sets
    other = bootstrap_weights(n, 1000, 2)
    from medsr.evaluation.metrics import bootstrap_rates
    unpaired = bootstrap_rates(weights, labels, first)["fnr"] - bootstrap_rates(other, labels, second)["fnr"]
    assert diff["ci_high"] - diff["ci_low"] < np.subtract(*np.percentile(unpaired, [97.5, 2.5]))


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []
