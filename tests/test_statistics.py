"""Paired tests: McNemar variants against the thesis and statsmodels / scipy; paired bootstrap differences;
DeLong's paired AUROC test against a brute-force computation and a hand-worked example; the val threshold; the
seed-level verdict tests against simulated nulls (with retraining variance) and real differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
from scipy.stats import binomtest, chi2, norm
from statsmodels.stats.contingency_tables import mcnemar

from medsr.evaluation.metrics import bootstrap_weights
from medsr.evaluation.operating_point import predict, val_threshold
from medsr.evaluation.statistics import (compare, contingency, crossed_t, delong_paired, holm, mcnemar_test,
                                          paired_rate_difference, seed_image_t, shared_threshold_variance,
                                          sign_flip_test, specificity_rank, two_level_bootstrap)


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
    assert holm([0.5, 0.01, 0.5]) == pytest.approx([1.0, 0.03, 1.0])  # capped at 1, ties keep their order
    assert holm([]) == []


def test_holm_agrees_with_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 17):
        p = rng.uniform(0, 0.2, m) ** 2
        assert holm(list(p)) == pytest.approx(list(multipletests(p, method="holm")[1]), rel=1e-12)


def _delong_brute_force(labels, first, second):
    """DeLong et al. (1988) from the definitions, loop by loop (no shared code with the implementation)."""
    pos = [i for i, y in enumerate(labels) if y == 1]
    neg = [j for j, y in enumerate(labels) if y == 0]

    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    comps = []
    for scores in (first, second):
        v10 = [sum(psi(scores[i], scores[j]) for j in neg) / len(neg) for i in pos]
        v01 = [sum(psi(scores[i], scores[j]) for i in pos) / len(pos) for j in neg]
        comps.append((v10, v01))
    auc = [sum(c[0]) / len(pos) for c in comps]

    def cov(a, b, mean_a, mean_b):
        return sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b)) / (len(a) - 1)

    s10 = [[cov(comps[r][0], comps[q][0], auc[r], auc[q]) for q in range(2)] for r in range(2)]
    s01 = [[cov(comps[r][1], comps[q][1], auc[r], auc[q]) for q in range(2)] for r in range(2)]
    var = (s10[0][0] + s10[1][1] - 2 * s10[0][1]) / len(pos) + (s01[0][0] + s01[1][1] - 2 * s01[0][1]) / len(neg)
    return auc[0] - auc[1], var


def test_delong_paired_matches_a_brute_force_computation_with_ties():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 60)
    first = np.round(rng.normal(labels * 1.2, 1.0), 1)  # rounding makes ties
    second = np.round(first + rng.normal(0, 0.8, 60), 1)  # correlated with the first: a paired design
    result = delong_paired(labels, first, second)
    difference, variance = _delong_brute_force(list(labels), list(first), list(second))
    assert result["difference"] == pytest.approx(difference)
    assert result["se"] == pytest.approx(np.sqrt(variance))
    z = difference / np.sqrt(variance)
    assert result["pvalue"] == pytest.approx(2 * norm.sf(abs(z)))
    assert 0 < result["pvalue"] < 1


def test_delong_small_known_example():
    """Three positives, two negatives, worked by hand: AUROC 1 vs 4/6.

    first: V10 = (1, 1, 1), V01 = (1, 1); second: V10 = (1, 1, 0), V01 = (2/3, 2/3) -> differences
    V10: (0, 0, 1), var 1/3; V01: (1/3, 1/3), var 0 -> Var = (1/3) / 3 = 1/9, z = (1/3) / (1/3) = 1.
    """
    labels = np.array([1, 1, 1, 0, 0])
    first = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    second = np.array([0.9, 0.8, 0.05, 0.2, 0.3])
    result = delong_paired(labels, first, second)
    assert result["difference"] == pytest.approx(1 - 4 / 6)
    assert result["se"] == pytest.approx(1 / 3)
    assert result["z"] == pytest.approx(1.0)
    assert result["pvalue"] == pytest.approx(0.3173, abs=1e-4)


def test_delong_identical_scores_is_p_one():
    labels = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.4, 0.3, 0.5, 0.8, 0.1])
    assert delong_paired(labels, scores, scores)["pvalue"] == 1.0


def test_val_threshold_reaches_the_specificity_and_is_the_smallest():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [40, 25])
    scores = np.concatenate([rng.uniform(0, 0.6, 40), rng.uniform(0.3, 1, 25)])
    point = val_threshold(labels, scores, 0.95, "test")
    calls = predict(scores, point.threshold)
    assert np.mean(calls[labels == 0] == 0) >= 0.95
    assert point.val_specificity == pytest.approx(np.mean(calls[labels == 0] == 0))
    assert point.val_sensitivity == pytest.approx(np.mean(calls[labels == 1] == 1))
    # any lower healthy score as threshold falls below the target specificity
    lower = np.sort(scores[labels == 0])
    lower = lower[lower < point.threshold]
    assert np.mean(predict(scores, lower[-1])[labels == 0] == 0) < 0.95
    assert point.threshold == pytest.approx(np.sort(scores[labels == 0])[37])  # ceil(0.95 * 40) = 38th


def test_val_threshold_with_ties_calls_every_tied_healthy_image_healthy():
    labels = np.array([0] * 10 + [1] * 4)
    scores = np.array([0.1] * 5 + [0.4] * 5 + [0.4, 0.4, 0.9, 0.2])
    point = val_threshold(labels, scores, 0.6, "test")  # 6th healthy score is 0.4, tied with four more
    assert point.threshold == 0.4
    assert point.val_specificity == 1.0  # all tied healthy images fall at or below the threshold
    assert point.val_sensitivity == pytest.approx(1 / 4)  # tied unhealthy ones (0.4) are called healthy too


def test_val_threshold_exact_multiples_and_no_healthy_image():
    labels = np.array([0] * 20 + [1])
    scores = np.concatenate([np.arange(20) / 20, [0.99]])
    assert val_threshold(labels, scores, 0.95, "x").threshold == pytest.approx(18 / 20)  # 19th, not 20th
    with pytest.raises(Exception, match="preds.csv: no healthy val image"):
        val_threshold(np.array([1, 1]), np.array([0.2, 0.3]), 0.95, "preds.csv")


@pytest.mark.parametrize("b, c", [(0, 0), (1, 0), (3, 3), (10, 0), (16, 4), (12, 24), (40, 15), (2, 30)])
def test_sign_flip_test_of_one_replicate_is_the_exact_mcnemar_test(b, c):
    first = np.array([[0] * b + [1] * c + [0] * 7 + [1] * 4])  # misses; 11 concordant images carry nothing
    second = np.array([[1] * b + [0] * c + [0] * 7 + [1] * 4])
    result = sign_flip_test(first, second)
    expected = mcnemar([[0, b], [c, 0]], exact=True).pvalue
    assert result["pvalue"] == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert result["informative_images"] == b + c and result["statistic"] == c - b


def test_sign_flip_test_equals_full_enumeration_and_is_symmetric():
    rng = np.random.default_rng(3)
    first, second = rng.random((3, 12)) < 0.6, rng.random((3, 12)) < 0.3  # 3 replicates x 12 images
    k = first.astype(int).sum(0) - second.astype(int).sum(0)
    signs = np.array(list(itertools.product((-1, 1), repeat=12)))
    enumerated = np.mean(np.abs(signs @ np.abs(k)) >= abs(k.sum()))
    result = sign_flip_test(first, second)
    assert result["pvalue"] == pytest.approx(enumerated, rel=1e-12)
    swapped = sign_flip_test(second, first)
    assert swapped["pvalue"] == result["pvalue"] and swapped["statistic"] == -result["statistic"]
    assert result["favours"] == "second" and swapped["favours"] == "first"  # first misses more


def test_sign_flip_test_refuses_arrays_of_different_shapes():
    with pytest.raises(ValueError, match="replicates x images"):
        sign_flip_test(np.zeros((2, 5)), np.zeros((3, 5)))


# --- verdict tests with the training run as the unit of replication -----------------------

def _simulate(rng, seeds, healthy, unhealthy, shift=0.0, seed_sd=0.6):
    """Scores of two arms (2 x seeds x images): healthy val ~ N(0, 1); unhealthy test = 1.5 + image difficulty
    (shared by every seed and arm) + the trained classifier's own offset (one per arm and seed: retraining
    variance) + noise; the second arm's unhealthy scores moved by `shift` (0: the null holds)."""
    image = rng.normal(0, 1, unhealthy)
    val = rng.normal(0, 1, (2, seeds, healthy))
    test = 1.5 + image + rng.normal(0, seed_sd, (2, seeds, 1)) + rng.normal(0, 0.7, (2, seeds, unhealthy))
    test[1] += shift
    return val, test


