"""The trust audit of evaluate: what the SR model invents, from its posterior samples.

Reads the posterior samples of every SR set that has them (medsr.diffusion.posterior, hash-checked) and the rows of
`medsr classify` for `<set>~sample<k>` / `<set>~swapped`; computes (medsr.evaluation.trust):
  intervals   per SR set: lambda calibrated on its val posterior images (RCPS), reported on its test ones
  stability   per SR set and train seed: the HR-trained classifier on every sample, at the set's val threshold
  injection   per null SR set and train seed: the swapped-label draw against the null draw with the same noise
  crc         per (set, classifier) arm of HR, bicubic (matched) and SR (HR classifier) and train seed: the
              conformal-risk-control threshold on val, its FNR and specificity on test
Everything chosen here is chosen on val; test is only measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsr.core.parameters import EvaluateParams
from medsr.core.errors import MedsrError
from medsr.evaluation import trust
from medsr.evaluation.comparisons import Arm
from medsr.data.image_sets import ImageSet
from medsr.diffusion.posterior import load_posterior
from medsr.classifier.predictions import Key, Scores, posterior_rows

COVERAGE_LAMBDAS = np.round(np.arange(0.0, 6.01, 0.25), 2)  # lambdas of the reliability plot


def interval_audit(data: Mapping[str, Any], params: EvaluateParams) -> tuple[dict[str, Any], float | None]:
    val, test = data["val"], data["test"]
    out: dict[str, Any] = {"val_images": len(val["ids"]), "test_images": len(test["ids"]),
                           "alpha": params.rcps_alpha, "delta": params.rcps_delta, "bound": "hoeffding"}
    if not val["ids"] or not test["ids"] or val["samples"].shape[1] < 2:
        out["status"] = "skipped: needs val and test posterior images with at least 2 samples"
        return out, None
    moments = {s: (d["samples"].mean(axis=1), d["samples"].std(axis=1)) for s, d in (("val", val), ("test", test))}
    losses = trust.miss_rates(val["hr"], *moments["val"], trust.LAMBDA_GRID)
    lam = trust.rcps_lambda(losses, trust.LAMBDA_GRID, params.rcps_alpha, params.rcps_delta)
    coverage = {s: (1.0 - trust.miss_rates(d["hr"], *moments[s], COVERAGE_LAMBDAS).mean(axis=0)).tolist()
                for s, d in (("val", val), ("test", test))}
    out["coverage_curve"] = {"lambda": COVERAGE_LAMBDAS.tolist(), **coverage}
    if lam is None:
        out["status"] = (f"no lambda: the Hoeffding bound on {len(val['ids'])} val images cannot reach "
                         f"alpha {params.rcps_alpha} at delta {params.rcps_delta} (more posterior images needed)")
        return out, None
    out["status"] = "calibrated on val"
    out["test"] = trust.interval_report(test["hr"], *moments["test"], lam, params.error_threshold)
    return out, lam


def calls(rows: Mapping[str, float], ids: Sequence[str], threshold: float, what: str) -> np.ndarray:
    missing = next((i for i in ids if i not in rows), None)
    if missing is not None:
        raise MedsrError(f"predictions: no posterior row for image {missing} of {what} (rerun classify)")
    return np.array([rows[i] > threshold for i in ids], dtype=np.int64)  # operating_point.predict's rule


def main_scores(scores: Mapping[Key, Scores], key: Key, ids: Sequence[str]) -> dict[str, float]:
    s = scores[key]
    return {i: float(v) for i, v in zip(s.ids, s.scores) if i in set(ids)}


def decision_audit(
    name: str,
    data: Mapping[str, Any],
    rows,
    scores: Mapping[Key, Scores],
    thresholds: Mapping[int, float],
    params: EvaluateParams,
) -> dict[str, Any]:
    test = data["test"]
    ids, n_samples = test["ids"], 0 if test["samples"] is None else test["samples"].shape[1]
    out: dict[str, Any] = {"classifier": "hr", "point": "val", "per_seed": {}}
    injection: dict[str, Any] = {}
    for seed in params.train_seeds:
        t = thresholds[seed]
        main = calls(main_scores(scores, ("hr", seed, name, "test"), ids), ids, t, name)
        per_sample = np.stack([calls(rows.get(("hr", seed, f"{name}~sample{k}", "test"), {}), ids, t,
                                     f"{name} sample {k}") for k in range(n_samples)], axis=1)
        out["per_seed"][str(seed)] = trust.stability(per_sample, main, test["labels"])
        if test["swapped"] is not None:
            swapped = calls(rows.get(("hr", seed, f"{name}~swapped", "test"), {}), ids, t, f"{name} swapped")
            injection[str(seed)] = trust.label_injection(swapped, per_sample[:, 0], 1 - test["labels"],
                                                         params.confidence)
    seeds = out["per_seed"].values()
    out["pooled"] = {"unstable_share": trust.mean_or_none([s["unstable_share"] for s in seeds]),
                     "fnr_stable": trust.mean_or_none([s["fnr_stable"] for s in seeds]),
                     "fnr_unstable": trust.mean_or_none([s["fnr_unstable"] for s in seeds]),
                     "false_negatives": sum(s["false_negatives"] for s in seeds),
                     "false_negatives_caught": sum(s["false_negatives_caught"] for s in seeds)}
    return {"stability": out, "injection": injection or None}


def crc_audit(sets: Sequence[ImageSet], scores: Mapping[Key, Scores], params: EvaluateParams) -> dict[str, Any]:
    """Per arm (HR + HR classifier, bicubic + bicubic classifier, each SR set + HR classifier) and train seed."""
    arms = [Arm(s.name, "hr") for s in sets if s.kind in ("hr", "sr")] + [Arm(s.name, "bicubic") for s in sets
                                                                          if s.kind == "bicubic"]
    out: dict[str, Any] = {}
    for name, classifier in arms:
        leaks = next(s.leaks_label for s in sets if s.name == name)
        per_seed = {}
        for seed in params.train_seeds:
            val, test = scores[(classifier, seed, name, "val")], scores[(classifier, seed, name, "test")]
            t, feasible = trust.crc_threshold(val.scores[val.labels == 1], params.crc_alpha)
            healthy = test.scores[test.labels == 0]
            per_seed[str(seed)] = {"threshold": t, "feasible": feasible, "val_unhealthy": int(val.labels.sum()),
                                   "test_fnr": trust.crc_loss(test.scores[test.labels == 1], t),
                                   "test_specificity": float(np.mean(healthy <= t)) if len(healthy) else None}
        out[str(Arm(name, classifier))] = {
            "set": name, "classifier": classifier, "leaks_label": leaks, "alpha": params.crc_alpha,
            "per_seed": per_seed,
            "test_fnr": trust.mean_or_none([p["test_fnr"] for p in per_seed.values()]),
            "test_specificity": trust.mean_or_none([p["test_specificity"] for p in per_seed.values()])}
    return out


def audit(params: EvaluateParams, *, sets: Sequence[ImageSet], scores: Mapping[Key, Scores],
          result: Mapping[str, Any], predictions: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the "trust" block of the results, the arrays its figures need)."""
    rows = posterior_rows(predictions, result["architecture"])
    out: dict[str, Any] = {"sets": {}, "crc": crc_audit(sets, scores, params)}
    figure_data: dict[str, Any] = {}
    for s in sets:
        if s.kind != "sr":
            continue
        data = load_posterior(s, sets[0])
        if data is None:
            continue
        intervals, lam = interval_audit(data, params)
        thresholds = {seed: result["arms"][str(Arm(s.name, "hr"))]["per_seed"][str(seed)]["operating_points"]["val"]
                      ["threshold"] for seed in params.train_seeds}
        entry = {"guidance": s.guidance, "leaks_label": s.leaks_label,
                 "samples_per_image": int(data["test"]["samples"].shape[1]) if data["test"]["ids"] else 0,
                 "intervals": intervals, **decision_audit(s.name, data, rows, scores, thresholds, params)}
        if entry["injection"] is not None:
            entry["injection_leaks_label"] = True  # the swapped draw was told the opposite of the true label
        out["sets"][s.name] = entry
        figure_data[s.name] = {"data": data, "lambda": lam}
    return out, figure_data
