"""Q1 for the user's own deployed classifier (`evaluate.deployed`): does SR beat bicubic in front of it?

One classifier this run did not train: the unit of replication is the image. Each Q1 comparison (as
`medsr.evaluation.comparisons` declares Q1, through the deployed classifier) gets per arm the trained classifiers'
val operating point (`operating_point.val_threshold` on that set's healthy val images; an external set without
val takes HR's) and FNR = FN / (FN + TP) of its unhealthy test images there; its test is `image_bootstrap`, Holm
(1979)-adjusted within the deployed Q1 family (fair and label-leaking apart). The verdicts are CONDITIONAL on this
one classifier. Its gate: AUROC on the HR val images >= evaluate.gate_min_hr_val_auroc, else no verdict.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from medsr.config import to_jsonable
from medsr.evaluation.comparisons import comparisons, group_name
from medsr.evaluation.gate import NO_VERDICT
from medsr.evaluation.metrics import auroc, finite_or_none
from medsr.evaluation.statistics import holm_adjust, specificity_rank
from medsr.image_sets import ImageSet
from medsr.io import sha256_file
from medsr.parameters import EvaluateParams
from medsr.predictions import read_deployed

CONDITIONAL = ("conditional on this one classifier: the unit of replication is the image (val and test), so these "
               "verdicts generalize over new images of this kind, not over other classifiers or retraining")
TEST = ("image_bootstrap: Wald z test of the FNR difference with the standard error of its paired bootstrap over "
        "the healthy val images (each arm's val threshold recomputed) and the unhealthy test images")
CLASSIFIER = "deployed"


def _fnr(test_unhealthy: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Mean over the leading member axis of the share of unhealthy scores <= threshold (a miss)."""
    return (test_unhealthy <= thresholds[..., None]).mean(axis=-1).mean(axis=-1)


def image_bootstrap(val_healthy: Sequence[np.ndarray], test_unhealthy: Sequence[np.ndarray], specificity: float,
                    confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The paired image-level test of the FNR difference, first - second, of one classifier on two image sets.

    `val_healthy` = (first, second): J x n_h scores of the healthy val images (J member sets of an arm, e.g. SR
    sampling seeds, averaged; one for bicubic); `test_unhealthy` = (first, second): J x m scores of the unhealthy
    test images; columns are the same images in both arms. FNR of an arm: the mean over its members of the share of
    unhealthy test scores <= the member's threshold, the k-th smallest healthy val score (k = ceil(specificity
    n_h), as `operating_point.val_threshold`). Bootstrap (Efron & Tibshirani 1993): B draws of n_h healthy val
    images and m unhealthy test images with replacement, the same draws for both arms (paired), thresholds
    recomputed on the drawn val images; SE = SD of the B differences. Test: z = d / SE, two-sided normal p; a
    zero SE (identical arms) gives p = 1. Interval: d +- z_(1+confidence)/2 x SE (it excludes 0 iff p < 1 -
    confidence). Seeded by `seed`: integer draws, so the same arrays give the same draws on any machine.
    """
    val = [np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in val_healthy]
    test = [np.atleast_2d(np.asarray(t, dtype=np.float64)) for t in test_unhealthy]
    healthy, images = val[0].shape[1], test[0].shape[1]
    if any(v.shape[1] != healthy for v in val) or any(t.shape[1] != images for t in test) or healthy == 0 \
            or images == 0:
        raise ValueError(f"image_bootstrap: paired, non-empty arrays expected, got val {[v.shape for v in val]}, "
                         f"test {[t.shape for t in test]}")
    k = specificity_rank(healthy, specificity)
    thresholds = [np.sort(v, axis=1)[:, k - 1] for v in val]
    fnr = [float(_fnr(t, th)) for t, th in zip(test, thresholds)]
    difference = fnr[0] - fnr[1]
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    chunk = 100
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        val_idx = rng.integers(0, healthy, size=(b, healthy))
        test_idx = rng.integers(0, images, size=(b, images))
        per_arm = []
        for v, t in zip(val, test):
            drawn_val = v[:, val_idx]  # J x b x n_h
            threshold = np.partition(drawn_val, k - 1, axis=2)[..., k - 1]  # J x b
            drawn_test = t[:, test_idx]  # J x b x m
            per_arm.append((drawn_test <= threshold[..., None]).mean(axis=2).mean(axis=0))  # b
        draws[start:start + b] = per_arm[0] - per_arm[1]
    se = float(draws.std(ddof=1))
    z_crit = float(norm.ppf(0.5 + confidence / 2))
    if se > 0:
        z = difference / se
        pvalue = float(min(1.0, 2 * norm.sf(abs(z))))
    else:
        z, pvalue = 0.0, 1.0
    return {"test": "image_bootstrap", "difference": difference, "fnr_first": fnr[0], "fnr_second": fnr[1],
            "se": se, "z": float(z), "pvalue": pvalue, "resamples": resamples, "seed": seed,
            "healthy_val_images": healthy, "unhealthy_test_images": images,
            "interval": [difference - z_crit * se, difference + z_crit * se]}


def _arm_arrays(members: Sequence[str], scores, home: str, specificity: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Member sets x images: healthy val and unhealthy test scores of an arm (a set without val images takes the
    `home` set's), and its test specificity at the members' val thresholds (mean over members)."""
    val, test, spec = [], [], []
    for name in members:
        _, val_labels, val_scores = scores.get((name, "val"), scores[(home, "val")])
        _, test_labels, test_scores = scores[(name, "test")]
        val.append(val_scores[val_labels == 0])
        test.append(test_scores[test_labels == 1])
        threshold = np.sort(val[-1])[specificity_rank(val[-1].size, specificity) - 1]
        spec.append(float((test_scores[test_labels == 0] <= threshold).mean()))
    return np.array(val), np.array(test), float(np.mean(spec))


