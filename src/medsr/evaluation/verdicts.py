"""Comparisons and their verdicts: the paired tests of each comparison (declared in `comparisons.py`) and train
seed, and per comparison group (replicates = train seeds x sampling seeds of the SR set) the verdict.

Per comparison and train seed: McNemar (1947) on the unhealthy test images (primary, the test of FNR) and on all
test images, each Holm (1979)-adjusted within its family; DeLong (1988) for AUROC. Per comparison group: pooled FNR
(mean over replicates), the paired bootstrap interval of the mean FNR difference, the test of `evaluate.verdict_rule`
over all replicates (Holm-adjusted within the question's family), the verdict with "holds in k/n" (one of four labels:
first_better, second_better, equivalent within `evaluate.equivalence_margin`, inconclusive), the smallest difference
the test detects (`mde`) and the sources of variance the verdict generalizes over.

A verdict test is declared once, by its class (`VerdictTest`): its `name` (what evaluate.verdict_rule accepts), the
one-line texts the settings block and the summary print, whether its unit of replication is the training run, the
test of a comparison group, when it is significant, the interval of the FNR difference it implies, its standard error
(equivalence, minimum detectable effect) and what it generalizes over. Defining the class registers it in
`VERDICT_TESTS`; `medsr.core.parameters` reads the names off this file for the params file's enum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from scipy.stats import t as student_t

from medsr.core.parameters import EvaluateParams
from medsr.evaluation.power import POWER, minimum_detectable_effect, tost
from medsr.evaluation.arm_metrics import POINTS, pooled_comparison
from medsr.evaluation.comparisons import Arm, Comparison
from medsr.evaluation.metrics import finite_or_none
from medsr.evaluation.operating_point import OperatingPoint, predict
from medsr.evaluation.statistics import (compare, crossed_t, delong_paired, holm_adjust, seed_image_t,
                                         shared_threshold_variance, sign_flip_test, two_level_bootstrap)
from medsr.classifier.predictions import Key, Scores

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


# --- the verdict tests: one class each, registered by defining it ----------------------------

@dataclass
class Group:
    """One comparison group's replicates and what their arrays are read from; a verdict test takes what it needs,
    each computed once: `pooled` (`pooled_test`, every rule's reference test) or `arrays` (`seed_arrays`)."""

    replicates: Sequence[dict[str, Any]]
    scores: Mapping[Key, Scores]
    points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]]
    home: Mapping[str, str]
    params: EvaluateParams

    @cached_property
    def pooled(self) -> dict[str, Any]:
        return pooled_test(self.replicates, self.scores, self.points)

    @cached_property
    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        return seed_arrays(self.replicates, self.scores, self.points, self.home)


# the registry: each verdict test class under its name, filled by defining the class (VerdictTest.__init_subclass__)
VERDICT_TESTS: dict[str, type["VerdictTest"]] = {}
# what the seed-level tests replicate, and what they do not (medsr.evaluation.settings.GENERALIZES in full)
RETRAINING = ("it generalizes over retraining the classifiers and new images, not over retraining the SR and "
              "regression models, one training run each")
MODELS = ("SR model training run", "regression model training run", "SR sampling seeds")  # one of each, shared by all
NO_T = "gives no standard error with degrees of freedom"  # for `equivalence` and `mde`
NO_STANDARD_ERROR = f"; it {NO_T}, so no minimum detectable effect and never \"equivalent\""


