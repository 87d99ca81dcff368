"""Comparisons and their verdicts: the paired tests of each comparison (declared in `comparisons.py`) and train
seed, and per comparison group (replicates = train seeds x sampling seeds of the SR set) the verdict.

Per comparison and train seed: McNemar (1947) on the unhealthy test images (primary, the test of FNR) and on all
test images, each Holm (1979)-adjusted within its family; DeLong (1988) for AUROC. Per comparison group: pooled FNR
(mean over replicates), the paired bootstrap interval of the mean FNR difference, the test of `evaluate.verdict_rule`
over all replicates (Holm-adjusted within the question's family) and the verdict with "holds in k/n".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsr.parameters import EvaluateParams
from medsr.evaluation.arm_metrics import POINTS
from medsr.evaluation.comparisons import Arm, Comparison
from medsr.evaluation.metrics import bootstrap_rates, finite_or_none, mean_estimate
from medsr.evaluation.operating_point import OperatingPoint, predict
from medsr.evaluation.statistics import (compare, delong_paired, holm_adjust, seed_image_t, sign_flip_test,
                                         two_level_bootstrap)
from medsr.predictions import Key, Scores

# --- comparisons ---------------------------------------------------------------------------

def compare_arms(comp: Comparison, seed: int, scores: Mapping[Key, Scores],
                 points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]], weights: np.ndarray,
                 params: EvaluateParams) -> dict[str, Any]:
    first = scores[(comp.first[1], seed, comp.first[0], "test")]
    second = scores[(comp.second[1], seed, comp.second[0], "test")]
    out: dict[str, Any] = {"question": comp.question, "family": comp.family, "train_seed": seed,
                           "first": str(comp.first), "second": str(comp.second),
                           "leaks_label": comp.leaks_label}
    for p in POINTS:
        out[p] = compare(first.labels, predict(first.scores, points[(*comp.first, seed)][p].threshold),
                         predict(second.scores, points[(*comp.second, seed)][p].threshold), weights,
                         params.confidence, params.exact_below)
    out["auroc"] = delong_paired(first.labels, first.scores, second.scores)
    return out


def adjust(tests: list[dict[str, Any]]) -> None:
    """Holm (1979) within each (question, fair | leaks_label) family and train seed, for each test and point."""
    families: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for t in tests:
        families.setdefault((t["family"], t["train_seed"]), []).append(t)
    for members in families.values():
        for p in POINTS:
            for get in (lambda t: t[p]["unhealthy_only"]["mcnemar"], lambda t: t[p]["mcnemar"]):
                holm_adjust([get(t) for t in members])


def pooled_test(replicates: Sequence[dict[str, Any]], scores: Mapping[Key, Scores],
                points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]]) -> dict[str, Any]:
    """The FNR test of a comparison group over all its replicates at once: `sign_flip_test` of the replicates x
    unhealthy test images miss indicators at the val operating point (the exact McNemar test for one replicate)."""
    misses: dict[str, list[np.ndarray]] = {"first": [], "second": []}
    for r in replicates:
        for side in ("first", "second"):
            name, classifier = Arm.parse(r[side])
            test = scores[(classifier, r["train_seed"], name, "test")]
            unhealthy = test.labels.astype(bool)
            calls = predict(test.scores, points[(name, classifier, r["train_seed"])]["val"].threshold)
            misses[side].append(calls[unhealthy] == 0)
    return sign_flip_test(np.stack(misses["first"]), np.stack(misses["second"]))


SEED_RULES = ("seed_image_t", "two_level_bootstrap")  # verdict rules whose unit of replication is the training run


def val_key(name: str, classifier: str, seed: int, scores: Mapping[Key, Scores], home: Mapping[str, str]) -> Key:
    """The val scores an arm's operating point is chosen on (its own, or its classifier domain's, as in
    `operating_points`)."""
    key = (classifier, seed, name, "val")
    return key if key in scores else (classifier, seed, home[classifier], "val")


def seed_arrays(replicates: Sequence[dict[str, Any]], scores: Mapping[Key, Scores],
                points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]],
                home: Mapping[str, str]) -> dict[str, dict[str, np.ndarray]]:
    """Per side: seeds x replicates-of-that-seed (sampling seeds) x images arrays, seeds in the order they first
    appear: `misses` (unhealthy test images at the val point), `test` (their scores), `val` (healthy val scores)."""
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for r in replicates:
        by_seed.setdefault(r["train_seed"], []).append(r)
    out: dict[str, dict[str, np.ndarray]] = {}
    for side in ("first", "second"):
        misses, test_scores, val_scores = [], [], []
        for seed, members in by_seed.items():
            rows = {"misses": [], "test": [], "val": []}
            for r in members:
                name, classifier = Arm.parse(r[side])
                test = scores[(classifier, seed, name, "test")]
                val = scores[val_key(name, classifier, seed, scores, home)]
                unhealthy = test.labels.astype(bool)
                threshold = points[(name, classifier, seed)]["val"].threshold
                rows["misses"].append(predict(test.scores, threshold)[unhealthy] == 0)
                rows["test"].append(test.scores[unhealthy])
                rows["val"].append(val.scores[~val.labels.astype(bool)])
            misses.append(rows["misses"]), test_scores.append(rows["test"]), val_scores.append(rows["val"])
        out[side] = {"misses": np.array(misses, dtype=np.float64), "test": np.array(test_scores),
                     "val": np.array(val_scores)}
    return out


def seed_test(rule: str, replicates: Sequence[dict[str, Any]], scores: Mapping[Key, Scores],
              points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]], home: Mapping[str, str],
              params: EvaluateParams) -> dict[str, Any]:
    """The FNR test of a comparison group under a rule of `SEED_RULES`: the training seed is the unit (a seed's
    sampling-seed replicates are averaged within it), so the verdict generalizes over new training seeds and new
    images. seed_image_t: misses at each seed's own val threshold; two_level_bootstrap: seeds, healthy val images
    (thresholds recomputed) and unhealthy test images resampled (`params.bootstrap` resamples, `bootstrap_seed`)."""
    arrays = seed_arrays(replicates, scores, points, home)
    if rule == "seed_image_t":
        return seed_image_t(arrays["first"]["misses"].mean(axis=1), arrays["second"]["misses"].mean(axis=1))
    return two_level_bootstrap((arrays["first"]["val"], arrays["second"]["val"]),
                               (arrays["first"]["test"], arrays["second"]["test"]), params.val_specificity,
                               resamples=params.bootstrap, seed=params.bootstrap_seed)


def verdict(replicates: Sequence[dict[str, Any]], pooled: Mapping[str, Any], alpha: float,
            rule: str) -> dict[str, Any]:
    """Direction of the mean FNR difference (first - second) over replicates, the verdict under `rule`, and in how
    many replicates it holds (its own Holm-adjusted unhealthy-only McNemar p < alpha, difference of that sign).
    rule "pooled": significant when the Holm-adjusted `pooled_test` p < alpha (one test over every replicate);
    rule "majority": significant when it holds in more than half of the replicates;
    rules of `SEED_RULES`: significant when the Holm-adjusted p of that test (`pooled` is then that test) < alpha."""
    diffs = np.array([r["val"]["fnr_difference"]["value"] for r in replicates], dtype=np.float64)
    mean = float(np.mean(diffs))
    sign = int(np.sign(mean)) if abs(mean) > 1e-12 else 0
    holds = [bool(sign != 0 and r["val"]["unhealthy_only"]["mcnemar"]["pvalue_holm"] < alpha
                  and np.sign(d) == sign) for r, d in zip(replicates, diffs)]
    k, n = sum(holds), len(holds)
    significant = sign != 0 and (k > n / 2 if rule == "majority" else pooled["pvalue_holm"] < alpha)
    name = "not_significant" if not significant else "first_better" if sign < 0 else "second_better"
    return {"verdict": name, "rule": rule, "holds": k, "replicates": n, "holds_per_replicate": holds,
            "direction": {-1: "first lower FNR", 1: "second lower FNR", 0: "no difference"}[sign]}


def median_or_none(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.median(defined)) if defined else None


def pooled_comparison(replicates: Sequence[dict[str, Any]], scores: Mapping[Key, Scores],
                      points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]], weights: np.ndarray,
                      params: EvaluateParams) -> dict[str, Any]:
    """Mean FNR each side and mean difference over replicates, with paired bootstrap intervals."""
    out: dict[str, Any] = {}
    for p in POINTS:
        sides = {"first": ([], []), "second": ([], []), "difference": ([], [])}
        for r in replicates:
            per_side = []
            for side in ("first", "second"):
                name, classifier = Arm.parse(r[side])
                test = scores[(classifier, r["train_seed"], name, "test")]
                preds = predict(test.scores, points[(name, classifier, r["train_seed"])][p].threshold)
                point = float(bootstrap_rates(np.ones((1, len(preds))), test.labels, preds)["fnr"][0])
                sample = bootstrap_rates(weights, test.labels, preds)["fnr"]
                sides[side][0].append(point), sides[side][1].append(sample)
                per_side.append((point, sample))
            sides["difference"][0].append(per_side[0][0] - per_side[1][0])
            sides["difference"][1].append(per_side[0][1] - per_side[1][1])
        for side, (values, samples) in sides.items():
            out[f"fnr_{side}_{p}"] = mean_estimate(values, samples, params.confidence)
    return out


def _secondary(replicates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The secondary tests of a comparison group: all images, the 0.5 threshold, AUROC (DeLong)."""
    differences = [np.nan if r["auroc"]["difference"] is None else r["auroc"]["difference"] for r in replicates]
    return {
        "all_images_pvalue_holm_median": median_or_none([r["val"]["mcnemar"]["pvalue_holm"] for r in replicates]),
        "unhealthy_at_0.5_pvalue_holm_median": median_or_none(
            [r["0.5"]["unhealthy_only"]["mcnemar"]["pvalue_holm"] for r in replicates]),
        "auroc_difference_mean": finite_or_none(np.mean(differences)),
        "delong_pvalue_median": median_or_none([r["auroc"]["pvalue"] for r in replicates])}