def analysis(params: EvaluateParams, sets: Sequence[ImageSet], predictions: Path) -> dict[str, Any]:
    """The deployed classifier's Q1 verdicts, its gate and what it is, for evaluation.json's "deployed" block."""
    contract = params.deployed
    scores = read_deployed(Path(predictions), sets)
    hr = sets[0].name
    _, hr_val_labels, hr_val_scores = scores[(hr, "val")]
    hr_auroc = finite_or_none(auroc(hr_val_labels, hr_val_scores))
    passed = hr_auroc is not None and hr_auroc >= params.gate_min_hr_val_auroc
    members: dict[str, list[str]] = {}
    for s in sets:
        members.setdefault(group_name(s), []).append(s.name)
    by_name = {s.name: s for s in sets}
    alpha = 1 - params.confidence
    verdicts, seen = [], set()
    for comp in comparisons(sets, [c for c in ("hr", "bicubic")]):
        if comp.question != "Q1":
            continue
        first, second = group_name(by_name[comp.first.set]), group_name(by_name[comp.second.set])
        if (first, second) in seen:
            continue
        seen.add((first, second))
        arrays = [_arm_arrays(members[g], scores, hr, params.val_specificity) for g in (first, second)]
        test = image_bootstrap((arrays[0][0], arrays[1][0]), (arrays[0][1], arrays[1][1]), params.val_specificity,
                               params.confidence, params.bootstrap, params.bootstrap_seed)
        verdicts.append({"id": f"Q1:{first}@{CLASSIFIER}_vs_{second}@{CLASSIFIER}", "question": "Q1",
                         "first": f"{first}@{CLASSIFIER}", "second": f"{second}@{CLASSIFIER}",
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
        d = v["fnr_difference"]["value"]
        sign = int(np.sign(d)) if abs(d) > 1e-12 else 0
        significant = sign != 0 and v["pvalue_holm"] < alpha
        v["direction"] = {-1: "first lower FNR", 1: "second lower FNR", 0: "no difference"}[sign]
        v["verdict"] = (NO_VERDICT if not passed else "not_significant" if not significant
                        else "first_better" if sign < 0 else "second_better")
    return {"classifier": {"file": contract.file, "sha256": sha256_file(contract.file)
                           if Path(contract.file).is_file() else None, "contract": to_jsonable(contract)},
            "conditional": CONDITIONAL, "test": TEST,
            "gate": {"hr_val_auroc": hr_auroc, "floor": params.gate_min_hr_val_auroc, "passed": passed},
            "n_unhealthy": int(scores[(hr, "test")][1].sum()), "verdicts": verdicts}
