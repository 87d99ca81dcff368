"""Q1 for the user's own deployed classifier (`evaluate.deployed`): does SR beat bicubic in front of it?

One classifier this run did not train: the unit of replication is the image. Each Q1 comparison (as
`medsr.evaluation.comparisons` declares Q1, through the deployed classifier) gets per arm the trained classifiers'
val operating point (`operating_point.val_threshold` on that set's healthy val images; an external set without
val takes HR's) and FNR = FN / (FN + TP) of its unhealthy test images there; its test is `image_test`, Holm
(1979)-adjusted within the deployed Q1 family (fair and label-leaking apart). The verdicts are CONDITIONAL on this
one classifier. Its gate: AUROC on the HR val images >= evaluate.gate_min_hr_val_auroc, else no verdict.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import math

import numpy as np
from scipy.stats import norm

from medsr.core.config import to_jsonable
from medsr.evaluation.comparisons import comparisons, group_name
from medsr.evaluation.gate import NO_VERDICT
from medsr.evaluation.metrics import auroc, finite_or_none
from medsr.evaluation.power import POWER, minimum_detectable_effect, tost
from medsr.evaluation.statistics import holm_adjust, specificity_rank
from medsr.data.image_sets import ImageSet
from medsr.core.io import sha256_file
from medsr.core.parameters import EvaluateParams
from medsr.classifier.predictions import DEPLOYED, read_deployed

CONDITIONAL = ("conditional on this one classifier: the unit of replication is the image (val and test), so these "
               "verdicts generalize over new images of this kind, not over other classifiers or retraining")
TEST = ("image_swap: randomization test of the FNR difference, a fair coin per image (healthy val and unhealthy "
        "test) exchanging its two versions, both val thresholds recomputed; interval: paired bootstrap over the same "
        "images (with several SR sampling seeds in an arm: the bootstrap's z test)")


def _fnr(test_unhealthy: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Mean over the leading member axis of the share of unhealthy scores <= threshold (a miss)."""
    return (test_unhealthy <= thresholds[..., None]).mean(axis=-1).mean(axis=-1)