def _misses(val, test, specificity):
    """Misses at each (arm, seed)'s own val threshold, by operating_point.val_threshold itself."""
    out = np.zeros(test.shape, dtype=np.int64)
    for arm in range(2):
        for s in range(test.shape[1]):
            labels = np.r_[np.zeros(val.shape[2]), np.ones(test.shape[2])]
            point = val_threshold(labels, np.r_[val[arm, s], test[arm, s]], specificity, "sim")
            out[arm, s] = predict(test[arm, s], point.threshold) == 0
    return out


def test_under_a_null_with_seed_variance_the_seed_level_tests_hold_alpha_and_the_pooled_test_does_not():
    """300 simulated experiments where the two arms are exchangeable but each trained classifier has its own
    sensitivity: a test treating the classifiers as fixed rejects far more often than alpha."""
    rng = np.random.default_rng(1)
    rejected = {"t": 0, "bootstrap": 0, "pooled": 0}
    draws = 300
    for _ in range(draws):
        val, test = _simulate(rng, 5, 60, 60)
        m = _misses(val, test, 0.9)
        rejected["t"] += seed_image_t(m[0], m[1])["pvalue"] < 0.05
        rejected["pooled"] += sign_flip_test(m[0], m[1])["pvalue"] < 0.05
        rejected["bootstrap"] += two_level_bootstrap(val, test, 0.9, resamples=400, seed=0)["pvalue"] < 0.05
    rates = {k: v / draws for k, v in rejected.items()}
    upper = 0.05 + 2.6 * np.sqrt(0.05 * 0.95 / draws)  # alpha + the binomial sampling error of 300 draws
    assert rates["t"] <= upper and rates["bootstrap"] <= upper
    assert rates["pooled"] > 0.3


