"""What the SR model invents: the statistics of the trust audit, on plain arrays.

- `rcps_lambda`: per-pixel intervals [mu - lambda sigma, mu + lambda sigma] from N posterior samples (mu = their
  mean, sigma = their std floored at one grey level: `interval_sigma`), calibrated with a risk-controlling
  prediction set (Angelopoulos et al. 2022,
  "Image-to-image regression with distribution-free uncertainty quantification", Sec. 2-3):
    L_i(lambda) = (1 / P) sum_p 1[y_ip outside [mu_ip - lambda sigma_ip, mu_ip + lambda sigma_ip]]  (per image i)
    R^(lambda)  = (1 / n) sum_i L_i(lambda) over the n val images, L_i in [0, 1], nonincreasing in lambda
    R^+(lambda) = R^(lambda) + sqrt(log(1 / delta) / (2 n))                  (Hoeffding upper confidence bound)
    lambda^     = inf { lambda : R^+(lambda') < alpha for every lambda' >= lambda }  (scanned from large to small)
  Then P(E[L(lambda^)] <= alpha) >= 1 - delta over the draw of the val images (their Theorem 1).
- `interval_report`: on test, the realised risk, the mean width 2 lambda sigma, Spearman's rho between sigma and
  |mu - y| over pixels, and the AUROC of sigma for flagging pixels with |mu - y| > error threshold.
- `crc_threshold`: conformal risk control (Angelopoulos et al. 2022, "Conformal risk control", Thm. 1) of the
  FNR: over the n unhealthy val images, l_i(t) = 1[s_i <= t] (missed: our rule calls unhealthy iff s > t);
  t^ = sup { t : (n / (n + 1)) mean_i l_i(t) + 1 / (n + 1) <= alpha }, so E[FNR on a new unhealthy image] <= alpha.
  With k = floor(alpha (n + 1) - 1): #{s_i <= t} <= k, so t^ is just below s_(k+1) (k + 1-th smallest); k < 0 is
  infeasible with n images, and then t^ = -1 calls every image unhealthy (loss 0 surely).
- `stability`: per image, the share of posterior samples called unhealthy; an image is unstable when the samples
  disagree (0 < share < 1). FNR among stable and unstable images, and the false negatives the flag catches.
- `injection`: the share of images whose decision follows an injected label, with an exact Clopper-Pearson
  (1934) interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import beta, spearmanr

from medsr.evaluation.metrics import auroc, finite_or_none

LAMBDA_GRID = np.linspace(0.0, 20.0, 2001)  # candidate lambdas (multiples of sigma), scanned from the top
GREY_LEVEL = 1.0 / 255.0  # the quantization step of the 8-bit images (medsr.core.io.write_image): the floor of sigma


# --- per-pixel intervals (RCPS) ---------------------------------------------------------------------------

def interval_sigma(std: np.ndarray) -> np.ndarray:
    """sigma of the intervals: the posterior samples' per-pixel std, floored at one grey level (GREY_LEVEL).

    The truth is known to one grey level only, and where every sample is clipped to the same value (the black
    background) the std is exactly 0: without the floor no lambda widens such a pixel's point interval, and the
    risk cannot fall below their share (a sizeable share of the pixels of an SR sample's background). The floor
    is fixed before calibration, so the intervals stay a nested family in lambda and RCPS's guarantee holds."""
    return np.maximum(np.asarray(std, dtype=np.float64), GREY_LEVEL)


def miss_rates(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """L_i(lambda) for images i (rows) and lambdas (columns): the share of image i's pixels outside the interval.

    A pixel is outside [mu - lambda sigma, mu + lambda sigma] (sigma = interval_sigma(std) > 0) iff
    |y - mu| > lambda sigma, i.e. iff lambda < |y - mu| / sigma.
    """
    n = len(truth)
    error = np.abs(truth - mean).reshape(n, -1).astype(np.float64)
    ratio = np.sort(error / interval_sigma(std.reshape(n, -1)), axis=1)
    pixels = ratio.shape[1]
    # outside iff ratio > lambda: the count of ratios strictly above lambda
    return np.stack([pixels - np.searchsorted(row, lambdas, side="right") for row in ratio]) / pixels


def hoeffding_ucb(risk: np.ndarray, n: int, delta: float) -> np.ndarray:
    """R^ + sqrt(log(1/delta) / (2n)): Hoeffding's (1963) bound for the mean of n variables in [0, 1]."""
    return np.asarray(risk) + math.sqrt(math.log(1.0 / delta) / (2.0 * n))


def rcps_lambda(losses: np.ndarray, lambdas: np.ndarray, alpha: float, delta: float) -> float | None:
    """lambda^ of the module docstring from per-image losses [n, len(lambdas)] (lambdas increasing); None when
    even the largest lambda's bound is not below alpha (too few val images for this alpha and delta)."""
    ucb = hoeffding_ucb(losses.mean(axis=0), len(losses), delta)
    chosen = None
    for j in range(len(lambdas) - 1, -1, -1):  # from the largest lambda down, stop at the first violation
        if ucb[j] >= alpha:
            break
        chosen = float(lambdas[j])
    return chosen


def interval_report(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, lam: float,
                    error_threshold: float) -> dict[str, Any]:
    """Test numbers of the calibrated intervals (module docstring)."""
    risk = miss_rates(truth, mean, std, np.array([lam]))[:, 0]
    error = np.abs(truth - mean).ravel().astype(np.float64)
    sigma = interval_sigma(std.ravel())
    wrong = error > error_threshold
    rho = spearmanr(sigma, error).statistic if np.ptp(sigma) > 0 and np.ptp(error) > 0 else float("nan")
    return {"lambda": lam, "images": int(len(truth)), "realised_risk": float(risk.mean()),
            "per_image_risk_max": float(risk.max()), "mean_width": float(np.mean(2.0 * lam * sigma)),
            "spearman_width_error": finite_or_none(float(rho)),
            "wrong_pixel_share": float(wrong.mean()),
            "std_auroc_wrong_pixels": finite_or_none(auroc(wrong.astype(np.int64), sigma))}


# --- conformal risk control of the FNR -------------------------------------------------------------------

def crc_threshold(unhealthy_scores: np.ndarray, alpha: float) -> tuple[float, bool]:
    """(t^, feasible) of the module docstring: calling unhealthy iff score > t^ keeps E[FNR] <= alpha."""
    s = np.sort(np.asarray(unhealthy_scores, dtype=np.float64))
    n = len(s)
    k = math.floor(alpha * (n + 1) - 1 + 1e-12)  # the most misses allowed among the n val images
    if n == 0 or k < 0:
        return -1.0, False
    if k >= n:
        return float(s[-1]), True
    return float(np.nextafter(s[k], -np.inf)), True  # just below s_(k+1): exactly #{s_i < s_(k+1)} <= k misses


def crc_loss(unhealthy_scores: np.ndarray, t: float) -> float:
    """mean_i l_i(t) = the FNR of the rule score > t on these unhealthy images."""
    return float(np.mean(np.asarray(unhealthy_scores) <= t)) if len(unhealthy_scores) else float("nan")


# --- decision stability and label injection -----------------------------------------------------------------

def stability(sample_calls: np.ndarray, main_calls: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """sample_calls [images, N] of 0/1 (unhealthy), main_calls [images] (the set's main image), labels [images].

    Unstable: the N samples disagree. FNR (main decision) among stable and unstable unhealthy images; `caught`:
    false negatives of the main decision that the unstable flag marks for a second look."""
    sample_calls, main_calls = np.asarray(sample_calls, bool), np.asarray(main_calls, bool)
    labels = np.asarray(labels, bool)
    share = sample_calls.mean(axis=1)
    unstable = (share > 0) & (share < 1)
    fn = labels & ~main_calls

    def fnr(mask):
        positives = int((labels & mask).sum())
        return None if positives == 0 else float((fn & mask).sum() / positives)

    return {"images": int(len(labels)), "unstable": int(unstable.sum()),
            "unstable_share": float(unstable.mean()) if len(labels) else None,
            "fnr_stable": fnr(~unstable), "fnr_unstable": fnr(unstable),
            "false_negatives": int(fn.sum()), "false_negatives_caught": int((fn & unstable).sum()),
            "unhealthy_share_per_image": [float(x) for x in share]}


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float | None, float | None]:
    """Exact binomial interval (Clopper & Pearson 1934): Beta quantiles at (1 -+ confidence) / 2."""
    if n == 0:
        return None, None
    a = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return low, high


def injection(calls: np.ndarray, injected: np.ndarray, confidence: float) -> dict[str, Any]:
    """Share of images whose 0/1 decision equals the injected class, with its Clopper-Pearson interval."""
    follows = np.asarray(calls, int) == np.asarray(injected, int)
    k, n = int(follows.sum()), int(len(follows))
    low, high = clopper_pearson(k, n, confidence)
    return {"follows": k, "images": n, "rate": k / n if n else None, "interval": [low, high]}


def label_injection(swapped_calls: np.ndarray, null_calls: np.ndarray, injected: np.ndarray,
                    confidence: float) -> dict[str, Any]:
    """The label-injection rate (decision of the swapped-label draw follows the injected class) against the
    same share for the null draw with the same noise (what follows the wrong class without being told)."""
    swapped, null = injection(swapped_calls, injected, confidence), injection(null_calls, injected, confidence)
    difference = None if swapped["rate"] is None else swapped["rate"] - null["rate"]
    return {"swapped": swapped, "null": null, "difference": difference}


def mean_or_none(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
