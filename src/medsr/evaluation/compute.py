"""All numbers of the evaluation, computed from arrays into one plain dict (no file is read or written here).

Per arm (image set x classifier) and train seed: the operating points (0.5 and the val-chosen threshold),
confusion counts and rates with bootstrap intervals (Efron & Tibshirani 1993), AUROC. Per comparison (declared
in `comparisons.py`) and train seed: McNemar (1947) on the unhealthy test images (primary, the test of FNR) and on
all test images, each Holm (1979)-adjusted within its family; DeLong (1988) for AUROC. Per comparison group
(replicates = train seeds x sampling seeds of the SR set): pooled FNR (mean over replicates), the paired
bootstrap interval of the mean FNR difference, and the verdict with "holds in k/n". All of this once per
classifier family (architecture), and per comparison whether the families agree (`architecture_agreement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsr.config import CLASSES, EvaluateParams
from medsr.evaluation import quality
from medsr.evaluation.comparisons import QUESTION_TEXT, Arm, Comparison, arms, comparisons, group_name
from medsr.evaluation.gate import withhold
from medsr.evaluation.metrics import (bootstrap_auroc, bootstrap_rates, bootstrap_weights, finite_or_none,
                                      mean_estimate, set_metrics)
from medsr.evaluation.operating_point import DEFAULT_THRESHOLD, OperatingPoint, predict, val_threshold
from medsr.evaluation.predictions import Key, Scores
from medsr.evaluation.roc import SETTINGS as ROC_SETTINGS
from medsr.evaluation.roc import add_tail
from medsr.evaluation.statistics import compare, delong_paired, holm, seed_image_t, sign_flip_test, two_level_bootstrap
from medsr.image_sets import ImageSet

POINTS = ("val", "0.5")  # operating points; "val" is primary
CLASSIFIER_TITLE = {"hr": "HR-trained classifier", "bicubic": "HR classifier fine-tuned on bicubic",
                    "sr": "HR classifier fine-tuned on SR"}


def group_title(image_set: ImageSet) -> str:
    if image_set.kind == "sr":
        return f"SR ({image_set.guidance} guidance{', LEAKS THE LABEL' if image_set.leaks_label else ''})"
    return image_set.title


def arm_title(image_set: ImageSet, classifier: str) -> str:
    return f"{group_title(image_set)} + {CLASSIFIER_TITLE.get(classifier, classifier + ' classifier')}"


# --- operating points ----------------------------------------------------------------------

def operating_points(params: EvaluateParams, sets: Sequence[ImageSet], scores: Mapping[Key, Scores],
                     arm_list: Sequence[Arm]) -> dict[tuple[str, str, int], dict[str, OperatingPoint]]:
    """(set, classifier, seed) -> {"val": chosen on that arm's val images (or its domain's), "0.5": fixed}."""
    home = {s.matched: s.name for s in sets if s.matched}  # classifier domain -> the set it was trained on
    out = {}
    for seed in params.train_seeds:
        for name, classifier in arm_list:
            key = (classifier, seed, name, "val")
            if key in scores:
                point = val_threshold(scores[key].labels, scores[key].scores, params.val_specificity,
                                      f"predictions of {classifier} classifier, seed {seed}, set {name}, split val")
            else:  # an external set without val images: the classifier's threshold on its own domain's val set
                own = (classifier, seed, home[classifier], "val")
                base = val_threshold(scores[own].labels, scores[own].scores, params.val_specificity,
                                     f"predictions of {classifier} classifier, seed {seed}, set {own[2]}, split val")
                point = OperatingPoint(base.threshold, f"val of {own[2]} (fallback: {name} has no val images)",
                                       base.val_specificity, base.val_sensitivity)
            out[(name, classifier, seed)] = {"val": point, "0.5": OperatingPoint(DEFAULT_THRESHOLD, "0.5")}
    return out


# --- arms ----------------------------------------------------------------------------------

def arm_seed_metrics(test: Scores, points: Mapping[str, OperatingPoint], weights: np.ndarray,
                     confidence: float) -> dict[str, Any]:
    labels = test.labels.astype(bool)
    out: dict[str, Any] = {"operating_points": {p: points[p].as_dict() for p in POINTS}}
    for p in POINTS:
        out[p] = set_metrics(test.labels, predict(test.scores, points[p].threshold),
                             test.scores if p == "val" else None, weights, confidence)
    out["auroc"] = out["val"].pop("auroc")  # threshold-free
    out["mean_prob_unhealthy"] = {"unhealthy": finite_or_none(test.scores[labels].mean() if labels.any() else np.nan),
                                  "healthy": finite_or_none(test.scores[~labels].mean() if (~labels).any() else np.nan)}
    return out


def pooled_arm(members: Sequence[tuple[int, str]], scores: Mapping[Key, Scores], classifier: str,
               points: Mapping[tuple[str, str, int], Mapping[str, OperatingPoint]], weights: np.ndarray,
               confidence: float) -> dict[str, Any]:
    """Mean over replicates (train seed, set) with the paired bootstrap interval of the mean."""
    out: dict[str, Any] = {}
    for p in POINTS:
        for rate in ("fnr", "accuracy", "specificity"):
            values, samples = [], []
            for seed, name in members:
                test = scores[(classifier, seed, name, "test")]
                preds = predict(test.scores, points[(name, classifier, seed)][p].threshold)
                values.append(float(bootstrap_rates(np.ones((1, len(preds))), test.labels, preds)[rate][0]))
                samples.append(bootstrap_rates(weights, test.labels, preds)[rate])
            out[f"{rate}_{p}"] = mean_estimate(values, samples, confidence)
    values, samples = [], []
    for seed, name in members:
        test = scores[(classifier, seed, name, "test")]
        values.append(float(bootstrap_auroc(np.ones((1, len(test.labels))), test.labels, test.scores)[0]))
        samples.append(bootstrap_auroc(weights, test.labels, test.scores))
    out["auroc"] = mean_estimate(values, samples, confidence)
    return out


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
                chosen = [get(t) for t in members]
                for test, adjusted in zip(chosen, holm([c["pvalue"] for c in chosen])):
                    test["pvalue_holm"] = adjusted


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
            for key, adjusted in zip(members, holm([tested[key]["pvalue"] for key in members])):
                tested[key]["pvalue_holm"] = adjusted
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
                 "secondary": {
                     "all_images_pvalue_holm_median": median_or_none(
                         [r["val"]["mcnemar"]["pvalue_holm"] for r in replicates]),
                     "unhealthy_at_0.5_pvalue_holm_median": median_or_none(
                         [r["0.5"]["unhealthy_only"]["mcnemar"]["pvalue_holm"] for r in replicates]),
                     "auroc_difference_mean": finite_or_none(np.mean(
                         [np.nan if r["auroc"]["difference"] is None else r["auroc"]["difference"] for r in replicates])),
                     "delong_pvalue_median": median_or_none([r["auroc"]["pvalue"] for r in replicates])},
                 "per_replicate": [{"train_seed": r["train_seed"], "first": r["first"], "second": r["second"],
                                    "fnr_difference": r["val"]["fnr_difference"],
                                    "table_unhealthy": r["val"]["unhealthy_only"]["table"],
                                    "pvalue": r["val"]["unhealthy_only"]["mcnemar"]["pvalue"],
                                    "pvalue_holm": r["val"]["unhealthy_only"]["mcnemar"]["pvalue_holm"],
                                    "test": r["val"]["unhealthy_only"]["mcnemar"]["primary"]}
                                   for r in replicates]}
        out.append(entry)
    return out


def _group_arm(arm: str, group_of: Mapping[str, str]) -> str:
    name, classifier = Arm.parse(arm)
    return str(Arm(group_of[name], classifier))


# --- the stage's numbers -------------------------------------------------------------------

def classifier_analysis(params: EvaluateParams, sets: Sequence[ImageSet], scores: Mapping[Key, Scores],
                        classifiers: Sequence[str], weights: np.ndarray, architecture: str) -> dict[str, Any]:
    """Arms, comparisons and verdicts of one classifier family (its own operating points and Holm families)."""
    by_name = {s.name: s for s in sets}
    arm_list = arms(sets, classifiers)
    points = operating_points(params, sets, scores, arm_list)
    group_of = {s.name: group_name(s) for s in sets}

    arm_results = {}
    for name, classifier in arm_list:
        arm_results[str(Arm(name, classifier))] = {
            "set": name, "classifier": classifier, "group": group_of[name], "title": arm_title(by_name[name], classifier),
            "leaks_label": by_name[name].leaks_label,
            "per_seed": {str(seed): arm_seed_metrics(scores[(classifier, seed, name, "test")],
                                                     points[(name, classifier, seed)], weights, params.confidence)
                         for seed in params.train_seeds}}
    arm_groups: dict[str, dict[str, Any]] = {}
    for name, classifier in arm_list:
        key = str(Arm(group_of[name], classifier))
        entry = arm_groups.setdefault(key, {"group": group_of[name], "classifier": classifier, "sets": [],
                                            "title": arm_title(by_name[name], classifier),
                                            "leaks_label": by_name[name].leaks_label})
        entry["sets"].append(name)
    for key, entry in arm_groups.items():
        members = [(seed, name) for seed in params.train_seeds for name in entry["sets"]]
        entry["replicates"] = len(members)
        entry["pooled"] = pooled_arm(members, scores, entry["classifier"], points, weights, params.confidence)

    tests = [compare_arms(c, seed, scores, points, weights, params)
             for c in comparisons(sets, classifiers) for seed in params.train_seeds]
    adjust(tests)
    titles = {k: v["title"] for k, v in arm_groups.items()}
    home = {s.matched: s.name for s in sets if s.matched}
    verdicts = [{"architecture": architecture, **v}
                for v in comparison_groups(tests, group_of, scores, points, weights, params, titles, home)]
    analysis = {"arms": arm_results, "arm_groups": arm_groups, "verdicts": verdicts, "comparisons": tests}
    add_tail(analysis, scores, points, weights, arm_list, params.train_seeds, params.confidence)  # specificity, ROC
    return analysis


def architecture_agreement(analyses: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per comparison group: its verdict in every classifier family, and whether they all agree.

    A gain (or loss) that only some families show is listed with `specific_to`, the families that show it.
    """
    first = next(iter(analyses.values()))
    out = []
    for v in first["verdicts"]:
        by_arch = {a: next((w["verdict"] for w in r["verdicts"] if w["id"] == v["id"]), None)
                   for a, r in analyses.items()}
        significant = sorted({w for w in by_arch.values() if w in ("first_better", "second_better")})
        out.append({"id": v["id"], "question": v["question"], "leaks_label": v["leaks_label"],
                    "first_title": v["first_title"], "second_title": v["second_title"],
                    "verdicts": by_arch, "agree": len(set(by_arch.values())) == 1,
                    "specific_to": {w: [a for a, x in by_arch.items() if x == w] for w in significant}})
    return out