def test_the_p_values_of_the_seed_level_t_test_are_roughly_uniform_under_the_null():
    rng = np.random.default_rng(2)
    p = []
    for _ in range(300):
        val, test = _simulate(rng, 8, 80, 80)
        m = _misses(val, test, 0.9)
        p.append(seed_image_t(m[0], m[1])["pvalue"])
    deciles = np.histogram(p, bins=5, range=(0, 1))[0] / len(p)
    assert np.all(deciles > 0.1) and np.all(deciles < 0.32)  # 0.2 each, conservative at most mildly


def test_a_real_difference_gives_small_p_values():
    rng = np.random.default_rng(3)
    val, test = _simulate(rng, 8, 100, 150, shift=-1.5, seed_sd=0.3)  # the second arm misses far more
    m = _misses(val, test, 0.9)
    t, boot = seed_image_t(m[0], m[1]), two_level_bootstrap(val, test, 0.9, resamples=1000, seed=0)
    assert t["pvalue"] < 1e-3 and t["favours"] == "first" and t["difference"] < 0
    assert boot["pvalue"] == pytest.approx(2 / 1001) and boot["favours"] == "first"
    assert boot["difference"] == pytest.approx(m[0].mean() - m[1].mean())  # the threshold rule of val_threshold
    assert boot["interval"][1] < 0


def test_seed_image_t_by_hand():
    first = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])
    second = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    k = first - second
    d, kbar = k.mean(axis=1), k.mean(axis=0)  # [0.5, 0, 0.5], [2/3, 1/3, 1/3, 0]
    se = np.sqrt(np.var(d, ddof=1) / 3 + np.var(kbar, ddof=1) / 4)
    out = seed_image_t(first, second)
    assert out["difference"] == pytest.approx(1 / 3) and out["se"] == pytest.approx(se) and out["df"] == 2
    assert out["pvalue"] == pytest.approx(2 * scipy.stats.t.sf((1 / 3) / se, 2))
    assert out["favours"] == "second"


def test_one_seed_is_not_testable_and_zero_variance_is_handled():
    one = seed_image_t(np.array([[1, 1, 0]]), np.array([[0, 0, 0]]))
    assert one["pvalue"] == 1.0 and not one["testable"] and "one training seed" in one["reason"]
    boot = two_level_bootstrap(np.zeros((2, 1, 5)), np.ones((2, 1, 4)), 0.8)
    assert boot["pvalue"] == 1.0 and not boot["testable"]
    same = seed_image_t(np.ones((3, 4)), np.ones((3, 4)))
    assert same["pvalue"] == 1.0 and same["difference"] == 0
    apart = seed_image_t(np.ones((3, 4)), np.zeros((3, 4)))  # every seed and image: first misses, second does not
    assert apart["pvalue"] == 0.25 and apart["favours"] == "second"  # exact sign flips of 3 seed differences
    with pytest.raises(ValueError):
        seed_image_t(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError):
        two_level_bootstrap(np.zeros((2, 3, 5)), np.ones((2, 2, 4)), 0.8)


