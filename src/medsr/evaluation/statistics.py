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
The test of false negatives is McNemar restricted to the truly unhealthy images (`unhealthy_only`): there
"correct" means "called unhealthy", so b and c count images one side catches and the other misses.
Several replicates of one comparison (train seeds x sampling seeds, the same test images each time) are tested
together by `sign_flip_test`: the exact paired randomization test (Fisher 1935, Pitman 1937) of the per-image
sum over replicates of (first misses - second misses); with one replicate it is the exact McNemar test.
AUROC differences: DeLong, DeLong & Clarke-Pearson (1988), paired (same images scored twice).
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import numpy as np
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar

from medsr.evaluation.metrics import auroc_kernel, bootstrap_rates, confusion, estimate, rates

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


def sign_flip_test(first_misses: np.ndarray, second_misses: np.ndarray) -> dict[str, object]:
    """Exact paired randomization test of replicates x images miss indicators (1 = an unhealthy image called
    healthy), the same images in every replicate (Fisher 1935, Pitman 1937).

    Per image i: k_i = sum over replicates r of (first_ri - second_ri), an integer in [-R, R]; statistic
    S = sum_i k_i = R x m x (mean FNR difference). Null: for every image the two arms are exchangeable (the image
    set makes no difference to that image's calls, in any replicate), so each k_i is as likely as -k_i and
    S* = sum_i e_i |k_i| with independent signs e_i = +-1. Two-sided p = P(|S*| >= |S|), computed exactly by
    convolving the images one at a time (no Monte Carlo). With R = 1, |k_i| = 1 on the b + c discordant images
    and p is the exact McNemar (1947) binomial p."""
    first, second = np.asarray(first_misses, dtype=np.int64), np.asarray(second_misses, dtype=np.int64)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(f"sign_flip_test: replicates x images arrays of one shape expected, got {first.shape}, "
                         f"{second.shape}")
    k = (first - second).sum(axis=0)
    weights = np.abs(k[k != 0])
    statistic = int(k.sum())
    out: dict[str, object] = {"statistic": statistic, "replicates": int(first.shape[0]),
                              "images": int(first.shape[1]), "informative_images": int(weights.size),
                              "favours": "first" if statistic < 0 else "second" if statistic > 0 else "neither"}
    if weights.size == 0 or statistic == 0:
        out["pvalue"] = 1.0
        return out
    total = int(weights.sum())
    probability = np.zeros(2 * total + 1)  # P(S* = s) at index s + total
    probability[total] = 1.0
    for w in weights:
        shifted = np.zeros_like(probability)
        shifted[w:] += probability[:-w]
        shifted[:-w] += probability[w:]
        probability = 0.5 * shifted  # exact halving; elementwise sums: the same on every CPU
    values = np.arange(-total, total + 1)
    out["pvalue"] = min(1.0, math.fsum(probability[np.abs(values) >= abs(statistic)]))
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjustment over one family of m tests: with p_(1) <= ... <= p_(m),
    p~_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)), returned in the input order.

    Written out rather than statsmodels' `multipletests(method="holm")`, which is the same formula but calls
    `gc.collect()` on every call (0.3 s each in a process holding torch: most of `evaluate`'s time)."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1)))
    adjusted = np.empty_like(stepped)
    adjusted[order] = stepped
    return [float(v) for v in adjusted]


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


def delong_paired(labels: np.ndarray, first_scores: np.ndarray, second_scores: np.ndarray) -> dict[str, float | None]:
    """Paired test of AUROC(first) - AUROC(second) on the same images, DeLong et al. (1988).

    psi(x, y) = 1 if x > y, 1/2 if x = y, else 0, for positive score x and negative score y; m positives, n negatives.
    Structural components per modality r: V10_r(i) = (1/n) sum_j psi(X_ri, Y_rj)  (one per positive i),
                                           V01_r(j) = (1/m) sum_i psi(X_ri, Y_rj)  (one per negative j).
    AUROC_r = mean_i V10_r(i). S10, S01 = 2x2 sample covariance matrices (ddof 1) of (V10_1, V10_2), (V01_1, V01_2).
    Var(AUROC_1 - AUROC_2) = L S10 L' / m + L S01 L' / n with L = (1, -1)   (DeLong et al. 1988, Eq. 6-7);
    z = (AUROC_1 - AUROC_2) / sqrt(Var), two-sided p = 2 (1 - Phi(|z|)).
    """
    labels = np.asarray(labels).astype(bool)
    m, n = int(labels.sum()), int((~labels).sum())
    if m < 2 or n < 2:
        return {"difference": None, "se": None, "z": None, "pvalue": None}
    kernels = [auroc_kernel(labels, s) for s in (first_scores, second_scores)]
    v10 = np.stack([k.mean(axis=1) for k in kernels])  # 2 x m
    v01 = np.stack([k.mean(axis=0) for k in kernels])  # 2 x n
    difference = float(v10[0].mean() - v10[1].mean())
    contrast = np.array([1.0, -1.0])
    variance = float(contrast @ np.cov(v10) @ contrast / m + contrast @ np.cov(v01) @ contrast / n)
    if variance <= 1e-15:  # degenerate (e.g. identical rankings): p = 1 without a difference, else undefined
        return {"difference": difference, "se": 0.0, "z": None, "pvalue": 1.0 if abs(difference) < 1e-12 else None}
    z = difference / np.sqrt(variance)
    return {"difference": difference, "se": float(np.sqrt(variance)), "z": float(z),
            "pvalue": float(2 * norm.sf(abs(z)))}
