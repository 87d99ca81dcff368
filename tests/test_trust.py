"""The trust audit's statistics (medsr.evaluation.trust) on synthetic data where the truth is known, and the
rule that the swapped guidance mode is always flagged as leaking the label."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medsr.core.parameters import GUIDANCE_MODES, LEAKING_GUIDANCE
from medsr.evaluation import trust
from medsr.data.image_sets import build


def gaussian_posteriors(rng, images: int, pixels: int = 64, samples: int = 8):
    """Truth y ~ N(mu, sigma^2) per pixel and N posterior samples from the same Gaussian: known calibration."""
    mu = rng.uniform(0.2, 0.8, (images, pixels))
    sigma = rng.uniform(0.02, 0.1, (images, pixels))
    truth = mu + sigma * rng.standard_normal((images, pixels))
    draws = mu[:, None] + sigma[:, None] * rng.standard_normal((images, samples, pixels))
    return truth, draws.mean(axis=1), draws.std(axis=1)


def test_rcps_reaches_its_risk_bound_on_gaussian_posteriors():
    alpha, delta, n = 0.2, 0.1, 200
    slack = math.sqrt(math.log(1 / delta) / (2 * n))
    rng = np.random.default_rng(0)
    test = gaussian_posteriors(rng, 2000)
    risks = []
    for _ in range(20):  # 20 independent val draws
        lam = trust.rcps_lambda(trust.miss_rates(*gaussian_posteriors(rng, n), trust.LAMBDA_GRID), trust.LAMBDA_GRID,
                                alpha, delta)
        assert lam is not None
        risks.append(trust.interval_report(*test, lam, 0.05)["realised_risk"])
    risks = np.array(risks)
    # the guarantee: risk <= alpha with probability >= 1 - delta (Hoeffding is conservative: here always)
    assert np.mean(risks > alpha) <= delta
    # and not vacuous: within the Hoeffding slack (plus grid and sampling error) of alpha
    assert risks.min() > alpha - slack - 0.03


def test_rcps_miss_rates_count_pixels_outside_the_interval():
    truth = np.array([[0.5, 0.6, 0.9, 0.4]])
    mean = np.array([[0.5, 0.5, 0.5, 0.4]])
    std = np.array([[0.0, 0.1, 0.1, 0.0]])
    # errors / sigma: 0 (sigma 0, exact), 1, 4, 0 (sigma 0, exact)
    rates = trust.miss_rates(truth, mean, std, np.array([0.0, 0.5, 1.0, 3.9, 4.0]))[0]
    np.testing.assert_allclose(rates, [0.5, 0.5, 0.25, 0.25, 0.0])


def test_rcps_sigma_is_floored_at_one_grey_level():
    """Samples that all agree (std 0, e.g. clipped to black) still get an interval lambda grey levels wide: an
    error of 0.1 = 25.5 grey levels is outside up to lambda 25.5 and inside above; one grey level off is inside
    from lambda 1 on (tolerances: the ratio is one float64 division)."""
    one = np.array([[0.0]])
    rates = trust.miss_rates(np.array([[0.6]]), np.array([[0.5]]), one, np.array([20.0, 25.0, 26.0]))[0]
    np.testing.assert_array_equal(rates, [1.0, 1.0, 0.0])
    rates = trust.miss_rates(np.array([[trust.GREY_LEVEL]]), one, one, np.array([0.5, 1.001]))[0]
    np.testing.assert_array_equal(rates, [1.0, 0.0])
    assert trust.interval_report(np.array([[0.5]]), np.array([[0.5]]), one, 3.0, 0.05)["mean_width"] == \
        pytest.approx(6.0 / 255.0)


def test_rcps_refuses_when_val_is_too_small_for_alpha_and_delta():
    rng = np.random.default_rng(1)
    losses = trust.miss_rates(*gaussian_posteriors(rng, 4), trust.LAMBDA_GRID)
    # 4 images: Hoeffding slack sqrt(log(10) / 8) = 0.54 > alpha 0.2 whatever lambda
    assert trust.rcps_lambda(losses, trust.LAMBDA_GRID, 0.2, 0.1) is None


def test_interval_report_ranks_width_with_error_when_sigma_is_informative():
    rng = np.random.default_rng(2)
    truth, mean, std = gaussian_posteriors(rng, 50, samples=32)
    report = trust.interval_report(truth, mean, std, 2.0, 0.08)
    assert report["spearman_width_error"] > 0.2
    assert report["std_auroc_wrong_pixels"] > 0.7
    assert report["mean_width"] == pytest.approx(float(np.mean(4.0 * std)))


def test_crc_meets_its_fnr_bound_in_expectation_over_repeated_splits():
    alpha, n = 0.1, 50
    rng = np.random.default_rng(3)
    pool = rng.beta(5, 2, 300)  # the unhealthy scores of a synthetic classifier
    fnrs = []
    for _ in range(3000):
        order = rng.permutation(len(pool))
        t, feasible = trust.crc_threshold(pool[order[:n]], alpha)
        assert feasible
        fnrs.append(trust.crc_loss(pool[order[n:]], t))
    mean, se = np.mean(fnrs), np.std(fnrs) / math.sqrt(len(fnrs))
    exact = (math.floor(alpha * (n + 1) - 1) + 1) / (n + 1)  # 5/51: a new point's rank is uniform on n + 1
    assert mean <= alpha + 3 * se
    assert abs(mean - exact) < 3 * se
    assert exact > alpha - 1 / (n + 1)  # tight: CRC's lower bound alpha - 2 / (n + 1) holds


def test_crc_threshold_is_the_largest_admissible_and_infeasible_calls_everyone():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])  # n = 9
    t, feasible = trust.crc_threshold(scores, 0.3)  # k = floor(0.3 * 10 - 1) = 2 misses allowed
    assert feasible and 0.2 < t < 0.3 and trust.crc_loss(scores, t) == pytest.approx(2 / 9)
    # (n / (n + 1)) * loss + 1 / (n + 1) <= alpha holds at t and fails just above s_(k+1)
    assert 9 / 10 * trust.crc_loss(scores, t) + 1 / 10 <= 0.3 < 9 / 10 * trust.crc_loss(scores, 0.3) + 1 / 10
    t, feasible = trust.crc_threshold(scores, 0.05)  # 1 / (n + 1) = 0.1 > alpha: no threshold can promise it
    assert not feasible and trust.crc_loss(scores, t) == 0.0


def test_decision_stability_on_made_up_predictions():
    sample_calls = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    main_calls = np.array([1, 0, 1, 0, 0, 1])
    labels = np.array([1, 1, 1, 1, 0, 0])
    out = trust.stability(sample_calls, main_calls, labels)
    assert out["unstable"] == 2 and out["unstable_share"] == pytest.approx(2 / 6)
    assert out["unhealthy_share_per_image"] == [1.0, 0.0, 0.75, 0.25, 0.0, 1.0]
    assert out["false_negatives"] == 2  # images 1 and 3
    assert out["false_negatives_caught"] == 1  # image 3 is unstable, image 1 stable
    assert out["fnr_stable"] == pytest.approx(1 / 2)  # unhealthy stable: images 0 and 1
    assert out["fnr_unstable"] == pytest.approx(1 / 2)  # unhealthy unstable: images 2 and 3


def test_label_injection_rate_on_made_up_predictions():
    injected = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    swapped_calls = np.array([1, 1, 1, 0, 0, 1, 0, 0])  # 6 of 8 follow the injected class
    null_calls = np.array([0, 0, 1, 1, 1, 1, 0, 1])  # 1 of 8 matches it by itself
    out = trust.label_injection(swapped_calls, null_calls, injected, 0.95)
    assert out["swapped"]["follows"] == 6 and out["swapped"]["rate"] == 0.75
    assert out["null"]["follows"] == 1 and out["difference"] == pytest.approx(0.625)
    low, high = out["swapped"]["interval"]
    assert 0 < low < 0.75 < high < 1


def test_clopper_pearson_matches_closed_forms():
    # k = 0: upper = 1 - (alpha/2)^(1/n); k = n: lower = (alpha/2)^(1/n)
    assert trust.clopper_pearson(0, 10, 0.95) == (0.0, pytest.approx(1 - 0.025 ** 0.1))
    assert trust.clopper_pearson(10, 10, 0.95) == (pytest.approx(0.025 ** 0.1), 1.0)
    assert trust.clopper_pearson(0, 0, 0.95) == (None, None)


def test_swapped_guidance_is_always_flagged_as_leaking_the_label(tmp_path):
    assert "swapped" in GUIDANCE_MODES and set(LEAKING_GUIDANCE) == {"oracle", "swapped"}
    sets = build(hr=tmp_path, bicubic=tmp_path, regression=tmp_path, sr=tmp_path, guidance=GUIDANCE_MODES,
                 sampling_seeds=[0, 1], external={})
    for image_set in sets:
        if image_set.kind == "sr":
            assert image_set.leaks_label == (image_set.guidance in ("oracle", "swapped"))
            assert ("LEAKS THE LABEL" in image_set.title) == image_set.leaks_label
    # the headline metrics prefix every leaking arm (the ORACLE_ prefix of medsr.report.headline)
    from medsr.report.headline import _key
    assert _key("sr_swapped@hr", True).startswith("ORACLE_")