def test_two_level_bootstrap_is_seeded_and_takes_sampling_seed_replicates():
    rng = np.random.default_rng(4)
    val, test = _simulate(rng, 4, 40, 30, shift=-0.3)
    a, b = (two_level_bootstrap(val, test, 0.9, resamples=300, seed=7) for _ in range(2))
    assert a == b
    assert two_level_bootstrap(val, test, 0.9, resamples=300, seed=8)["interval"] != a["interval"]
    # one replicate per seed given as seeds x 1 x images: the same resamples, the same answer
    c = two_level_bootstrap(val[:, :, None, :], test[:, :, None, :], 0.9, resamples=300, seed=7)
    assert c["pvalue"] == a["pvalue"] and c["difference"] == a["difference"]


# --- the crossed seeds x images t test ------------------------------------------------------------------------

def _variance_ratio(estimated_variances, means) -> tuple[float, float]:
    """mean(estimated SE^2) / the empirical variance of the means over N simulated data sets, and the tolerance on
    it: three standard errors of that ratio from the N draws themselves (the empirical variance's relative standard
    error sqrt(2 / (N - 1)), normal theory, and the mean estimate's, CV(SE^2) / sqrt(N), combined)."""
    estimated = np.asarray(estimated_variances)
    ratio = float(estimated.mean() / np.var(means, ddof=1))
    cv = estimated.std(ddof=1) / estimated.mean()
    return ratio, float(3 * np.sqrt(2 / (len(means) - 1) + cv ** 2 / len(means)))


def _null_interval(draws: int, alpha: float = 0.05) -> tuple[float, float]:
    """The central 95 % binomial interval of the number of rejections at `alpha` of a calibrated test."""
    low, high = scipy.stats.binom.interval(0.95, draws, alpha)
    return low, high


@pytest.mark.parametrize("seed_sd, image_sd", [(0.02, 0.3), (0.08, 0.1)])
def test_crossed_t_standard_error_and_size_on_a_simulated_crossed_design(seed_sd, image_sd):
    """d_si = a_s + b_i + e_si with known variances (seed, image, residual 0.4^2), 5 seeds x 200 images, 4000 data
    sets (a few hundred leave the seed-dominated design's empirical variance too noisy to judge a 10 % bias): the
    standard error matches the spread of the mean difference and the known variance, and the test rejects the true
    null at alpha 0.05 as often as a calibrated test may; seed_image_t (the interaction counted twice, S - 1 df)
    less often than that."""
    rng = np.random.default_rng(21)
    seeds, images, draws = 5, 200, 4000
    means, variances, rejected, rejected_seed_image_t = [], [], 0, 0
    for _ in range(draws):
        d = rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, image_sd, (1, images)) + rng.normal(0, 0.4,
                                                                                                    (seeds, images))
        out = crossed_t(d)
        means.append(out["difference"]), variances.append(out["se"] ** 2)
        rejected += out["pvalue"] < 0.05
        rejected_seed_image_t += seed_image_t(d, np.zeros_like(d))["pvalue"] < 0.05
    ratio, tolerance = _variance_ratio(variances, means)
    true = seed_sd ** 2 / seeds + image_sd ** 2 / images + 0.4 ** 2 / (seeds * images)  # Var(dbar) of the design
    assert abs(ratio - 1) < tolerance
    variances = np.array(variances)  # unbiased: within three standard errors of its mean of the known variance
    assert abs(variances.mean() / true - 1) < 3 * variances.std(ddof=1) / variances.mean() / np.sqrt(draws)
    low, high = _null_interval(draws)
    assert low <= rejected <= high and rejected_seed_image_t < low