class VerdictTest:
    """The FNR test a comparison group's verdict rests on. A subclass is one test: its `name` (a literal:
    `medsr.core.parameters` reads it off this file), `description` (the settings block's "verdict"; a training-run
    test's is followed there by the decision and what it generalizes over), `summary` (the summary's words for it),
    `seed_unit` (its unit of replication is the training run), `test` (its dict, with "pvalue"; `pooled` itself when
    the verdict rests on the pooled test), `significant`, `interval`, `standard_error` (from which `equivalence` and
    `mde`), `generalizes_over` and `held_fixed` (sources of variance). Subclassing with a `name` registers it."""

    name: ClassVar[str]
    description: ClassVar[str]
    summary: ClassVar[str]
    seed_unit: ClassVar[bool] = False
    interval_text: ClassVar[str] = ""  # the summary's words for `interval`, when the test implies one
    generalizes_over: ClassVar[tuple[str, ...]] = ("test images",)
    held_fixed: ClassVar[tuple[str, ...]] = ("classifier training runs", "val threshold images", *MODELS)

    def __init_subclass__(cls, **options):
        super().__init_subclass__(**options)
        if "name" in vars(cls):
            VERDICT_TESTS[cls.name] = cls

    @classmethod
    def test(cls, group: Group) -> dict[str, Any]:
        return group.pooled

    @classmethod
    def significant(cls, test: Mapping[str, Any], holds: int, replicates: int, alpha: float) -> bool:
        """Given a nonzero mean difference: the Holm-adjusted p of `test` (within the question's family) < alpha."""
        return test["pvalue_holm"] < alpha

    @classmethod
    def interval(cls, test: Mapping[str, Any], confidence: float) -> dict[str, Any] | None:
        """The interval of the FNR difference `test` implies; None: the paired bootstrap interval over the test
        images (the trained classifiers held fixed)."""
        return None

    @classmethod
    def standard_error(cls, test: Mapping[str, Any]) -> tuple[float, float] | None:
        """(standard error, degrees of freedom) of the FNR difference, for `equivalence` and `mde`; None: none."""
        return None

    @classmethod
    def equivalence(cls, test: Mapping[str, Any], margin: float, alpha: float) -> dict[str, Any] | None:
        """`medsr.evaluation.power.tost` against +-margin at level alpha (None without a standard error)."""
        se = cls.standard_error(test)
        return None if se is None else tost(test["difference"], *se, margin, alpha)

    @classmethod
    def mde(cls, test: Mapping[str, Any], alpha: float) -> float | None:
        """`medsr.evaluation.power.minimum_detectable_effect` at level alpha (None without a standard error)."""
        se = cls.standard_error(test)
        return None if se is None else minimum_detectable_effect(*se, alpha)


class Pooled(VerdictTest):
    """`pooled_test`: one exact paired test over every replicate, the classifiers and thresholds held fixed."""

    name = "pooled"
    description = ("significant when the Holm-adjusted p of the exact paired sign-flip test over all replicates "
                   "(Fisher 1935, Pitman 1937; per unhealthy test image the misses summed over replicates; the exact "
                   f"McNemar test for one replicate) is < 1 - confidence{NO_STANDARD_ERROR}")
    summary = ("one exact paired test on the unhealthy images over all replicates (per image: misses summed over "
               "replicates, signs flipped; McNemar for one replicate)")


class Majority(VerdictTest):
    """Significant when more than half of the replicates' own McNemar tests hold (p columns: the pooled test's)."""

    name = "majority"
    description = f"significant when it holds in more than half of its replicates{NO_STANDARD_ERROR}"
    summary = "McNemar on the unhealthy images in each replicate"

    @classmethod
    def significant(cls, test: Mapping[str, Any], holds: int, replicates: int, alpha: float) -> bool:
        return holds > replicates / 2


