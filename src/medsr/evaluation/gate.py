"""The learning gate: did the classifiers learn this data? Checked before any verdict.

A verdict compares the false negatives of classifiers; if a classifier has not learned the task, its misses say
nothing about the images it is shown, and a p-value computed from them is confident nonsense. Two declared checks
(evaluate.gate_*), both on data the choices may see (val, and the training histories):

- every classifier family's HR-trained classifier, every train seed, reaches an AUROC of at least
  `gate_min_hr_val_auroc` on the HR val images (its own domain: the easiest task it was trained for);
- with `gate_require_converged`, every classifier the run trained (every family, domain and seed) has
  `converged` in its history CSV (medsr.classifier.stopping.Stopping: its val criterion had stopped improving before
  train_classifier.epochs ran out);
- with `gate_chance_alpha` > 0, every classifier the run trained ranks the val images of its own kind (the val
  split of the set it was trained on) above chance: its kept epoch's val AUROC (history CSV) exceeds 0.5 by a
  one-sided z test with the Mann-Whitney null variance (n_pos + n_neg + 1) / (12 n_pos n_neg) (Hanley & McNeil
  1982). A classifier at chance in one arm, e.g. a bicubic baseline whose training ended before it learned, would
  make the other arm look better for no reason the images give; the HR floor above does not see it. No number is
  tuned: the level is the test's, and the bar rises as val shrinks (400 val images: AUROC 0.548).

When a check fails, every verdict is NO_VERDICT (its numbers stay, as description only) and the summary, report
and README block lead with NO_VERDICT_TEXT and the reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from medsr.core.parameters import EvaluateParams
from medsr.evaluation.metrics import auroc, finite_or_none
from medsr.classifier.predictions import Key, Scores
from medsr.stages import CLASSIFIER_LOG, file_domains
from medsr.classifier.stopping import training_record

NO_VERDICT = "no_verdict"
NO_VERDICT_TEXT = "The classifiers did not learn this data: no verdict"


def classifier_records(params: EvaluateParams, architectures: Sequence[str],
                       logs: Sequence[Path]) -> dict[str, dict[str, Any] | None]:
    """History file name -> its run record, for every classifier of the run (None where the file is missing from
    `logs` or predates the record)."""
    by_name = {Path(log).name: Path(log) for log in logs}
    out: dict[str, dict[str, Any] | None] = {}
    for architecture in architectures:
        for domain in file_domains(params):
            for seed in params.train_seeds:
                name = CLASSIFIER_LOG.format(arch=architecture, domain=domain, seed=seed)
                out[name] = training_record(by_name[name]) if name in by_name else None
    return out


def hr_val_aurocs(params: EvaluateParams, scores_by_architecture: Mapping[str, Mapping[Key, Scores]],
                  hr_set: str) -> dict[str, dict[str, float | None]]:
    """Architecture -> train seed -> AUROC of the HR-trained classifier on the HR val images (None: undefined, val
    holds one class only)."""
    return {a: {str(seed): finite_or_none(auroc(scores[("hr", seed, hr_set, "val")].labels,
                                                scores[("hr", seed, hr_set, "val")].scores))
                for seed in params.train_seeds}
            for a, scores in scores_by_architecture.items()}


def chance_pvalue(value: float, n_pos: int, n_neg: int) -> float:
    """One-sided p of AUROC `value` under "ranks at chance" (AUROC 0.5): the normal approximation of the
    Mann-Whitney U statistic, whose null variance of U / (n_pos n_neg) is (n_pos + n_neg + 1) / (12 n_pos n_neg).
    1.0 when val lacks a class (nothing to rank)."""
    if n_pos == 0 or n_neg == 0:
        return 1.0
    se = ((n_pos + n_neg + 1) / (12 * n_pos * n_neg)) ** 0.5
    return float(norm.sf((value - 0.5) / se))


def learning_gate(params: EvaluateParams, scores_by_architecture: Mapping[str, Mapping[Key, Scores]], hr_set: str,
                  logs: Sequence[Path]) -> dict[str, Any]:
    """{"passed", "reasons" (one line each), the settings, and what they were checked on}."""
    aurocs = hr_val_aurocs(params, scores_by_architecture, hr_set)
    records = classifier_records(params, list(scores_by_architecture), logs)
    reasons = [f"{a} HR-trained classifier, train seed {seed}: HR val AUROC "
               f"{'undefined (one class in val)' if value is None else f'{value:.3f}'}, below the floor "
               f"{params.gate_min_hr_val_auroc:g} (evaluate.gate_min_hr_val_auroc)"
               for a, per_seed in aurocs.items() for seed, value in per_seed.items()
               if value is None or value < params.gate_min_hr_val_auroc]
    if params.gate_chance_alpha > 0:
        labels = next(iter(scores_by_architecture.values()))[("hr", params.train_seeds[0], hr_set, "val")].labels
        n_pos, n_neg = int(np.sum(labels == 1)), int(np.sum(labels == 0))
        for name, record in records.items():
            if record is None or record.get("val_auroc") is None:
                reasons.append(f"{Path(name).stem}: no val AUROC of its kept epoch in its training history "
                               f"(evaluate.gate_chance_alpha)")
                continue
            record["chance_pvalue"] = chance_pvalue(record["val_auroc"], n_pos, n_neg)
            if record["chance_pvalue"] >= params.gate_chance_alpha:
                reasons.append(f"{Path(name).stem}: val AUROC {record['val_auroc']:.3f} on its own val images is not "
                               f"above chance (one-sided p {record['chance_pvalue']:.2g} >= "
                               f"{params.gate_chance_alpha:g}, {n_pos} + {n_neg} val images; "
                               f"evaluate.gate_chance_alpha)")
    if params.gate_require_converged:
        for name, record in records.items():
            if record is None:
                reasons.append(f"{name}: no training history with a convergence record among the training logs")
            elif not record["converged"]:
                reasons.append(f"{Path(name).stem}: not converged: best val criterion at epoch "
                               f"{record['best_epoch']} of {record['epochs_run']} trained, still improving at the "
                               f"budget (train_classifier.epochs / patience; evaluate.gate_require_converged)")
    return {"passed": not reasons, "reasons": reasons,
            "min_hr_val_auroc": params.gate_min_hr_val_auroc, "require_converged": params.gate_require_converged,
            "chance_alpha": params.gate_chance_alpha,
            "hr_val_auroc": aurocs, "classifiers": records}


def withhold(verdicts: list[dict[str, Any]]) -> None:
    """Every verdict becomes NO_VERDICT; the numbers (FNRs, p-values, holds) stay, as description only."""
    for v in verdicts:
        v["verdict"] = NO_VERDICT
