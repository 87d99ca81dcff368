"""All numbers of the evaluation, computed from arrays into one plain dict (no file is read or written here).

Per classifier family (architecture): the arms (`arm_metrics.py`), the comparisons and their verdicts
(`verdicts.py`) and the ROC tail (`roc.py`); per comparison whether the families agree (`architecture_agreement`);
per image set its quality against HR (`quality.py`); how it was all computed (`settings.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medsr.core.parameters import CLASSES, EvaluateParams
from medsr.evaluation import quality
from medsr.evaluation.arm_metrics import arm_seed_metrics, arm_title, operating_points, pooled_arm
from medsr.evaluation.comparisons import QUESTION_TEXT, Arm, arms, comparisons, group_name
from medsr.evaluation.gate import withhold
from medsr.evaluation.metrics import bootstrap_weights
from medsr.evaluation.roc import add_tail
from medsr.evaluation.settings import settings
from medsr.evaluation.verdicts import adjust, compare_arms, comparison_groups
from medsr.data.image_sets import ImageSet
from medsr.classifier.predictions import Key, Scores

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
            "set": name,
            "classifier": classifier,
            "group": group_of[name],
            "title": arm_title(by_name[name], classifier),
            "leaks_label": by_name[name].leaks_label,
            "per_seed": {
                str(seed): arm_seed_metrics(
                    scores[(classifier, seed, name, "test")],
                    points[(name, classifier, seed)],
                    weights,
                    params.confidence,
                )
                for seed in params.train_seeds
            },
        }
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
        group = out.setdefault(
            entry["group"], {"sets": [], "leaks_label": entry["leaks_label"], "psnr": [], "ssim": []}
        )
        group["sets"].append(name)
        for metric in ("psnr", "ssim"):
            group[metric].append(entry["quality"][metric]["value"])
    for group in out.values():
        for metric in ("psnr", "ssim"):
            values = [v for v in group[metric] if v is not None]
            group[metric] = float(np.mean(values)) if values else None
    return out