def _shared_val_experiment(rng, seeds=5, images=200, healthy=100, specificity=0.95, seed_sd=0.1, version_sd=0.5,
                           noise=0.3):
    """Scores of two exchangeable arms (2 x seeds x images) whose every seed's threshold comes from one val set:
    healthy val = the image (shared by seeds and arms) + the arm's version of it + the classifier's noise; unhealthy
    test = 1.5 + the image + its arm version + the classifier's (arm, seed) offset + noise. Misses at each (arm,
    seed)'s own threshold (the rule of `val_threshold`)."""
    val = (rng.normal(0, 1, healthy) + rng.normal(0, version_sd, (2, 1, healthy))
           + rng.normal(0, noise, (2, seeds, healthy)))
    test = (1.5 + rng.normal(0, 1, images) + rng.normal(0, version_sd, (2, 1, images))
            + rng.normal(0, seed_sd, (2, seeds, 1)) + rng.normal(0, noise, (2, seeds, images)))
    threshold = np.sort(val, axis=2)[:, :, specificity_rank(healthy, specificity) - 1]
    return val, test, (test <= threshold[..., None]).astype(np.float64)


def test_crossed_t_with_the_shared_val_threshold_noise_is_calibrated_and_without_it_is_not():
    """400 experiments, a new val set each: the seeds' shared val set moves every threshold together, which the
    seeds' spread never shows; with `shared_threshold_variance` added the standard error matches the spread of the
    mean difference and the size is alpha's, without it the standard error is far too small."""
    rng = np.random.default_rng(22)
    draws = 400
    means, with_val, without_val, rejected = [], [], [], 0
    for _ in range(draws):
        val, test, misses = _shared_val_experiment(rng)
        shared = shared_threshold_variance(val, test, 0.95, resamples=200, seed=0)
        out, alone = crossed_t(misses[0] - misses[1], shared, val.shape[2]), crossed_t(misses[0] - misses[1])
        means.append(out["difference"]), with_val.append(out["se"] ** 2), without_val.append(alone["se"] ** 2)
        rejected += out["pvalue"] < 0.05
        assert out["threshold_variance"] == shared >= 0
    ratio, tolerance = _variance_ratio(with_val, means)
    assert abs(ratio - 1) < tolerance
    assert _variance_ratio(without_val, means)[0] < 1 - 2 * tolerance
    low, high = _null_interval(draws)
    assert low <= rejected <= high


def test_crossed_t_mean_squares_match_statsmodels_anova_and_the_satterthwaite_formula():
    import pandas as pd
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(23)
    d = rng.normal(0, 0.1, (4, 1)) + rng.integers(-1, 2, (4, 30)) * 0.5
    frame = pd.DataFrame({"d": d.ravel(), "seed": np.repeat(np.arange(4), 30), "image": np.tile(np.arange(30), 4)})
    table = anova_lm(ols("d ~ C(seed) + C(image)", frame).fit())
    out = crossed_t(d, threshold_variance=2e-4, healthy_val_images=51)
    assert out["ms_seed"] == pytest.approx(table.loc["C(seed)", "mean_sq"])
    assert out["ms_image"] == pytest.approx(table.loc["C(image)", "mean_sq"])
    assert out["ms_resid"] == pytest.approx(table.loc["Residual", "mean_sq"])
    terms = np.array([out["ms_seed"], out["ms_image"], -out["ms_resid"]]) / d.size
    variance = terms.sum() + 2e-4
    df = variance ** 2 / (np.sum(terms ** 2 / np.array([3, 29, 87])) + 2e-4 ** 2 / 50)
    assert out["se"] == pytest.approx(np.sqrt(variance)) and out["df"] == pytest.approx(df)
    assert out["pvalue"] == pytest.approx(2 * scipy.stats.t.sf(abs(d.mean()) / np.sqrt(variance), df))


def test_crossed_t_guards():
    one_seed = crossed_t(np.ones((1, 5)))
    assert one_seed["pvalue"] == 1.0 and not one_seed["testable"] and "one training seed" in one_seed["reason"]
    one_image = crossed_t(np.array([[1.0], [0.0], [1.0]]))
    assert one_image["pvalue"] == 1.0 and not one_image["testable"]
    assert "one unhealthy test image" in one_image["reason"]
    same = crossed_t(np.zeros((3, 4)))
    assert same["pvalue"] == 1.0 and same["se"] == 0.0 and same["favours"] == "neither"
    apart = crossed_t(np.ones((3, 4)))  # every seed and image: the first arm misses, the second does not
    assert apart["pvalue"] == 0.25 and apart["favours"] == "second"  # exact sign flips of 3 seed differences
    residual_only = crossed_t(np.array([[1.0, -1.0], [-1.0, 1.0]]))  # MS_seed = MS_image = 0 < MS_resid
    assert residual_only["se"] == pytest.approx(np.sqrt(residual_only["ms_resid"] / 4)) and residual_only["df"] == 1
    with pytest.raises(ValueError, match="seeds x images"):
        crossed_t(np.ones(4))


