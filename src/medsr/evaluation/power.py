"""What a verdict's t test says besides "significant": the smallest FNR difference it detects (minimum detectable
effect) and equivalence within a declared margin (two one-sided tests), from its own difference, standard error and
degrees of freedom (`verdicts.VerdictTest.standard_error`; a test without them has neither)."""

from __future__ import annotations

from scipy.optimize import brentq
from scipy.stats import nct
from scipy.stats import t as student_t

POWER = 0.8  # the power at which the minimum detectable effect is read (Cohen 1988, Ch. 2: the conventional 0.80)


def power(effect: float, se: float, df: float, alpha: float) -> float:
    """Power of the two-sided t test at level `alpha` when the true difference is `effect` and the estimate has
    standard error `se` with `df` degrees of freedom (df = inf: the z test): P(|T| > t_{1-alpha/2, df}) with T
    noncentral t, noncentrality `effect` / `se` (Cohen 1988, Ch. 2; the lower tail by symmetry, T_-d = -T_d)."""
    critical = float(student_t.ppf(1 - alpha / 2, df))
    shift = abs(effect) / se
    return float(nct.sf(critical, df, shift) + nct.sf(critical, df, -shift))


def minimum_detectable_effect(se: float, df: float, alpha: float, target: float = POWER) -> float | None:
    """The smallest |difference| that the two-sided t test at level `alpha` detects with power `target`: the
    noncentrality d solving `power`(d se) = target, times `se`. Solved exactly on the noncentral t rather than by the
    usual (t_{1-alpha/2, df} + t_{target, df}) se, which at 4 df and alpha 0.025 gives power 0.77, not 0.80. None
    when there is no positive standard error or the power is not reached below 10^4 standard errors (df < 1)."""
    if not se or se <= 0 or not df or df <= 0:
        return None
    upper = float(student_t.ppf(1 - alpha / 2, df) + student_t.ppf(target, df))
    while power(upper * se, se, df, alpha) < target:
        upper *= 2
        if upper > 1e4:
            return None
    return float(brentq(lambda d: power(d * se, se, df, alpha) - target, 0.0, upper, xtol=1e-10)) * se


def tost(difference: float, se: float, df: float, margin: float, alpha: float) -> dict[str, float | bool] | None:
    """Two one-sided tests of equivalence (Schuirmann 1987) of the true difference to 0 within (-margin, +margin):
    H01: difference <= -margin, t1 = (d + margin) / se, p1 = P(T_df >= t1); H02: difference >= margin,
    t2 = (margin - d) / se, p2 = P(T_df >= t2). p = max(p1, p2); equivalent at level alpha iff p < alpha, which is
    the (1 - 2 alpha) interval d +- t_{1-alpha, df} se lying inside (-margin, +margin). None without a positive
    standard error (the degenerate cases the verdict tests settle by an exact sign-flip test)."""
    if not se or se <= 0 or not df or df <= 0:
        return None
    lower = float(student_t.sf((difference + margin) / se, df))
    upper = float(student_t.sf((margin - difference) / se, df))
    half = float(student_t.ppf(1 - alpha, df)) * se
    p = max(lower, upper)
    return {"pvalue": p, "equivalent": p < alpha, "interval": [difference - half, difference + half]}
