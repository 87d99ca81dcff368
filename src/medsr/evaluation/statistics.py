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
That test holds the trained classifiers and their val thresholds fixed; `seed_image_t`, `two_level_bootstrap` and
`crossed_t` take the training run as the unit of replication (seeds and images both random), so their verdicts
generalize over retraining and new images (benchmarks/aa_calibration.py measures every test's A/A rejection rate on
val); `two_level_bootstrap` and `crossed_t` (with `shared_threshold_variance`) also over a new val set.
AUROC differences: DeLong, DeLong & Clarke-Pearson (1988), paired (same images scored twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import math

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t
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
    `gc.collect()` on every call (slow in a process holding torch)."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1)))
    adjusted = np.empty_like(stepped)
    adjusted[order] = stepped
    return [float(v) for v in adjusted]


def holm_adjust(tests: Sequence[dict[str, Any]]) -> None:
    """Adds "pvalue_holm" to each test of one family (in place): `holm` of their "pvalue"s, in the same order."""
    for test, adjusted in zip(tests, holm([t["pvalue"] for t in tests])):
        test["pvalue_holm"] = adjusted


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


# --- verdict tests whose unit of replication is the training run ---------------------------
# Replicate r of the first arm and replicate r of the second share a training seed (the bicubic classifier of seed
# s fine-tunes the HR classifier of seed s); arrays are seeds x images, rows paired by seed, columns by image.

NOT_TESTABLE_ONE_SEED = ("one training seed: the variance between training runs cannot be estimated, so the "
                         "verdict cannot generalize over retraining (p = 1 by convention)")


def seed_image_t(first_misses: np.ndarray, second_misses: np.ndarray) -> dict[str, object]:
    """Seed-level paired t test of the FNR difference with an image-level variance term: the verdict generalizes
    over new training seeds and new images of this kind.

    `first_misses`, `second_misses`: S seeds x m unhealthy test images, 1 = missed at that seed's own val threshold
    (a fraction when a seed's misses are averaged over sampling seeds). Per seed d_s = mean_i (first_si - second_si)
    (its FNR difference); per image kbar_i = mean_s (first_si - second_si). With dbar = mean_s d_s:
        SE^2 = var_s(d) / S + var_i(kbar) / m        (ddof 1 both; a two-way crossed design seed x image, the
                                                      variance of a grand mean, e.g. Baayen, Davidson & Bates 2008)
        T = dbar / SE,  two-sided p from Student's t with S - 1 degrees of freedom.
    var_s(d) / S is the seed component (retraining, and each seed's own val threshold, drawn anew) with the
    seed x image interaction; var_i(kbar) / m adds the sampling of the images. The Satterthwaite (1946) degrees of
    freedom of this sum lie between S - 1 and S + m - 2; S - 1, the smallest, gives the widest t quantile, so the
    test is conservative where the seed term dominates and nearly exact where it does (the usual case: a few
    seeds, hundreds of images).
    Edge cases: S = 1 -> not testable, p = 1 (`NOT_TESTABLE_ONE_SEED`); SE = 0 -> p = 1 when dbar = 0, else every
    seed and image differ by the same nonzero amount and t is undefined: the exact sign-flip test of the S seed-level
    differences (Fisher 1935) gives p = 2 (1/2)^S, its smallest attainable value (0.5 with two seeds: a chance
    agreement of few seeds on few images is not evidence)."""
    first, second = np.asarray(first_misses, dtype=np.float64), np.asarray(second_misses, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 2 or first.shape[1] == 0:
        raise ValueError(f"seed_image_t: seeds x images arrays of one shape expected, got {first.shape}, "
                         f"{second.shape}")
    seeds, images = first.shape
    k = first - second
    d, kbar = k.mean(axis=1), k.mean(axis=0)
    mean = float(d.mean())
    out: dict[str, object] = {"test": "seed_image_t", "seeds": seeds, "images": images, "difference": mean,
                              "favours": _favours(mean)}
    if seeds < 2:
        return {**out, "testable": False, "reason": NOT_TESTABLE_ONE_SEED, "statistic": None, "df": 0,
                "se": None, "pvalue": 1.0}
    var_seed = float(d.var(ddof=1)) / seeds
    var_image = float(kbar.var(ddof=1)) / images if images > 1 else 0.0
    se = math.sqrt(var_seed + var_image)
    out.update({"testable": True, "df": seeds - 1, "se": se, "se_seed": math.sqrt(var_seed),
                "se_image": math.sqrt(var_image)})
    if se <= 1e-15:
        zero = abs(mean) < 1e-12
        return {**out, "statistic": None, "pvalue": 1.0 if zero else min(1.0, 2.0 ** (1 - seeds)),
                "reason": "zero variance over seeds and images: exact sign-flip test of the seed-level differences"}
    statistic = mean / se
    return {**out, "statistic": statistic, "pvalue": float(min(1.0, 2.0 * student_t.sf(abs(statistic), seeds - 1)))}


def _favours(difference: float) -> str:
    """The side with fewer misses: a negative first - second FNR difference favours the first."""
    return "first" if difference < -1e-12 else "second" if difference > 1e-12 else "neither"


def _as_replicates(scores: np.ndarray, what: str) -> np.ndarray:
    """seeds x images -> seeds x 1 x images; seeds x replicates (sampling seeds) x images kept."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim == 2:
        return array[:, None, :]
    if array.ndim != 3:
        raise ValueError(f"two_level_bootstrap: {what}: seeds x images or seeds x replicates x images expected, "
                         f"got shape {array.shape}")
    return array


def specificity_rank(healthy: int, specificity: float) -> int:
    """k of medsr.evaluation.operating_point.val_threshold: the threshold is the k-th smallest healthy val score."""
    return max(1, math.ceil(specificity * healthy - 1e-9))


def two_level_bootstrap(val_healthy: Sequence[np.ndarray], test_unhealthy: Sequence[np.ndarray], specificity: float,
                        resamples: int = 2000, seed: int = 0, chunk: int = 100) -> dict[str, object]:
    """Two-level (hierarchical) bootstrap of the mean FNR difference, first - second (Saravanan, Berman & Sober
    2020, "Application of the hierarchical bootstrap to multi-level data in neuroscience"; Davison & Hinkley 1997,
    Section 3.8): the verdict generalizes over new training seeds and new images, operating point included.

    `val_healthy` = (first, second): each seeds x n_h (or seeds x replicates x n_h) scores of the healthy val
    images; `test_unhealthy` = (first, second): seeds x m (or seeds x replicates x m) scores of the unhealthy test
    images; row s of each is training seed s (paired), columns are the same images on both sides.
    Each resample b: (1) draw S training seeds with replacement (a drawn seed brings both arms and all its
    replicates); (2) draw n_h healthy val images with replacement and recompute every (seed, replicate, arm)'s
    threshold on them by the rule of `operating_point.val_threshold` (the k-th smallest healthy score,
    k = ceil(specificity n_h)); (3) draw m unhealthy test images with replacement; d*_b = mean over drawn seeds
    and replicates of FNR(first) - FNR(second), a miss being score <= threshold. The images are drawn once per
    resample for all seeds (they are the same images in every seed: crossed, not nested).
    Two-sided p = min(1, 2 min((1 + #{d* <= 0}) / (B + 1), (1 + #{d* >= 0}) / (B + 1))) (Davison & Hinkley 1997,
    Eq. 4.11 with the +1 correction); 95% percentile interval of d*. S = 1: not testable, p = 1
    (`NOT_TESTABLE_ONE_SEED`). Seeded by `seed`: the same arrays give the same p on any machine (integer draws,
    comparisons, sums of 0/1)."""
    val = [_as_replicates(v, "val_healthy") for v in val_healthy]
    test = [_as_replicates(t, "test_unhealthy") for t in test_unhealthy]
    if len(val) != 2 or len(test) != 2 or val[0].shape != val[1].shape or test[0].shape != test[1].shape \
            or val[0].shape[:2] != test[0].shape[:2]:
        raise ValueError(f"two_level_bootstrap: paired arrays expected, got val {[v.shape for v in val]}, test "
                         f"{[t.shape for t in test]}")
    seeds, _, healthy = val[0].shape
    images = test[0].shape[2]
    if healthy == 0 or images == 0:
        raise ValueError("two_level_bootstrap: no healthy val image or no unhealthy test image")
    k = specificity_rank(healthy, specificity)
    thresholds = [np.sort(v, axis=2)[:, :, k - 1] for v in val]  # S x J
    first_fnr, second_fnr = ((t <= th[:, :, None]).mean() for t, th in zip(test, thresholds))
    point = float(first_fnr - second_fnr)
    out: dict[str, object] = {"test": "two_level_bootstrap", "seeds": seeds, "images": images,
                              "healthy_val_images": healthy, "resamples": resamples, "seed": seed,
                              "difference": point, "favours": _favours(point)}
    if seeds < 2:
        return {**out, "testable": False, "reason": NOT_TESTABLE_ONE_SEED, "pvalue": 1.0, "interval": None}
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        seed_idx = rng.integers(0, seeds, size=(b, seeds))
        healthy_idx = rng.integers(0, healthy, size=(b, healthy))
        image_idx = rng.integers(0, images, size=(b, images))
        fnr = []
        for v, t in zip(val, test):
            vs = v[seed_idx]  # b x S x J x n_h
            resampled = np.take_along_axis(vs, healthy_idx[:, None, None, :], axis=3)
            threshold = np.partition(resampled, k - 1, axis=3)[..., k - 1]  # b x S x J
            ts = np.take_along_axis(t[seed_idx], image_idx[:, None, None, :], axis=3)  # b x S x J x m
            fnr.append((ts <= threshold[..., None]).mean(axis=(1, 2, 3)))
        draws[start:start + b] = fnr[0] - fnr[1]
    below, above = int(np.sum(draws <= 0)), int(np.sum(draws >= 0))
    p = min(1.0, 2.0 * min((1 + below) / (resamples + 1), (1 + above) / (resamples + 1)))
    return {**out, "testable": True, "pvalue": float(p),
            "interval": [float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))],
            "se": float(draws.std(ddof=1))}


def crossed_t(differences: np.ndarray, threshold_variance: float = 0.0, healthy_val_images: int = 0
              ) -> dict[str, object]:
    """t test of the mean FNR difference in a crossed seeds x images design, each variance component counted once,
    plus the shared val set's threshold noise: the verdict generalizes over new training seeds, images and val sets.

    `differences`: S seeds x m unhealthy test images, d_si = miss_first - miss_second at seed s's own val thresholds
    (a seed's sampling seeds averaged). Two-way crossed random effects, one observation per cell: d_si = mu + a_s +
    b_i + e_si, variances sigma_a^2 (retraining), sigma_b^2 (the image), sigma_e^2 (seed x image), so
    Var(dbar) = sigma_a^2 / S + sigma_b^2 / m + sigma_e^2 / (S m). The ANOVA mean squares (Searle, Casella &
    McCulloch 1992, Ch. 4) and their expectations:
        MS_seed  = m sum_s (dbar_s. - dbar)^2 / (S - 1)                          E = sigma_e^2 + m sigma_a^2
        MS_image = S sum_i (dbar_.i - dbar)^2 / (m - 1)                          E = sigma_e^2 + S sigma_b^2
        MS_resid = sum (d_si - dbar_s. - dbar_.i + dbar)^2 / ((S - 1)(m - 1))     E = sigma_e^2
    so V = (MS_seed + MS_image - MS_resid) / (S m) is unbiased for Var(dbar). V <= 0 only when MS_resid exceeds
    both main-effect mean squares: both those components are then estimated as zero and V = MS_resid / (S m).
    Every seed's threshold comes from one val set, whose noise moves them together and never shows between seeds:
    `threshold_variance` (`shared_threshold_variance`) is added, SE^2 = V + V_val. Degrees of freedom by
    Satterthwaite (1946): nu = SE^4 / sum_k (c_k MS_k)^2 / nu_k over the terms c_k MS_k of SE^2, nu_k = S - 1,
    m - 1, (S - 1)(m - 1) and, for V_val, n_h - 1 (`healthy_val_images`). T = dbar / SE, two-sided p from t_nu.
    Not testable, p = 1: S = 1 (`NOT_TESTABLE_ONE_SEED`) or m = 1 (the image and interaction components cannot be
    told apart). SE = 0 (every d_si equal, no val noise): p = 1 when dbar = 0, else the exact sign-flip test of the
    S seed-level differences, p = 2 (1/2)^S, as `seed_image_t`."""
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] == 0:
        raise ValueError(f"crossed_t: a seeds x images array expected, got shape {d.shape}")
    seeds, images = d.shape
    mean = float(d.mean())
    out: dict[str, object] = {"test": "crossed_t", "seeds": seeds, "images": images, "difference": mean,
                              "favours": _favours(mean)}
    if seeds < 2 or images < 2:
        reason = NOT_TESTABLE_ONE_SEED if seeds < 2 else ("one unhealthy test image: the image and seed x image "
                                                          "components cannot be told apart (p = 1 by convention)")
        return {**out, "testable": False, "reason": reason, "statistic": None, "df": 0, "se": None, "pvalue": 1.0}
    seed_means, image_means = d.mean(axis=1), d.mean(axis=0)
    ms_seed = images * float(np.sum((seed_means - mean) ** 2)) / (seeds - 1)
    ms_image = seeds * float(np.sum((image_means - mean) ** 2)) / (images - 1)
    residual = d - seed_means[:, None] - image_means[None, :] + mean
    ms_resid = float(np.sum(residual ** 2)) / ((seeds - 1) * (images - 1))
    cells, resid_df = seeds * images, (seeds - 1) * (images - 1)
    terms = [(ms_seed / cells, seeds - 1), (ms_image / cells, images - 1), (-ms_resid / cells, resid_df)]
    if ms_seed + ms_image - ms_resid <= 0:
        terms = [(ms_resid / cells, resid_df)]
    terms.append((max(0.0, float(threshold_variance)), max(1, healthy_val_images - 1)))
    variance = math.fsum(term for term, _ in terms)
    out.update({"testable": True, "ms_seed": ms_seed, "ms_image": ms_image, "ms_resid": ms_resid,
                "threshold_variance": terms[-1][0]})
    if variance <= 1e-15:
        zero = abs(mean) < 1e-12
        return {**out, "statistic": None, "df": seeds - 1, "se": 0.0,
                "pvalue": 1.0 if zero else min(1.0, 2.0 ** (1 - seeds)),
                "reason": "zero variance over seeds, images and val thresholds: exact sign-flip test of the seed-level "
                          "differences"}
    df = variance ** 2 / math.fsum(term ** 2 / nu for term, nu in terms)
    statistic = mean / math.sqrt(variance)
    return {**out, "se": math.sqrt(variance), "df": df, "statistic": statistic,
            "pvalue": float(min(1.0, 2.0 * student_t.sf(abs(statistic), df)))}


def shared_threshold_variance(val_healthy: Sequence[np.ndarray], test_unhealthy: Sequence[np.ndarray],
                              specificity: float, resamples: int = 1000, seed: int = 0, chunk: int = 100) -> float:
    """The part of Var(mean FNR difference) that the seeds share through their one val set (arrays as
    `two_level_bootstrap`'s). Each resample draws n_h healthy val images with replacement, the same for every seed,
    replicate and arm, and recomputes every threshold as `two_level_bootstrap` step 2 does; the test images are held
    fixed. With D_bs the resampled FNR difference of seed s (its replicates averaged), the seed-specific part of the
    val noise is already in the seeds' spread (`crossed_t`'s MS_seed); what the seeds share is the covariance
    between two seeds: the mean over pairs s != s' of cov_b(D_bs, D_bs'), floored at 0. S = 1: 0."""
    val = [_as_replicates(v, "val_healthy") for v in val_healthy]
    test = [_as_replicates(t, "test_unhealthy") for t in test_unhealthy]
    seeds, _, healthy = val[0].shape
    if seeds < 2 or healthy == 0:
        return 0.0
    k = specificity_rank(healthy, specificity)
    rng = np.random.default_rng(seed)
    draws = np.empty((seeds, resamples))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        healthy_idx = rng.integers(0, healthy, size=(b, healthy))
        fnr = []
        for v, t in zip(val, test):
            threshold = np.partition(v[:, :, healthy_idx], k - 1, axis=3)[..., k - 1]  # S x J x b
            fnr.append((t[:, :, None, :] <= threshold[..., None]).mean(axis=(1, 3)))  # S x b
        draws[:, start:start + b] = fnr[0] - fnr[1]
    covariance = np.cov(draws)
    return max(0.0, float((covariance.sum() - np.trace(covariance)) / (seeds * (seeds - 1))))
