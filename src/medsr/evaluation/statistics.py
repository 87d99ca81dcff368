"""Paired tests between two image sets classified on the same test images.

McNemar (1947) 2x2 table, the thesis's convention (Table 4.4): rows = first set correct / incorrect,
columns = second set correct / incorrect:
    [[a, b],      a: both correct          b: first correct, second wrong
     [c, d]]      c: first wrong, second correct    d: both wrong
Only the discordant pairs b and c carry information. The primary test is fixed in advance:
  - b + c < exact_below: the exact binomial test, b ~ Bin(b + c, 1/2), two-sided;
  - otherwise: the chi-square test with Edwards' (1948) continuity correction, (|b - c| - 1)^2 / (b + c),
    the conservative choice; the uncorrected (b - c)^2 / (b + c) is also reported because the seed
    thesis used it (Table 4.4: b = 15, c = 40 -> 11.364, p = 0.000749).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from medsr.evaluation.metrics import bootstrap_rates, estimate, rates, confusion

PRIMARY_EXACT = "exact"
PRIMARY_CHI2 = "chi2_corrected"


def contingency(first_correct: np.ndarray, second_correct: np.ndarray) -> dict[str, int]:
    first, second = np.asarray(first_correct).astype(bool), np.asarray(second_correct).astype(bool)
    return {"a": int(np.sum(first & second)), "b": int(np.sum(first & ~second)),
            "c": int(np.sum(~first & second)), "d": int(np.sum(~first & ~second))}


def mcnemar_test(table: dict[str, int], exact_below: int) -> dict[str, object]:
    """Every McNemar variant that applies to the table, which one is primary, and its p-value."""
    a, b, c, d = table["a"], table["b"], table["c"], table["d"]
    matrix = [[a, b], [c, d]]
    out: dict[str, object] = {"b_plus_c": b + c}
    if b + c < exact_below or b + c == 0:  # no discordant pair: nothing to test, p = 1
        result = mcnemar(matrix, exact=True)
        out["exact"] = {"statistic": float(result.statistic), "pvalue": float(result.pvalue)}
        primary = PRIMARY_EXACT
    else:
        for name, correction in ((PRIMARY_CHI2, True), ("chi2_uncorrected", False)):
            result = mcnemar(matrix, exact=False, correction=correction)
            out[name] = {"statistic": float(result.statistic), "pvalue": float(result.pvalue), "df": 1}
        primary = PRIMARY_CHI2
    out["primary"] = primary
    out["pvalue"] = out[primary]["pvalue"]  # type: ignore[index]
    out["favours"] = "first" if b > c else "second" if c > b else "neither"
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjustment over one family of tests."""
    if not pvalues:
        return []
    return [float(p) for p in multipletests(list(pvalues), method="holm")[1]]


def paired_rate_difference(weights: np.ndarray, labels: np.ndarray, first_preds: np.ndarray,
                           second_preds: np.ndarray, rate: str, confidence: float) -> dict[str, float | None]:
    """rate(first) - rate(second) with a paired bootstrap interval (the same resamples for both sets)."""
    point = (rates(**confusion(labels, first_preds).as_dict())[rate]
             - rates(**confusion(labels, second_preds).as_dict())[rate])
    samples = bootstrap_rates(weights, labels, first_preds)[rate] - bootstrap_rates(weights, labels, second_preds)[rate]
    return estimate(point, samples, confidence)


def compare(labels: np.ndarray, first_preds: np.ndarray, second_preds: np.ndarray, weights: np.ndarray,
            confidence: float, exact_below: int) -> dict[str, object]:
    """McNemar on all test images and on the truly unhealthy ones (the test of FNR), plus differences."""
    labels = np.asarray(labels).astype(bool)
    first_correct, second_correct = first_preds == labels, second_preds == labels
    table = contingency(first_correct, second_correct)
    positives = contingency(first_correct[labels], second_correct[labels])
    return {
        "table": table,
        "mcnemar": mcnemar_test(table, exact_below),
        "unhealthy_only": {"table": positives, "mcnemar": mcnemar_test(positives, exact_below)},
        "fnr_difference": paired_rate_difference(weights, labels, first_preds, second_preds, "fnr", confidence),
        "accuracy_difference": paired_rate_difference(weights, labels, first_preds, second_preds, "accuracy",
                                                      confidence),
    }
