"""Calibration and power of the seed-level verdict tests on per-image swap nulls built like the questions (issue
#32, items 3 and 4). VAL images only: the test split is read only by the pipeline's classify and evaluate stages.

Data: a finished run's val predictions (results/predictions.csv, `splits=("val",)`, `--architecture`), every train
seed of evaluate.train_seeds. Each replicate:
  1. the healthy val images are split at random into a threshold half and a held-out half (unused but for its
     specificity); every unhealthy val image is a pseudo-test image. The sizes (100 healthy threshold images, 200
     unhealthy pseudo-test images with the default data) are smaller than the real verdict's (every healthy val
     image, every unhealthy test image): both are recorded in the JSON;
  2. the per-image swap: for every val image a fair coin, the same for every train seed (it is the image that is
     swapped), decides whether arm A gets the first set's version and arm B the second's, or the other way round;
  3. each (seed, arm)'s threshold: the k-th smallest of its threshold-half healthy scores, k = ceil(specificity n)
     (the rule of `operating_point.val_threshold`, evaluate.val_specificity); a miss is a pseudo-test score <= it;
  4. every seed-level verdict test of the registry (`VERDICT_TESTS`, `seed_unit`), called through its class on the
     arrays `Group.arrays` holds, at alpha = 1 - evaluate.confidence. Calibrated: the rejection rate's 95 %
     Clopper-Pearson interval contains alpha.
Nulls: q1_sr (SR through the HR classifier vs bicubic through it), q1_regression (the same for regression), q2_sr
(SR through the HR classifier vs bicubic through the bicubic fine-tuned classifier). A swapped arm's threshold is
set on a mixture of two sets' healthy scores, which moves it off either set's own threshold and makes the swap more
discordant than the real comparison; q1_*_scaled swap on each set's specificity scale (below), which keeps the
unswapped discordance: the JSON gives both. Q2's arms differ in classifier:
no data set holds SR images through the bicubic classifier, so no swap of images between classifiers exists. A swap
of (image, classifier) pairs per image is exchangeable but mixes two classifiers' score scales in one arm; so each
pipeline's scores are first put on its own specificity scale (per seed, the share of its threshold-half healthy
scores below the score), on which a miss at the mixed arm's threshold is, up to the mixture's rank noise, the
pipeline's own decision at its own threshold. Its arms are exchangeable but are not pipelines anyone runs. The other
construction, swapping whole arms per seed (`q2_arm_swap`), is a diagnostic, not a calibration: S seeds give 2^S
sign patterns (enumerated), the two uniform ones alone are 2 / 2^S (6.25 % with 5 seeds, above alpha), and the
images and thresholds are not re-randomized, so the real effect stays in the data.
The per-image swap multiplies the seed main effect by the mean coin (about 0): these nulls calibrate the image,
seed x image and threshold terms, not the seed term (the A/A null of retrained classifiers does that).
Power (item 4): on q1_sr and q1_regression, each unhealthy pseudo-test image of arm A replaced by its HR version (hr
set through the same HR classifier and seed; threshold half untouched) with probability f (one uniform draw per
image, nested across f). Power: rejections with the planted sign; with Holm over the Q1 family's pair, the other
comparison on its null in the same replicate (the verdict's adjustment with one true null). MDE at 80 % power:
linear interpolation of power against the realised |mean FNR difference|. Designs "SxM" subsample S seeds and M
unhealthy images per replicate (measured, not extrapolated).
Extrapolation (`crossed_t`'s model): SE^2(S, m) = s_a^2 / S + s_b^2 / m + s_e^2 / (S m) + V_val, the components from
the crossed ANOVA mean squares averaged over replicates (s_a^2 = (MS_seed - MS_resid) / m, s_b^2 = (MS_image -
MS_resid) / S, s_e^2 = MS_resid, floored at 0; V_val: `shared_threshold_variance`, scaled by n_threshold / n_val to
the real val set), MDE = (t_{1 - a/2, nu} + t_{0.8, nu}) SE, nu by Satterthwaite on the expected mean squares; Holm
with one true null approximated by a / 2. Checked against the measured designs with the swap null's components;
the grid uses the real (unswapped) val comparison's, whose seed term the swap removes.

    .venv/bin/python benchmarks/swap_null.py RUN [--config OVERLAY] [--replicates 1000] [--power-replicates 300]

Prints markdown tables and writes results/benchmarks/swap_null.json.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest
from scipy.stats import t as student_t

from medsr.core.config import load_params
from medsr.evaluation.statistics import crossed_t, holm, shared_threshold_variance, specificity_rank
from medsr.evaluation.verdicts import VERDICT_TESTS, Group, VerdictTest
from medsr.core.io import write_json
from medsr.classifier.predictions import read_predictions

OUT = Path("results/benchmarks/swap_null.json")
# null -> (arm A's source, arm B's source, on each pipeline's specificity scale, what it is)
NULLS = {
    "q1_sr": ("sr@hr", "bicubic@hr", False, "Q1 as the issue builds it: one classifier per seed, raw scores swapped"),
    "q1_regression": ("regression@hr", "bicubic@hr", False, "the same for regression"),
    "q1_sr_scaled": ("sr@hr", "bicubic@hr", True, "q1_sr on each set's specificity scale: the unswapped discordance"),
    "q1_regression_scaled": ("regression@hr", "bicubic@hr", True, "q1_regression on the specificity scale"),
    "q2_sr": ("sr@hr", "bicubic@bicubic", True, "each arm mixes both classifiers image by image, on each pipeline's "
              "specificity scale: exchangeable, not a pipeline anyone runs")}
PLANTED = ("q1_sr", "q1_regression")  # the Q1 family's fair pair: Holm over both
FRACTIONS = (0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.18)
POWER = 0.8
TARGET_MDE = 0.08
GRID = {"seeds": (5, 10, 20, 40), "images": (200, 500, 1000, 2000, 5000)}


def val_scores(path: Path, params, architecture: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """labels (1 = unhealthy) and arm -> seeds x val images scores (val rows only; images paired by id)."""
    sr = f"sr_{params.generate.guidance[0]}_seed{params.evaluate.sampling_seeds[0]}"
    arms = {"sr@hr": (sr, "hr"), "regression@hr": ("regression", "hr"), "bicubic@hr": ("bicubic", "hr"),
            "hr@hr": ("hr", "hr"), "bicubic@bicubic": ("bicubic", "bicubic")}
    seeds = list(params.evaluate.train_seeds)
    table = read_predictions(path, architectures=params.train_classifier.architectures, arms=list(arms.values()),
                             train_seeds=seeds, splits=("val",))[architecture]
    labels = table[("hr", seeds[0], "hr", "val")].labels
    return labels, {arm: np.stack([table[(c, s, name, "val")].scores for s in seeds])
                    for arm, (name, c) in arms.items()}


def seed_tests() -> list[type[VerdictTest]]:
    """The registry's seed-level verdict tests (a new class is picked up by defining it)."""
    return [cls for cls in VERDICT_TESTS.values() if cls.seed_unit]


