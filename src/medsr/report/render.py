"""From the results dict to files: figures + summary.rst, DVC plot CSVs, the headline metrics and the full JSON.

Nothing is computed here that a reader could not find in the results dict (figures also get the images).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsr.core.parameters import CLASSES
from medsr.evaluation.comparisons import Arm
from medsr.evaluation.operating_point import predict
from medsr.evaluation.roc import MAX_FPR
from medsr.core.io import atomic_dir, write_csv, write_json
from medsr.classifier.predictions import Key, Scores
from medsr.report import figures as draw
from medsr.report.figures import ROC_FIGURES
from medsr.report.headline import headline
from medsr.report.summary import summary_rst
from medsr.report.tables import VERDICT_WORDS, interval, num, pvalue, verdict_p

FORMAT_VERSION = 2
FIGURES = ("fnr_forest.png", "examples.png", "difference_maps.png", "confusion_matrices.png", "mcnemar_tables.png",
           "training_curves.png", "fnr_intervals.png", *ROC_FIGURES.values())
CONFUSION_POINT = "val"  # plots/confusion/<set>.csv: hr classifier, first train seed, val-chosen threshold


def figure_ids(ids: Sequence[str], labels: np.ndarray, count: int) -> list[int]:
    """Deterministic: evenly spaced over the id order, ceil(count / 2) unhealthy, the rest healthy."""
    chosen = []
    n_unhealthy = min(math.ceil(count / 2), int(labels.sum()))
    for cls, k in ((1, n_unhealthy), (0, min(count - n_unhealthy, int((labels == 0).sum())))):
        members = np.flatnonzero(labels == cls)
        if k > 0:
            chosen += [int(members[j]) for j in np.unique(np.linspace(0, len(members) - 1, k).round().astype(int))]
    return chosen


def forest_rows(results: Mapping[str, Any]) -> list[tuple]:
    return [(f"{v['question']}: {v['first_title']} vs {v['second_title']} ({v['holds']}/{v['replicates']})",
             v["fnr_difference_val"]["value"], v["fnr_difference_val"]["ci_low"], v["fnr_difference_val"]["ci_high"],
             [r["fnr_difference"]["value"] for r in v["per_replicate"] if r["fnr_difference"]["value"] is not None],
             v["leaks_label"]) for v in results["verdicts"]]


def shown_sets(results: Mapping[str, Any]) -> list[str]:
    """Sets in the image figures: bicubic, regression, one SR set per group (lowest seed), external sets."""
    seen, out = set(), []
    for name, entry in results["sets"].items():
        if entry["kind"] == "hr" or entry["group"] in seen:
            continue
        seen.add(entry["group"])
        out.append(name)
    return out


def column_title(results: Mapping[str, Any], name: str) -> str:
    entry = results["sets"][name]
    return entry["title"] + (" [ORACLE]" if entry["leaks_label"] and "LEAKS" not in entry["title"] else "")


def mcnemar_panels(results: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, int], str]]:
    """Q1 and Q2 verdicts: the unhealthy-only table of their first replicate."""
    panels = []
    for v in results["verdicts"]:
        if v["question"] not in ("Q1", "Q2"):
            continue
        r = v["per_replicate"][0]
        leak = " [ORACLE]" if v["leaks_label"] else ""
        panels.append((r["first"], r["second"], r["table_unhealthy"],
                       f"{v['question']}, unhealthy images, seed {r['train_seed']}: {r['test']} p = {r['pvalue']:.3g}, "
                       f"Holm {r['pvalue_holm']:.3g}{leak}"))
    return panels or [("hr", "hr", {"a": 0, "b": 0, "c": 0, "d": 0}, "no Q1 / Q2 comparison")]


def roc_panels(results: Mapping[str, Any], question: str) -> list[tuple[str, list[tuple[str, Mapping]]]]:
    """The fair comparisons of a question: (panel title, [(arm label, its pooled ROC)] for first and second)."""
    panels = []
    for v in results["verdicts"]:
        if v["question"] != question or v["leaks_label"]:
            continue
        arms = []
        for side in ("first", "second"):
            group = results["arm_groups"][v[side]]
            pauc = group["pooled"]["pauc"]["value"]
            arms.append((f"{side}: {group['title']}\nFNR {num(v[f'fnr_{side}_val']['value'])}, test specificity "
                         f"{num(v[f'specificity_{side}_val']['value'])}, pAUC {num(pauc)}", group["roc"]))
        panels.append((f"{v['first_title']}\nvs {v['second_title']}\n{VERDICT_WORDS[v['verdict']]} (Holm p "
                       f"{pvalue(verdict_p(v, '_holm'))}); pAUC difference "
                       f"{interval(v['pauc_difference'], signed=True)}", arms))
    return panels


def write_roc_figures(tmp: Path, results: Mapping[str, Any]) -> None:
    target = 1.0 - results["settings"]["val_specificity"]
    for question, name in ROC_FIGURES.items():
        draw.roc_curves(tmp / name, f"{question}: {results['questions'][question]} (test ROC curves, first "
                        "classifier family; the verdict is read at the val point)", roc_panels(results, question),
                        MAX_FPR, target)


def write_figures(folder: Path, results: Mapping[str, Any], scores: Mapping[Key, Scores],
                  images: Mapping[str, np.ndarray], lr_images: np.ndarray, chosen: Sequence[int],
                  row_titles: Sequence[str], curves: Sequence[tuple], trust_data: Mapping[str, Any] | None = None,
                  figure_images: int = 4) -> list[str]:
    """Write every figure; returns the trust figures written (those with data)."""
    seed = results["settings"]["train_seeds"][0]
    reference = next(iter(results["sets"]))
    shown = shown_sets(results)
    with atomic_dir(folder) as tmp:
        draw.fnr_forest(tmp / "fnr_forest.png", forest_rows(results), results["settings"]["confidence"])
        draw.examples(tmp / "examples.png", [("LR", lr_images), ("HR", images[reference][chosen])]
                      + [(column_title(results, n), images[n][chosen]) for n in shown], row_titles)
        draw.difference_maps(tmp / "difference_maps.png", images[reference][chosen],
                             [(column_title(results, n), images[n][chosen]) for n in shown], row_titles)
        matrices = {}
        for key, arm in results["arms"].items():
            counts = arm["per_seed"][str(seed)]["val"]["confusion"]
            flag = " [ORACLE]" if arm["leaks_label"] else ""
            matrices[f"{key}{flag}\n(train seed {seed}, val threshold)"] = np.array(
                [[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
        draw.confusion_matrices(tmp / "confusion_matrices.png", matrices)
        draw.mcnemar_tables(tmp / "mcnemar_tables.png", mcnemar_panels(results))
        draw.training_curves(tmp / "training_curves.png", curves)
        draw.fnr_intervals(tmp / "fnr_intervals.png",
                           [(k, g["pooled"]["fnr_val"]["value"], g["pooled"]["fnr_val"]["ci_low"],
                             g["pooled"]["fnr_val"]["ci_high"], g["leaks_label"])
                            for k, g in results["arm_groups"].items()], results["settings"]["confidence"])
        write_roc_figures(tmp, results)
        written = write_trust_figures(tmp, results.get("trust") or {}, trust_data or {}, figure_images,
                                      results["settings"]["train_seeds"][0])
        (tmp / "summary.rst").write_text(summary_rst(results))
    return written


def write_trust_figures(tmp: Path, trust_results: Mapping[str, Any], trust_data: Mapping[str, Any], count: int,
                        seed: int) -> list[str]:
    """The trust audit's figures, for the SR sets with posterior samples; the maps show the first such
    set with a null run (else the first), on test images chosen as in the other figures."""
    if not trust_data:
        return []
    written = []
    names = list(trust_data)
    shown = next((n for n in names if trust_results["sets"][n]["guidance"] == "null"), names[0])
    test = trust_data[shown]["data"]["test"]
    if test["ids"]:
        chosen = figure_ids(test["ids"], test["labels"], count)
        titles = [f"{test['ids'][i]} ({CLASSES[test['labels'][i]]})" for i in chosen]
        samples = test["samples"][chosen]
        draw.posterior_maps(tmp / "posterior_maps.png", test["hr"][chosen], samples.mean(axis=1),
                            samples.std(axis=1), trust_data[shown]["lambda"], titles)
        written.append("posterior_maps.png")
        if test["swapped"] is not None:
            draw.swap_maps(tmp / "swap_maps.png", test["hr"][chosen], samples[:, 0], test["swapped"][chosen], titles)
            written.append("swap_maps.png")
    curves = {n: trust_results["sets"][n]["intervals"]["coverage_curve"] for n in names
              if "coverage_curve" in trust_results["sets"][n]["intervals"]}
    if curves:
        draw.coverage_reliability(tmp / "coverage_reliability.png", curves,
                                  next(iter(trust_results["sets"].values()))["intervals"]["alpha"],
                                  {n: trust_data[n]["lambda"] for n in names})
        written.append("coverage_reliability.png")
    shares = {n: np.array(trust_results["sets"][n]["stability"]["per_seed"][str(seed)]["unhealthy_share_per_image"])
              for n in names if trust_data[n]["data"]["test"]["ids"]}
    if shares:
        draw.stability_histogram(tmp / "decision_stability.png", shares, test["labels"],
                                 trust_results["sets"][shown]["samples_per_image"])
        written.append("decision_stability.png")
    return written


def write_plots(folder: Path, results: Mapping[str, Any], scores: Mapping[Key, Scores]) -> None:
    seed = results["settings"]["train_seeds"][0]
    with atomic_dir(folder) as tmp:
        (tmp / "confusion").mkdir()
        for name, entry in results["sets"].items():
            arm = results["arms"][str(Arm(name, "hr"))]
            threshold = arm["per_seed"][str(seed)]["operating_points"][CONFUSION_POINT]["threshold"]
            test = scores[("hr", seed, name, "test")]
            write_csv(tmp / "confusion" / f"{name}.csv",
                      [{"actual": CLASSES[a], "predicted": CLASSES[b]}
                       for a, b in zip(test.labels, predict(test.scores, threshold))], ("actual", "predicted"))
        fields = ("arm", "fnr", "ci_low", "ci_high", "fnr_at_0.5", "leaks_label")
        write_csv(tmp / "fnr.csv", [{"arm": k, "fnr": g["pooled"]["fnr_val"]["value"],
                                     "ci_low": g["pooled"]["fnr_val"]["ci_low"],
                                     "ci_high": g["pooled"]["fnr_val"]["ci_high"],
                                     "fnr_at_0.5": g["pooled"]["fnr_0.5"]["value"], "leaks_label": g["leaks_label"]}
                                    for k, g in results["arm_groups"].items()], fields)
        write_csv(tmp / "fnr_differences.csv",
                  [{"comparison": v["id"], "difference": v["fnr_difference_val"]["value"],
                    "ci_low": v["fnr_difference_val"]["ci_low"], "ci_high": v["fnr_difference_val"]["ci_high"],
                    "holds": f"{v['holds']}/{v['replicates']}", "leaks_label": v["leaks_label"]}
                   for v in results["verdicts"]], ("comparison", "difference", "ci_low", "ci_high", "holds",
                                                   "leaks_label"))


def write_outputs(*, results: Mapping[str, Any], metrics: Path, results_path: Path) -> None:
    write_json(results_path, {"format_version": FORMAT_VERSION, **results})
    write_json(metrics, headline(results))