class SeedImageT(VerdictTest):
    """`statistics.seed_image_t` of the seeds x images misses, a seed's sampling-seed replicates averaged within it,
    each seed at its own val threshold."""

    name = "seed_image_t"
    description = ("seed-level paired t test of the FNR difference at each training seed's own val threshold, "
                   "SE^2 = var over seeds / S + var over images of the seed-averaged miss difference / m, Student t "
                   "with S - 1 df (conservative)")
    summary = ("a seed-level paired t test of the FNR difference (training seeds and images as sources of "
               f"variance: {RETRAINING})")
    seed_unit = True
    interval_text = ("mean +- t(seeds - 1) x the standard error of its seed-level test (training seeds and "
                     "images)")
    generalizes_over = ("classifier training seed", "test images")
    held_fixed = ("val threshold images (one val set shared by every seed)", *MODELS)

    @classmethod
    def test(cls, group: Group) -> dict[str, Any]:
        arrays = group.arrays
        return seed_image_t(arrays["first"]["misses"].mean(axis=1), arrays["second"]["misses"].mean(axis=1))

    @classmethod
    def interval(cls, test: Mapping[str, Any], confidence: float) -> dict[str, Any] | None:
        """mean +- t_{df} x SE (its standard error over training seeds and images)."""
        if not test.get("se") or not test.get("df"):
            return None
        half = float(student_t.ppf(0.5 + confidence / 2, test["df"])) * test["se"]
        return {"value": test["difference"], "ci_low": test["difference"] - half, "ci_high": test["difference"] + half}

    @classmethod
    def standard_error(cls, test: Mapping[str, Any]) -> tuple[float, float] | None:
        return (test["se"], test["df"]) if test.get("se") and test.get("df") else None


class TwoLevelBootstrap(VerdictTest):
    """`statistics.two_level_bootstrap`: seeds, healthy val images (thresholds recomputed) and unhealthy test images
    resampled (`params.bootstrap` resamples, `bootstrap_seed`)."""

    name = "two_level_bootstrap"
    description = ("two-level bootstrap of the mean FNR difference (Saravanan, Berman & Sober 2020): training seeds "
                   "resampled (pairs kept), then healthy val images (each seed's threshold recomputed) and unhealthy "
                   f"test images; two-sided percentile p with the +1 correction{NO_STANDARD_ERROR}")
    summary = ("a two-level bootstrap of the FNR difference (training seeds, then images, each seed's val threshold "
               f"recomputed: {RETRAINING})")
    seed_unit = True
    generalizes_over = ("classifier training seed", "test images", "val threshold images")
    held_fixed = MODELS

    @classmethod
    def test(cls, group: Group) -> dict[str, Any]:
        arrays, params = group.arrays, group.params
        return two_level_bootstrap((arrays["first"]["val"], arrays["second"]["val"]),
                                   (arrays["first"]["test"], arrays["second"]["test"]), params.val_specificity,
                                   resamples=params.bootstrap, seed=params.bootstrap_seed)


class CrossedT(SeedImageT):
    """`statistics.crossed_t` of the seeds x images miss differences (sampling seeds averaged within a seed), plus
    `statistics.shared_threshold_variance` (`params.bootstrap` resamples of the healthy val images,
    `bootstrap_seed`)."""

    name = "crossed_t"
    description = ("crossed seeds x images t test of the FNR difference at each training seed's own val threshold: "
                   "SE^2 = (MS_seed + MS_image - MS_resid) / (S m) (two-way random effects, Searle, Casella & "
                   "McCulloch 1992) + the variance the seeds share through the val set (bootstrap of the healthy val "
                   "images, every threshold recomputed), Student t with Satterthwaite (1946) df")
    summary = ("a crossed seeds x images t test of the FNR difference (training seeds, images and the val set's "
               f"thresholds as sources of variance: {RETRAINING})")
    interval_text = ("mean +- t(Satterthwaite df) x the standard error of its crossed test (training seeds, images, "
                     "val thresholds)")
    generalizes_over = ("classifier training seed", "test images", "val threshold images")
    held_fixed = MODELS

    @classmethod
    def test(cls, group: Group) -> dict[str, Any]:
        first, second, params = group.arrays["first"], group.arrays["second"], group.params
        shared = shared_threshold_variance((first["val"], second["val"]), (first["test"], second["test"]),
                                           params.val_specificity, resamples=params.bootstrap,
                                           seed=params.bootstrap_seed)
        return crossed_t((first["misses"] - second["misses"]).mean(axis=1), shared, first["val"].shape[-1])