def _replicate_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """One replicate's own FNR test (McNemar on the unhealthy images at the val operating point)."""
    mcnemar = r["val"]["unhealthy_only"]["mcnemar"]
    return {"train_seed": r["train_seed"], "first": r["first"], "second": r["second"],
            "fnr_difference": r["val"]["fnr_difference"], "table_unhealthy": r["val"]["unhealthy_only"]["table"],
            "pvalue": mcnemar["pvalue"], "pvalue_holm": mcnemar["pvalue_holm"], "test": mcnemar["primary"]}


def comparison_groups(tests: Sequence[dict[str, Any]], group_of: Mapping[str, str], scores, points, weights,
                      params: EvaluateParams, titles: Mapping[str, str],
                      home: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One entry per comparison group; `home`: classifier domain -> the set it was trained on (the val scores of
    an arm without its own, needed by the two-level bootstrap)."""
    alpha = 1.0 - params.confidence
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for t in tests:
        key = (t["question"], _group_arm(t["first"], group_of), _group_arm(t["second"], group_of))
        grouped.setdefault(key, []).append(t)
    pooled = {key: pooled_test(replicates, scores, points) for key, replicates in grouped.items()}
    families: dict[str, list[tuple[str, str, str]]] = {}
    for key, replicates in grouped.items():
        families.setdefault(replicates[0]["family"], []).append(key)
    rule = params.verdict_rule
    chosen = ({key: seed_test(rule, replicates, scores, points, home or {}, params)
               for key, replicates in grouped.items()} if rule in SEED_RULES else {})
    for members in families.values():  # Holm (1979) within each declared family, as per replicate
        for tested in (pooled, chosen) if chosen else (pooled,):
            holm_adjust([tested[key] for key in members])
    out = []
    for (question, first, second), replicates in grouped.items():
        test = chosen.get((question, first, second), pooled[(question, first, second)])
        entry = {"id": f"{question}:{first}_vs_{second}", "question": question, "first": first, "second": second,
                 "first_title": titles[first], "second_title": titles[second],
                 "leaks_label": replicates[0]["leaks_label"], "family": replicates[0]["family"],
                 **verdict(replicates, test, alpha, params.verdict_rule),
                 "pooled_test": pooled[(question, first, second)],
                 **({"verdict_test": test} if chosen else {}),
                 "pvalue": test["pvalue"], "pvalue_holm": test["pvalue_holm"],
                 **pooled_comparison(replicates, scores, points, weights, params),
                 "pvalue_median": median_or_none([r["val"]["unhealthy_only"]["mcnemar"]["pvalue"] for r in replicates]),
                 "pvalue_holm_median": median_or_none(
                     [r["val"]["unhealthy_only"]["mcnemar"]["pvalue_holm"] for r in replicates]),
                 "secondary": _secondary(replicates),
                 "per_replicate": [_replicate_row(r) for r in replicates]}
        out.append(entry)
    return out


def _group_arm(arm: str, group_of: Mapping[str, str]) -> str:
    name, classifier = Arm.parse(arm)
    return str(Arm(group_of[name], classifier))