def test_shared_threshold_variance_is_seeded_needs_two_seeds_and_sees_only_what_the_seeds_share():
    rng = np.random.default_rng(24)
    val, test, _ = _shared_val_experiment(rng, seeds=4, images=60, healthy=40)
    a, b = (shared_threshold_variance(val, test, 0.9, resamples=300, seed=3) for _ in range(2))
    assert a == b > 0  # the same computation twice on one machine
    assert shared_threshold_variance(val[:, :1], test[:, :1], 0.9) == 0.0
    # each seed with a val set of its own (independent draws, nothing shared): the shared part is about zero, far
    # below the same scores' shared part when every seed reads one val set
    own = val.copy()
    own[:, 1:] = rng.normal(0, 1.2, own[:, 1:].shape)
    assert shared_threshold_variance(own, test, 0.9, resamples=300, seed=3) < a / 4


# --- what a verdict's test can detect, and equivalence (medsr.evaluation.power) ---------------------------------

@pytest.mark.parametrize("se, df, alpha", [(0.02, 4, 0.025), (0.035, 7.3, 0.05), (0.01, np.inf, 0.025)])
def test_an_effect_of_the_minimum_detectable_size_is_detected_four_times_in_five(se, df, alpha):
    """The t test of the verdict, simulated: difference ~ N(mde, se^2), its standard error estimated with df degrees
    of freedom (se^2 chi2_df / df; known for df = inf); rejections at two-sided level alpha: 80 % within Monte Carlo
    error (sd 0.003). The textbook (t_{1-alpha/2} + t_{0.8}) se would give about 0.77 at 4 df and alpha 0.025."""
    from medsr.evaluation.power import POWER, minimum_detectable_effect, power

    mde = minimum_detectable_effect(se, df, alpha)
    assert power(mde, se, df, alpha) == pytest.approx(POWER, abs=1e-6)
    rng = np.random.default_rng(7)
    n = 20000
    difference = rng.normal(mde, se, n)
    estimated = se * np.sqrt(rng.chisquare(df, n) / df) if np.isfinite(df) else np.full(n, se)
    rejected = np.abs(difference / estimated) > scipy.stats.t.ppf(1 - alpha / 2, df)
    assert abs(rejected.mean() - POWER) <= 0.03
    half = np.abs(rng.normal(mde / 2, se, n) / estimated) > scipy.stats.t.ppf(1 - alpha / 2, df)
    assert half.mean() < 0.5  # half the effect: detected far less often
    assert minimum_detectable_effect(se, df, alpha / 2) > mde  # a stricter Holm step needs a larger effect
    assert minimum_detectable_effect(0.0, df, alpha) is None and minimum_detectable_effect(se, 0, alpha) is None


def test_two_one_sided_tests_are_the_interval_inside_the_margin_and_hold_their_level_at_the_margin():
    from medsr.evaluation.power import tost

    rng = np.random.default_rng(11)
    for d, se, df in zip(rng.uniform(-0.1, 0.1, 200), rng.uniform(0.005, 0.05, 200), rng.uniform(2, 60, 200)):
        out = tost(d, se, df, 0.05, 0.05)
        low, high = out["interval"]
        assert out["equivalent"] == (-0.05 < low and high < 0.05)  # Schuirmann: the 90 % interval inside +-margin
        assert high - d == pytest.approx(scipy.stats.t.ppf(0.95, df) * se)
    # a true difference on the margin: "equivalent" in at most alpha of runs (about alpha when se << margin)
    se, df, n = 0.005, 9, 5000
    difference = rng.normal(0.05, se, n)
    estimated = se * np.sqrt(rng.chisquare(df, n) / df)
    rate = np.mean([tost(d, s, df, 0.05, 0.05)["equivalent"] for d, s in zip(difference, estimated)])
    assert abs(rate - 0.05) <= 0.01  # binomial sd 0.003
    assert tost(0.0, 0.0, 4, 0.05, 0.05) is None  # no standard error: no equivalence test
    assert tost(0.0, 0.01, 4, 0.05, 0.05)["pvalue"] == pytest.approx(scipy.stats.t.sf(5.0, 4))