def compute(params: EvaluateParams, *, sets: Sequence[ImageSet], scores: Mapping[Key, Scores],
            classifiers: Sequence[str], images: Mapping[str, np.ndarray], lpips_net=None,
            subjects: Sequence[str] | None = None, architecture: str = "resnet18",
            other_scores: Mapping[str, Mapping[Key, Scores]] | None = None,
            gate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every number of the evaluation; `images`: set name -> N x H x W test images in the predictions' id order;
    `subjects`: the test images' subjects in that order (bootstrap by subject), None when they have none.

    `scores` are those of the first classifier family (`architecture`: its numbers are the top-level arms,
    arm_groups, verdicts and comparisons); `other_scores`: architecture -> scores of every other family, each
    analysed the same way on the same bootstrap resamples, under "other_architectures". `gate`: the learning
    gate (medsr.evaluation.gate), recorded under "gate"; when it has not passed, every verdict is withheld.
    """
    reference = sets[0]
    test_ref = scores[("hr", params.train_seeds[0], reference.name, "test")]
    val_ref = scores[("hr", params.train_seeds[0], reference.name, "val")]
    weights = bootstrap_weights(len(test_ref.ids), params.bootstrap, params.bootstrap_seed, subjects)
    group_of = {s.name: group_name(s) for s in sets}
    main = classifier_analysis(params, sets, scores, classifiers, weights, architecture)
    others = {a: classifier_analysis(params, sets, s, classifiers, weights, a) for a, s in (other_scores or {}).items()}
    if gate is not None and not gate["passed"]:
        for analysis in (main, *others.values()):
            withhold(analysis["verdicts"])

    set_results = {}
    for s in sets:
        entry = {"kind": s.kind, "title": s.title, "group": group_of[s.name], "guidance": s.guidance, "seed": s.seed,
                 "leaks_label": s.leaks_label, "matched": s.matched}
        if s.name != reference.name:
            entry["quality"] = quality.set_quality(images[s.name], images[reference.name], weights, params.confidence,
                                                   lpips_net, quality.LPIPS_SKIPPED)
        set_results[s.name] = entry
    return {
        **({} if gate is None else {"gate": dict(gate)}),  # first: whether the verdicts below are verdicts at all
        "positive_class": CLASSES[1], "classes": list(CLASSES),
        "n_test": len(test_ref.ids), "n_unhealthy": int(test_ref.labels.sum()), "n_val": len(val_ref.ids),
        "questions": dict(QUESTION_TEXT),
        "settings": {**settings(params, classifiers),
                     "bootstrap_unit": "subject (cluster bootstrap)" if subjects is not None else "image"},
        "sets": set_results,
        "set_groups": quality_groups(set_results),
        "architecture": architecture,
        "architectures": [architecture, *others],
        **main,
        "other_architectures": others,
        "architecture_agreement": architecture_agreement({architecture: main, **others}),
        "leaks_label": [s.name for s in sets if s.leaks_label],
    }


def quality_groups(set_results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """PSNR / SSIM per set group: the mean over its sets (sampling seeds)."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in set_results.items():
        if "quality" not in entry:
            continue
        group = out.setdefault(entry["group"], {"sets": [], "leaks_label": entry["leaks_label"], "psnr": [], "ssim": []})
        group["sets"].append(name)
        for metric in ("psnr", "ssim"):
            group[metric].append(entry["quality"][metric]["value"])
    for group in out.values():
        for metric in ("psnr", "ssim"):
            values = [v for v in group[metric] if v is not None]
            group[metric] = float(np.mean(values)) if values else None
    return out


VERDICT_TESTS = {
    "seed_image_t": "seed-level paired t test of the FNR difference at each training seed's own val threshold, "
                    "SE^2 = var over seeds / S + var over images of the seed-averaged miss difference / m, Student t "
                    "with S - 1 df (conservative)",
    "two_level_bootstrap": "two-level bootstrap of the mean FNR difference (Saravanan, Berman & Sober 2020): "
                           "training seeds resampled (pairs kept), then healthy val images (each seed's threshold "
                           "recomputed) and unhealthy test images; two-sided percentile p with the +1 correction"}
GENERALIZES = ("The unit of replication is the training run: the verdict generalizes over new training seeds of "
               "these classifiers and new images of this kind (operating point included); it does not generalize to "
               "other data sets, other classifier families, or other SR models and sampling seeds unless those are "
               "replicated too. With one training seed it is not testable (p = 1).")


def settings(params: EvaluateParams, classifiers: Sequence[str]) -> dict[str, Any]:
    return {
        "confidence": params.confidence, "bootstrap": params.bootstrap, "bootstrap_seed": params.bootstrap_seed,
        "exact_below": params.exact_below, "val_specificity": params.val_specificity,
        "train_seeds": list(params.train_seeds), "sampling_seeds": list(params.sampling_seeds),
        "classifiers": list(classifiers),
        "architectures": "every classifier family (train_classifier.architectures) is analysed on its own: its own "
                         "val operating points, Holm families and verdicts, on the same bootstrap resamples; the "
                         "headline metrics and the trust audit are of the first (resnet18)",
        "decision": "unhealthy iff P(unhealthy) > threshold; 0.5 is the argmax of the softmax",
        "operating_point": f"primary: per (classifier, image set, train seed) the smallest threshold whose val "
                           f"specificity is >= {params.val_specificity}; secondary: 0.5",
        "fnr_test": "McNemar (1947) on the truly unhealthy test images at the val operating point: exact binomial "
                    "if b + c < exact_below, else chi-square with continuity correction",
        "holm_family": "Holm (1979) within (question, fair | leaks_label) per train seed; all-images McNemar and the "
                       "0.5 operating point are adjusted in their own, secondary families",
        "replicates": "a comparison's replicates are its train seeds x the sampling seeds of its SR set (one per "
                      "train seed when no SR set with several seeds is involved)",
        "verdict_rule": params.verdict_rule,
        "verdict": {"pooled": "significant when the Holm-adjusted p of the exact paired sign-flip test over all "
                              "replicates (Fisher 1935, Pitman 1937; per unhealthy test image the misses summed over "
                              "replicates; the exact McNemar test for one replicate) is < 1 - confidence",
                    "majority": "significant when it holds in more than half of its replicates",
                    **{rule: f"{VERDICT_TESTS[rule]}; significant when its Holm-adjusted p is < 1 - confidence. "
                             f"{GENERALIZES}" for rule in SEED_RULES}}[params.verdict_rule],
        "holds": "a replicate holds when its own Holm-adjusted McNemar p < 1 - confidence and its FNR difference has "
                 "the sign of the mean difference",
        "pooled": "mean over replicates; interval: percentile of the mean over replicates of per-replicate bootstrap "
                  "statistics, one resample matrix of the test images shared by every set, seed and classifier "
                  "(paired; Efron & Tibshirani 1993)",
        "p_columns": "p and Holm p of a comparison group: its paired test over all replicates (Holm within the "
                      "question's family); pvalue_median, pvalue_holm_median: medians of the per-replicate McNemar "
                      "tests",
        "auroc_test": "DeLong et al. (1988), paired (secondary)",
        **ROC_SETTINGS,
    }