def verdict(replicates: Sequence[dict[str, Any]], test: Mapping[str, Any], alpha: float, rule: type[VerdictTest],
            margin: float) -> dict[str, Any]:
    """Direction of the mean FNR difference (first - second) over replicates, the verdict under `rule` (its
    `significant` given `test`, its Holm-adjusted test: first_better | second_better; else "equivalent" when its
    `equivalence` test against +-margin holds at level alpha, else "inconclusive"), and in how many replicates it
    holds (its own Holm-adjusted unhealthy-only McNemar p < alpha, difference of that sign)."""
    diffs = np.array([r["val"]["fnr_difference"]["value"] for r in replicates], dtype=np.float64)
    mean = float(np.mean(diffs))
    sign = int(np.sign(mean)) if abs(mean) > 1e-12 else 0
    holds = [bool(sign != 0 and r["val"]["unhealthy_only"]["mcnemar"]["pvalue_holm"] < alpha
                  and np.sign(d) == sign) for r, d in zip(replicates, diffs)]
    k, n = sum(holds), len(holds)
    significant = sign != 0 and rule.significant(test, k, n, alpha)
    equivalence = rule.equivalence(test, margin, alpha)
    name = ("first_better" if sign < 0 else "second_better") if significant else \
        "equivalent" if equivalence and equivalence["equivalent"] else "inconclusive"
    return {"verdict": name, "rule": rule.name, "holds": k, "replicates": n, "holds_per_replicate": holds,
            "direction": {-1: "first lower FNR", 1: "second lower FNR", 0: "no difference"}[sign],
            "equivalence": {"margin": margin, "alpha": alpha, "test": "two one-sided tests (Schuirmann 1987)",
                            **(equivalence or {"pvalue": None, "reason": f"{rule.name} {NO_T}"})}}


def median_or_none(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.median(defined)) if defined else None


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
    rule = VERDICT_TESTS[params.verdict_rule]
    groups = {key: Group(replicates, scores, points, home or {}, params) for key, replicates in grouped.items()}
    pooled = {key: group.pooled for key, group in groups.items()}
    chosen = {key: rule.test(group) for key, group in groups.items()}  # `pooled`'s own dicts under a pooled rule
    families: dict[str, list[tuple[str, str, str]]] = {}
    for key, replicates in grouped.items():
        families.setdefault(replicates[0]["family"], []).append(key)
    for members in families.values():  # Holm (1979) within each declared family, as per replicate
        for tested in (pooled, chosen):
            holm_adjust([tested[key] for key in members])
    out = []
    for (question, first, second), replicates in grouped.items():
        key = (question, first, second)
        test, family_size = chosen[key], len(families[replicates[0]["family"]])
        mde = rule.mde(test, alpha / family_size)
        out.append({"id": f"{question}:{first}_vs_{second}", "question": question, "first": first, "second": second,
                    "first_title": titles[first], "second_title": titles[second],
                    "leaks_label": replicates[0]["leaks_label"], "family": replicates[0]["family"],
                    **verdict(replicates, test, alpha, rule, params.equivalence_margin),
                    "mde": {"value": mde, "power": POWER, "alpha": alpha / family_size, "family_size": family_size,
                            **({} if mde else {"reason": test.get("reason") or f"{rule.name} {NO_T}"})},
                    "generalizes_over": list(rule.generalizes_over), "held_fixed": list(rule.held_fixed),
                    "pooled_test": pooled[key], **({"verdict_test": test} if test is not pooled[key] else {}),
                    "pvalue": test["pvalue"], "pvalue_holm": test["pvalue_holm"],
                    **pooled_comparison(replicates, scores, points, weights, params),
                    "pvalue_median": median_or_none(
                        [r["val"]["unhealthy_only"]["mcnemar"]["pvalue"] for r in replicates]),
                    "pvalue_holm_median": median_or_none(
                        [r["val"]["unhealthy_only"]["mcnemar"]["pvalue_holm"] for r in replicates]),
                    "secondary": _secondary(replicates),
                    "per_replicate": [_replicate_row(r) for r in replicates]})
    return out


def _group_arm(arm: str, group_of: Mapping[str, str]) -> str:
    name, classifier = Arm.parse(arm)
    return str(Arm(group_of[name], classifier))