def specificity_scale(scores: np.ndarray, healthy: np.ndarray) -> np.ndarray:
    """Per seed (row): each score as the share of that row's `healthy` scores strictly below it (a score <= the k-th
    smallest healthy score iff its share <= (k - 1) / n, the k-th smallest share: the same decisions)."""
    reference = np.sort(scores[:, healthy], axis=1)
    return np.stack([np.searchsorted(r, s, side="left") for r, s in zip(reference, scores)]) / healthy.size


def swap(first: np.ndarray, second: np.ndarray, coins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arms A and B (seeds x images): where an image's coin is set, A gets the second set's version, B the first's."""
    return np.where(coins, second, first), np.where(coins, first, second)


def plant(arm: np.ndarray, hr: np.ndarray, images: np.ndarray, uniform: np.ndarray, f: float) -> np.ndarray:
    """`arm` with each of `images` (columns) whose uniform draw is < f replaced by its HR version, every seed."""
    out, hit = arm.copy(), images[uniform[images] < f]
    out[:, hit] = hr[:, hit]
    return out


def misses(first: np.ndarray, second: np.ndarray, healthy: np.ndarray, unhealthy: np.ndarray,
           specificity: float) -> tuple[np.ndarray, np.ndarray]:
    """seeds x pseudo-test images: 1 = missed at that (seed, arm)'s threshold on the `healthy` threshold images."""
    k = specificity_rank(healthy.size, specificity)
    return tuple((s[:, unhealthy] <= np.sort(s[:, healthy], axis=1)[:, k - 1:k]).astype(np.float64)
                 for s in (first, second))


def verdict_pvalues(first: np.ndarray, second: np.ndarray, healthy: np.ndarray, unhealthy: np.ndarray, evaluate,
                    tests: list[type[VerdictTest]]) -> tuple[dict[str, float], np.ndarray]:
    """Each test's p on one pseudo-experiment (arms A, B: seeds x val images), and the seeds x images differences."""
    m = misses(first, second, healthy, unhealthy, evaluate.val_specificity)
    group = Group((), {}, {}, {}, evaluate)
    group.arrays = {side: {"misses": mi[:, None], "test": s[:, None][..., unhealthy], "val": s[:, None][..., healthy]}
                    for side, mi, s in (("first", m[0], first), ("second", m[1], second))}
    return {cls.name: float(cls.test(group)["pvalue"]) for cls in tests}, m[0] - m[1]


def components(first: np.ndarray, second: np.ndarray, healthy: np.ndarray, unhealthy: np.ndarray,
               evaluate) -> dict[str, float]:
    """The crossed ANOVA mean squares of the seeds x images miss differences and the shared threshold variance."""
    m = misses(first, second, healthy, unhealthy, evaluate.val_specificity)
    shared = shared_threshold_variance((first[:, healthy], second[:, healthy]),
                                       (first[:, unhealthy], second[:, unhealthy]), evaluate.val_specificity,
                                       resamples=evaluate.bootstrap, seed=evaluate.bootstrap_seed)
    out = crossed_t(m[0] - m[1], shared, healthy.size)
    return {"ms_seed": out["ms_seed"], "ms_image": out["ms_image"], "ms_resid": out["ms_resid"],
            "threshold_variance": out["threshold_variance"], "discordant": float(np.mean(m[0] != m[1]))}


def rate(pvalues: list[float], alpha: float) -> dict[str, Any]:
    hits, n = int(np.sum(np.array(pvalues) < alpha)), len(pvalues)
    ci = binomtest(hits, n).proportion_ci(0.95, method="exact")
    return {"rejected": hits, "rate": hits / n, "rate_low": float(ci.low), "rate_high": float(ci.high),
            "calibrated": bool(ci.low <= alpha <= ci.high),
            "p_deciles": [float(q) for q in np.quantile(pvalues, np.arange(1, 10) / 10)]}


def mean_components(rows: list[dict[str, float]], seeds: int, images: int) -> dict[str, float]:
    ms = {k: float(np.mean([r[k] for r in rows])) for k in ("ms_seed", "ms_image", "ms_resid", "threshold_variance")}
    return {**ms, "seeds": seeds, "images": images, "sigma2_seed": max(0.0, (ms["ms_seed"] - ms["ms_resid"]) / images),
            "sigma2_image": max(0.0, (ms["ms_image"] - ms["ms_resid"]) / seeds), "sigma2_resid": ms["ms_resid"]}


def predicted_mde(c: dict[str, float], seeds: int, images: int, alpha: float, val_scale: float = 1.0) -> float:
    """(t_{1-alpha/2,nu} + t_{POWER,nu}) SE under the crossed model with components `c` (see the docstring)."""
    e_resid = c["sigma2_resid"]
    e_seed, e_image = e_resid + images * c["sigma2_seed"], e_resid + seeds * c["sigma2_image"]
    cells, val = seeds * images, c["threshold_variance"] * val_scale
    terms = [(e_seed / cells, seeds - 1), (e_image / cells, images - 1), (-e_resid / cells, (seeds - 1) * (images - 1)),
             (val, max(1, c.get("healthy", 100) - 1))]
    variance = sum(t for t, _ in terms)
    nu = variance ** 2 / sum(t ** 2 / df for t, df in terms if t)
    return float((student_t.ppf(1 - alpha / 2, nu) + student_t.ppf(POWER, nu)) * np.sqrt(variance))


def mde(differences: list[float], power: list[float]) -> float | None:
    """The |FNR difference| where power first reaches POWER, linear between the measured points (None: never)."""
    points = [(0.0, 0.0), *zip(differences, power)]
    for (d0, p0), (d1, p1) in zip(points, points[1:]):
        if p1 >= POWER:
            return float(d1 if p1 == p0 else d0 + (POWER - p0) * (d1 - d0) / (p1 - p0))
    return None


def parse_design(text: str) -> tuple[int, int]:
    seeds, images = text.lower().split("x")
    return int(seeds), int(images)


def run(labels: np.ndarray, scores: dict[str, np.ndarray], evaluate, replicates: int, power_replicates: int,
        designs: list[tuple[int, int]], fractions: tuple[float, ...], seed: int) -> dict[str, Any]:
    """Every replicate of every null, the power curves and their designs (see the module docstring)."""
    tests, alpha = seed_tests(), 1.0 - evaluate.confidence
    healthy, unhealthy = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    seeds = scores["hr@hr"].shape[0]
    rng = np.random.default_rng(seed)
    nulls = {n: {"p": {c.name: [] for c in tests}, "difference": [], "swap": [], "real": [], "specificity": []}
             for n in NULLS}
    power = {n: {d: {f: {"p": {c.name: [] for c in tests}, "difference": []} for f in (0.0, *fractions)}
                 for d in designs} for n in PLANTED}
    for r in range(replicates):
        order = rng.permutation(healthy)
        threshold, held_out = np.sort(order[: healthy.size // 2]), np.sort(order[healthy.size // 2:])
        coins = rng.random(labels.size) < 0.5
        uniform = rng.random(labels.size)
        subsets = {d: (np.sort(rng.permutation(seeds)[: d[0]]), np.sort(rng.permutation(unhealthy)[: d[1]]))
                   for d in designs}
        for name, (a, b, rescale, _) in NULLS.items():
            first, second = scores[a], scores[b]
            if rescale:
                first, second = specificity_scale(first, threshold), specificity_scale(second, threshold)
            arm_a, arm_b = swap(first, second, coins)
            p, d = verdict_pvalues(arm_a, arm_b, threshold, unhealthy, evaluate, tests)
            entry = nulls[name]
            for test, value in p.items():
                entry["p"][test].append(value)
            entry["difference"].append(float(d.mean()))
            entry["swap"].append(components(arm_a, arm_b, threshold, unhealthy, evaluate))
            entry["real"].append(components(first, second, threshold, unhealthy, evaluate))
            k = specificity_rank(threshold.size, evaluate.val_specificity)
            entry["specificity"].append(float(np.mean([np.mean(s[:, held_out] <= np.sort(s[:, threshold], axis=1)
                                                               [:, k - 1:k]) for s in (arm_a, arm_b)])))
            if name not in PLANTED or r >= power_replicates:
                continue
            for design, (rows, images) in subsets.items():
                for f in (0.0, *fractions):
                    planted = plant(arm_a, scores["hr@hr"], images, uniform, f)
                    p, d = verdict_pvalues(planted[rows], arm_b[rows], threshold, images, evaluate, tests)
                    cell = power[name][design][f]
                    for test, value in p.items():
                        cell["p"][test].append(value)
                    cell["difference"].append(float(d.mean()))
    return summarize(nulls, power, tests, alpha, labels, threshold.size, unhealthy.size, seeds, designs, fractions)


def summarize(nulls, power, tests, alpha, labels, n_threshold, n_unhealthy, seeds, designs, fractions):
    out: dict[str, Any] = {"nulls": {}, "power": {}}
    for name, entry in nulls.items():
        a, b, rescale, note = NULLS[name]
        out["nulls"][name] = {
            "first": a, "second": b, "specificity_scale": rescale, "replicates": len(entry["difference"]),
            "exchangeable": True, "note": note,
            "discordant_misses": float(np.mean([c["discordant"] for c in entry["swap"]])),
            "discordant_misses_unswapped": float(np.mean([c["discordant"] for c in entry["real"]])),
            "held_out_specificity": float(np.mean(entry["specificity"])),
            "mean_difference": float(np.mean(entry["difference"])),
            "components_swap": mean_components(entry["swap"], seeds, n_unhealthy),
            "components_unswapped": mean_components(entry["real"], seeds, n_unhealthy),
            "tests": {t.name: rate(entry["p"][t.name], alpha) for t in tests}}
    for name in PLANTED:
        partner = next(n for n in PLANTED if n != name)
        out["power"][name] = []
        for design in designs:
            cells = power[name][design]
            row: dict[str, Any] = {"seeds": design[0], "images": design[1], "replicates": len(cells[0.0]["difference"]),
                                   "fractions": list(fractions),
                                   "difference": [float(np.mean(cells[f]["difference"])) for f in fractions],
                                   "tests": {}}
            for t in tests:
                own = {f: np.array(cells[f]["p"][t.name]) for f in (0.0, *fractions)}
                other = np.array(power[partner][design][0.0]["p"][t.name])
                signs = {f: np.array(cells[f]["difference"]) < 0 for f in fractions}
                plain = [float(np.mean((own[f] < alpha) & signs[f])) for f in fractions]
                adjusted = [float(np.mean(np.array([holm([x, y])[0] < alpha for x, y in zip(own[f], other)])
                                          & signs[f])) for f in fractions]
                size = rate(list(own[0.0]), alpha)
                row["tests"][t.name] = {"size": size["rate"], "size_low": size["rate_low"],
                                        "size_high": size["rate_high"], "power": plain, "power_holm": adjusted,
                                        "mde": mde([-d for d in row["difference"]], plain),
                                        "mde_holm": mde([-d for d in row["difference"]], adjusted)}
            out["power"][name].append(row)
    out["extrapolation"] = extrapolate(out, alpha, int(np.sum(labels == 0)), n_threshold)
    return out


def extrapolate(out: dict[str, Any], alpha: float, n_healthy: int, n_threshold: int) -> dict[str, Any]:
    """The crossed model's MDE: checked on the measured designs (swap components), then on the grid (unswapped)."""
    result: dict[str, Any] = {"val_scale": n_threshold / n_healthy, "healthy_val_images": n_healthy, "check": [],
                              "grid": {}, "reach_target": {}, "target": TARGET_MDE}
    for name in PLANTED:
        null = out["nulls"][name]
        swap = {**null["components_swap"], "healthy": n_threshold}
        for row in out["power"][name]:
            measured = row["tests"].get("crossed_t", {})
            result["check"].append({
                "null": name, "seeds": row["seeds"], "images": row["images"],
                "measured_mde": measured.get("mde"), "measured_mde_holm": measured.get("mde_holm"),
                "predicted_mde": predicted_mde(swap, row["seeds"], row["images"], alpha),
                "predicted_mde_holm": predicted_mde(swap, row["seeds"], row["images"], alpha / 2)})
        real = {**null["components_unswapped"], "healthy": n_healthy}
        grid = [{"seeds": s, "images": m,
                 "mde": predicted_mde(real, s, m, alpha, result["val_scale"]),
                 "mde_holm": predicted_mde(real, s, m, alpha / 2, result["val_scale"])}
                for s in GRID["seeds"] for m in GRID["images"]]
        result["grid"][name] = grid
        result["reach_target"][name] = {s: min((g["images"] for g in grid if g["seeds"] == s
                                                and g["mde_holm"] <= TARGET_MDE), default=None) for s in GRID["seeds"]}
    return result


def q2_arm_swap(labels: np.ndarray, scores: dict[str, np.ndarray], evaluate, splits: int, seed: int) -> dict[str, Any]:
    """The diagnostic: whole arms swapped per seed, every one of the 2^S sign patterns, on `splits` threshold halves."""
    tests, alpha = seed_tests(), 1.0 - evaluate.confidence
    healthy, unhealthy = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    first, second = scores["sr@hr"], scores["bicubic@bicubic"]
    seeds = first.shape[0]
    patterns = (np.arange(2 ** seeds)[:, None] >> np.arange(seeds)) & 1
    rng = np.random.default_rng([seed, 2])
    p: dict[str, list[float]] = {t.name: [] for t in tests}
    for _ in range(splits):
        threshold = np.sort(rng.permutation(healthy)[: healthy.size // 2])
        for flip in patterns.astype(bool):
            arm_a, arm_b = swap(first, second, flip[:, None])
            for test, value in verdict_pvalues(arm_a, arm_b, threshold, unhealthy, evaluate, tests)[0].items():
                p[test].append(value)
    return {"valid_null": False, "patterns": int(2 ** seeds), "splits": splits,
            "floor": 2 / 2 ** seeds,
            "note": (f"diagnostic, not a calibration: {2 ** seeds} sign patterns; the 2 uniform ones alone are "
                     f"{2 / 2 ** seeds:.2%} of them; images and thresholds not re-randomized, the real effect stays"),
            "tests": {t: {"rate": float(np.mean(np.array(v) < alpha))} for t, v in p.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run: results/predictions.csv and params.yaml")
    parser.add_argument("--config", type=Path, action="append", default=[], help="params overlay(s)")
    parser.add_argument("--architecture", default="resnet18")
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--power-replicates", type=int, default=300)
    parser.add_argument("--design", action="append", type=parse_design, help="SxM: seeds x unhealthy images "
                        "subsampled for the power curve (default: all, 3xall, allx(half))")
    parser.add_argument("--arm-swap-splits", type=int, default=20)
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    params = load_params([args.run / "params.yaml", *args.config])
    labels, scores = val_scores(args.run / "results/predictions.csv", params, args.architecture)
    seeds, m = scores["hr@hr"].shape[0], int(np.sum(labels == 1))
    designs = args.design or [(seeds, m), (max(2, seeds - 2), m), (seeds, m // 2)]
    start = time.perf_counter()
    result = run(labels, scores, params.evaluate, args.replicates, args.power_replicates, designs, FRACTIONS,
                 args.random_seed)
    result["q2_arm_swap"] = q2_arm_swap(labels, scores, params.evaluate, args.arm_swap_splits, args.random_seed)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    data = {"benchmark": "swap_null", "split": "val (the test split is never read)", "run": str(args.run),
            "architecture": args.architecture,
            "tests": [t.name for t in seed_tests()], "default_test": params.evaluate.verdict_rule,
            "alpha": 1.0 - params.evaluate.confidence, "val_specificity": params.evaluate.val_specificity,
            "bootstrap": params.evaluate.bootstrap,
            "sizes": {"seeds": seeds, "healthy_val": int(np.sum(labels == 0)),
                      "healthy_threshold": int(np.sum(labels == 0)) // 2, "unhealthy_pseudo_test": m,
                      "real_unhealthy_test": params.data.mni.test_per_class if params.data.source == "mni" else None},
            **result, "seconds": round(time.perf_counter() - start, 1), "commit": commit,
            "machine": {"processor": platform.processor() or platform.machine(), "platform": platform.platform()}}
    write_json(args.out, data)
    from medsr.report.benchmark_tables import swap_null_markdown
    print(swap_null_markdown(data))


if __name__ == "__main__":
    main()
