"""benchmarks/swap_null.py on synthetic predictions of known structure: the per-image swap null is exchangeable (the
arms' roles flip under relabelling), a planted effect moves the FNR difference by about the planted amount, the
registry's seed-level tests are the ones run, and the table renders."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from swap_null import (NULLS, PLANTED, misses, plant, q2_arm_swap, run, seed_tests, specificity_scale,  # noqa: E402
                       swap, verdict_pvalues)

from medsr.core.config import load_params  # noqa: E402
from medsr.evaluation.verdicts import VERDICT_TESTS, SeedImageT  # noqa: E402
from medsr.report.benchmark_tables import TABLES  # noqa: E402

EVALUATE = dataclasses.replace(load_params([ROOT / "params.yaml"]).evaluate, bootstrap=100)


def _synthetic(seeds: int = 4, healthy: int = 100, unhealthy: int = 100, seed: int = 0):
    """labels and arm -> seeds x images scores: healthy N(0, 1), unhealthy N(mu_arm, 1) (an image effect shared by
    seeds plus seed noise); HR's unhealthy images score 10 (never missed); the bicubic classifier on another scale."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(healthy, int), np.ones(unhealthy, int)]
    image = rng.normal(0, 0.7, labels.size)

    def arm(mu: float) -> np.ndarray:
        return image + rng.normal(0, 0.7, (seeds, labels.size)) + mu * labels

    hr = arm(0.0)
    hr[:, labels == 1] = 10.0
    scores = {"sr@hr": arm(1.3), "regression@hr": arm(1.1), "bicubic@hr": arm(1.0), "hr@hr": hr,
              "bicubic@bicubic": 1 / (1 + np.exp(-3 * arm(1.6)))}
    return labels, scores


def _halves(labels: np.ndarray, seed: int = 1):
    healthy = np.flatnonzero(labels == 0)
    return np.sort(np.random.default_rng(seed).permutation(healthy)[: healthy.size // 2]), np.flatnonzero(labels == 1)


def test_the_swap_flips_the_arms_roles_under_relabelling():
    labels, scores = _synthetic()
    first, second = scores["sr@hr"], scores["bicubic@hr"]
    coins = np.random.default_rng(2).random(labels.size) < 0.5
    a, b = swap(first, second, coins)
    relabelled = swap(second, first, coins)
    complement = swap(first, second, ~coins)
    for x, y in ((a, relabelled[1]), (b, relabelled[0]), (a, complement[1]), (b, complement[0])):
        np.testing.assert_array_equal(x, y)  # a selection of the same numbers, no arithmetic
    threshold, unhealthy = _halves(labels)
    p, d = verdict_pvalues(a, b, threshold, unhealthy, EVALUATE, seed_tests())
    q, e = verdict_pvalues(b, a, threshold, unhealthy, EVALUATE, seed_tests())
    assert set(p) == set(q) and all(p[t] == pytest.approx(q[t], abs=1e-6) for t in p)
    np.testing.assert_allclose(d, -e)


def test_the_swap_null_has_no_effect_where_the_real_comparison_has_one():
    labels, scores = _synthetic()
    first, second = scores["sr@hr"], scores["hr@hr"]  # a huge real difference: HR never misses
    threshold, unhealthy = _halves(labels)
    real = misses(first, second, threshold, unhealthy, 0.95)
    assert float(np.mean(real[0] - real[1])) > 0.3
    rng = np.random.default_rng(3)
    swapped = [np.mean(np.subtract(*misses(*swap(first, second, rng.random(labels.size) < 0.5), threshold, unhealthy,
                                             0.95))) for _ in range(300)]
    assert abs(np.mean(swapped)) < 0.02  # zero by construction; the average of 300 coins lies close to it


def test_the_specificity_scale_keeps_each_pipelines_own_decisions():
    labels, scores = _synthetic()
    threshold, unhealthy = _halves(labels)
    raw = misses(scores["sr@hr"], scores["bicubic@bicubic"], threshold, unhealthy, 0.95)
    scaled = misses(specificity_scale(scores["sr@hr"], threshold), specificity_scale(scores["bicubic@bicubic"],
                                                                                     threshold), threshold,
                    unhealthy, 0.95)
    np.testing.assert_array_equal(raw[0], scaled[0])
    np.testing.assert_array_equal(raw[1], scaled[1])


def test_a_planted_effect_lowers_arm_as_fnr_by_the_planted_share_of_its_misses():
    labels, scores = _synthetic()
    threshold, unhealthy = _halves(labels)
    a, b = swap(scores["sr@hr"], scores["bicubic@hr"], np.random.default_rng(4).random(labels.size) < 0.5)
    base = misses(a, b, threshold, unhealthy, 0.95)
    fnr_a = float(base[0].mean())
    rng = np.random.default_rng(5)
    for f in (0.1, 0.3):
        shifts = []
        for _ in range(300):
            planted = plant(a, scores["hr@hr"], unhealthy, rng.random(labels.size), f)
            m = misses(planted, b, threshold, unhealthy, 0.95)
            np.testing.assert_array_equal(m[1], base[1])  # arm B and every threshold untouched
            shifts.append(float(np.mean(m[0] - m[1]) - np.mean(base[0] - base[1])))
        assert np.mean(shifts) == pytest.approx(-f * fnr_a, abs=0.015)


def test_a_new_seed_level_test_class_is_picked_up_from_the_registry():
    class Scratch(SeedImageT):
        name = "scratch_swap_null"

    try:
        assert Scratch in seed_tests() and SeedImageT in seed_tests()
        assert all(cls.seed_unit for cls in seed_tests())
    finally:
        VERDICT_TESTS.pop("scratch_swap_null")


def test_the_run_and_its_table():
    labels, scores = _synthetic(seeds=3, healthy=60, unhealthy=60)
    result = run(labels, scores, EVALUATE, replicates=12, power_replicates=8, designs=[(3, 60), (2, 30)],
                 fractions=(0.1, 0.3), seed=0)
    result["q2_arm_swap"] = q2_arm_swap(labels, scores, EVALUATE, splits=1, seed=0)
    assert set(result["nulls"]) == set(NULLS) and set(result["power"]) == set(PLANTED)
    for null in result["nulls"].values():
        assert null["replicates"] == 12 and 0 <= null["discordant_misses"] <= 1
        assert 0.8 < null["held_out_specificity"] <= 1  # the threshold half's 0.95, on the other healthy half
        assert set(null["tests"]) == {t.name for t in seed_tests()}
    assert result["q2_arm_swap"]["patterns"] == 8 and result["q2_arm_swap"]["floor"] == 0.25
    for rows in result["power"].values():
        for row in rows:
            low, high = row["difference"]
            assert high < low < 0  # a larger planted share, a larger FNR drop of arm A
            assert high == pytest.approx(-0.3 * 0.75, abs=0.12)  # about f x arm A's FNR (about 0.6-0.9 here)
    data = {**result, "alpha": 0.05, "val_specificity": 0.95, "commit": "0" * 40, "machine": {"platform": "test"},
            "sizes": {"seeds": 3, "healthy_val": 60, "healthy_threshold": 30, "unhealthy_pseudo_test": 60,
                      "real_unhealthy_test": 500}}
    table = TABLES["swap_null"](data)
    assert "| q1_sr | crossed_t |" in table and "MDE / with Holm" in table and "Val images only" in table