def _thresholds(val: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest score along the last axis: the val threshold (`operating_point.val_threshold`)."""
    return np.partition(val, k - 1, axis=-1)[..., k - 1]


def swap_pvalue(val_healthy: Sequence[np.ndarray], test_unhealthy: Sequence[np.ndarray], k: int, difference: float,
                resamples: int, rng: np.random.Generator) -> float:
    """Two-sided randomization p of the FNR difference under the per-image swap null (Fisher 1935; Good 2005,
    Ch. 3): for every image, healthy val and unhealthy test alike, a fair coin exchanges its two versions, and both
    arms' thresholds are recomputed; p = (1 + #{|d*| >= |d|}) / (B + 1). Exact when each image's two versions are
    exchangeable (the two image sets do not differ for this classifier). One member set per arm."""
    (va, vb), (ta, tb) = ([np.asarray(x, dtype=np.float64).reshape(-1) for x in pair]
                          for pair in (val_healthy, test_unhealthy))
    extreme, chunk = 0, 100
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        flip_val = rng.integers(0, 2, size=(b, va.size)).astype(bool)
        flip_test = rng.integers(0, 2, size=(b, ta.size)).astype(bool)
        fnr = [(np.where(flip_test, y, x) <= _thresholds(np.where(flip_val, w, v), k)[:, None]).mean(axis=1)
               for (v, w), (x, y) in (((va, vb), (ta, tb)), ((vb, va), (tb, ta)))]
        extreme += int(np.sum(np.abs(fnr[0] - fnr[1]) >= abs(difference) - 1e-12))
    return (1 + extreme) / (resamples + 1)


def image_test(val_healthy: Sequence[np.ndarray], test_unhealthy: Sequence[np.ndarray], specificity: float,
               confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The paired image-level test of the FNR difference, first - second, of one classifier on two image sets.

    `val_healthy` = (first, second): J x n_h scores of the healthy val images (J member sets of an arm, e.g. SR
    sampling seeds, averaged; one for bicubic); `test_unhealthy` = (first, second): J x m scores of the unhealthy
    test images; columns are the same images in both arms. FNR of an arm: the mean over its members of the share of
    unhealthy test scores <= the member's threshold, the k-th smallest healthy val score (k = ceil(specificity
    n_h), as `operating_point.val_threshold`). p: `swap_pvalue` (one member set per arm; with several, the
    bootstrap's z test). Interval: paired bootstrap (Efron & Tibshirani 1993): B draws of n_h healthy val and m
    unhealthy test images with replacement, the same for both arms, thresholds recomputed; d +- z x SD of the B
    differences. Seeded by `seed`: integer draws, so the same arrays give the same p on any machine.
    """
    val = [np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in val_healthy]
    test = [np.atleast_2d(np.asarray(t, dtype=np.float64)) for t in test_unhealthy]
    healthy, images = val[0].shape[1], test[0].shape[1]
    if any(v.shape[1] != healthy for v in val) or any(t.shape[1] != images for t in test) or healthy == 0 \
            or images == 0:
        raise ValueError(f"image_test: paired, non-empty arrays expected, got val {[v.shape for v in val]}, "
                         f"test {[t.shape for t in test]}")
    k = specificity_rank(healthy, specificity)
    fnr = [float(_fnr(t, _thresholds(v, k))) for t, v in zip(test, val)]
    difference = fnr[0] - fnr[1]
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for start in range(0, resamples, 100):
        b = min(100, resamples - start)
        val_idx, test_idx = rng.integers(0, healthy, size=(b, healthy)), rng.integers(0, images, size=(b, images))
        per_arm = [(t[:, test_idx] <= _thresholds(v[:, val_idx], k)[..., None]).mean(axis=2).mean(axis=0)
                   for v, t in zip(val, test)]  # J x b x n_h -> J x b thresholds -> b FNRs
        draws[start:start + b] = per_arm[0] - per_arm[1]
    se = float(draws.std(ddof=1))
    z = difference / se if se > 0 else 0.0
    z_p = float(min(1.0, 2 * norm.sf(abs(z)))) if se > 0 else 1.0
    single = all(x.shape[0] == 1 for x in (*val, *test))
    swap_p = swap_pvalue(val, test, k, difference, resamples, rng) if single else None
    half = float(norm.ppf(0.5 + confidence / 2)) * se
    return {"test": "image_swap" if single else "image_bootstrap_z", "difference": difference, "fnr_first": fnr[0],
            "fnr_second": fnr[1], "se": se, "z": float(z), "pvalue": swap_p if single else z_p,
            "pvalue_swap": swap_p, "pvalue_bootstrap_z": z_p, "resamples": resamples, "seed": seed,
            "healthy_val_images": healthy, "unhealthy_test_images": images,
            "interval": [difference - half, difference + half]}


def _arm_arrays(members: Sequence[str], scores, home: str, specificity: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Member sets x images: healthy val and unhealthy test scores of an arm (a set without val images takes the
    `home` set's), and its test specificity at the members' val thresholds (mean over members)."""
    val, test, spec = [], [], []
    for name in members:
        val_set, test_set = scores.get((name, "val"), scores[(home, "val")]), scores[(name, "test")]
        val.append(val_set.scores[val_set.labels == 0])
        test.append(test_set.scores[test_set.labels == 1])
        threshold = _thresholds(val[-1], specificity_rank(val[-1].size, specificity))
        spec.append(float((test_set.scores[test_set.labels == 0] <= threshold).mean()))
    return np.array(val), np.array(test), float(np.mean(spec))


def analysis(params: EvaluateParams, sets: Sequence[ImageSet], predictions: Path) -> dict[str, Any]:
    """The deployed classifier's Q1 verdicts, its gate and what it is, for evaluation.json's "deployed" block."""
    contract = params.deployed
    scores = read_deployed(Path(predictions), sets)
    hr = sets[0].name
    hr_auroc = finite_or_none(auroc(scores[(hr, "val")].labels, scores[(hr, "val")].scores))
    passed = hr_auroc is not None and hr_auroc >= params.gate_min_hr_val_auroc
    members: dict[str, list[str]] = {}
    for s in sets:
        members.setdefault(group_name(s), []).append(s.name)
    by_name = {s.name: s for s in sets}
    alpha = 1 - params.confidence
    verdicts, seen = [], set()
    for comp in comparisons(sets, ("hr", "bicubic")):
        if comp.question != "Q1":
            continue
        first, second = group_name(by_name[comp.first.set]), group_name(by_name[comp.second.set])
        if (first, second) in seen:
            continue
        seen.add((first, second))
        arrays = [_arm_arrays(members[g], scores, hr, params.val_specificity) for g in (first, second)]
        test = image_test((arrays[0][0], arrays[1][0]), (arrays[0][1], arrays[1][1]), params.val_specificity,
                          params.confidence, params.bootstrap, params.bootstrap_seed)
        verdicts.append({"id": f"Q1:{first}@{DEPLOYED}_vs_{second}@{DEPLOYED}", "question": "Q1",
                         "first": f"{first}@{DEPLOYED}", "second": f"{second}@{DEPLOYED}",
                         "first_title": f"{by_name[members[first][0]].title if len(members[first]) == 1 else first}"
                                        f" + deployed classifier",
                         "second_title": f"{by_name[members[second][0]].title} + deployed classifier",
                         "leaks_label": comp.leaks_label, "family": f"Q1/deployed/{comp.family.split('/')[1]}",
                         "sets": members[first], "fnr_first": test["fnr_first"], "fnr_second": test["fnr_second"],
                         "specificity_first": arrays[0][2], "specificity_second": arrays[1][2],
                         "fnr_difference": {"value": test["difference"], "ci_low": test["interval"][0],
                                            "ci_high": test["interval"][1]},
                         "verdict_test": test, "pvalue": test["pvalue"]})
    for family in {v["family"] for v in verdicts}:
        holm_adjust([v["verdict_test"] for v in verdicts if v["family"] == family])
    for v in verdicts:
        v["pvalue_holm"] = v["verdict_test"]["pvalue_holm"]
        d, se = v["fnr_difference"]["value"], v["verdict_test"]["se"]
        sign = int(np.sign(d)) if abs(d) > 1e-12 else 0
        significant = sign != 0 and v["pvalue_holm"] < alpha
        # the bootstrap's standard error as a z test's (df = inf): equivalence and the minimum detectable effect
        family_size = sum(w["family"] == v["family"] for w in verdicts)
        v["equivalence"] = {"margin": params.equivalence_margin, "alpha": alpha,
                            **(tost(d, se, math.inf, params.equivalence_margin, alpha) or {})}
        mde = minimum_detectable_effect(se, math.inf, alpha / family_size)
        v["mde"] = {"value": mde, "power": POWER, "alpha": alpha / family_size, "family_size": family_size}
        v["direction"] = {-1: "first lower FNR", 1: "second lower FNR", 0: "no difference"}[sign]
        v["verdict"] = (NO_VERDICT if not passed else "first_better" if significant and sign < 0
                        else "second_better" if significant else "equivalent" if v["equivalence"].get("equivalent")
                        else "inconclusive")
    return {"classifier": {"file": contract.file, "sha256": sha256_file(contract.file)
                           if Path(contract.file).is_file() else None, "contract": to_jsonable(contract)},
            "conditional": CONDITIONAL, "test": TEST,
            "gate": {"hr_val_auroc": hr_auroc, "floor": params.gate_min_hr_val_auroc, "passed": passed},
            "n_unhealthy": int(scores[(hr, "test")].labels.sum()), "verdicts": verdicts}
