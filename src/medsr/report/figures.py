"""Matplotlib (Agg) figures for the report; every figure is generated, none drawn by hand.

Each function takes plain arrays and writes one PNG; `render.py` decides what goes in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from medsr.core.parameters import CLASSES  # noqa: E402
from medsr.evaluation.trust import interval_sigma  # noqa: E402

DPI = 120
ROC_FIGURES = {"Q1": "roc_q1.png", "Q2": "roc_q2.png", "reference": "roc_reference.png"}  # one per question


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def examples(path: Path, columns: Sequence[tuple[str, np.ndarray]], row_titles: Sequence[str]) -> None:
    """Thesis Fig. 4.1-4.2: one row per test image, one column per set (LR, HR, bicubic, ..., SR)."""
    _image_grid(path, [(title, images, "gray", (0.0, 1.0)) for title, images in columns], row_titles,
                interpolation="nearest", title_size=8)


def difference_maps(path: Path, hr: np.ndarray, columns: Sequence[tuple[str, np.ndarray]],
                    row_titles: Sequence[str]) -> None:
    """Thesis Fig. 4.3: |set - HR| per pixel, one shared colour scale for every panel."""
    diffs = [(title, np.abs(images - hr)) for title, images in columns]
    vmax = max(float(np.max(d)) for _, d in diffs) or 1.0
    rows = len(row_titles)
    fig, axes = plt.subplots(rows, len(diffs), figsize=(1.9 * len(diffs) + 0.8, 1.9 * rows + 0.3), squeeze=False)
    image = None
    for j, (title, diff) in enumerate(diffs):
        for i in range(rows):
            ax = axes[i, j]
            image = ax.imshow(diff[i], cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"|{title} - HR|", fontsize=8)
            if j == 0:
                ax.set_ylabel(row_titles[i], fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="absolute difference")
    _save(fig, path)


def confusion_matrices(path: Path, matrices: Mapping[str, np.ndarray]) -> None:
    """One panel per set: rows true, columns predicted (healthy, unhealthy); positive = unhealthy."""
    names = list(matrices)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        matrix = np.asarray(matrices[name])
        ax.imshow(matrix, cmap="Blues", vmin=0)
        cells = (("TN", "FP"), ("FN", "TP"))
        for r in range(2):
            for c in range(2):
                dark = matrix[r, c] > matrix.max() / 2
                ax.text(c, r, f"{cells[r][c]}\n{matrix[r, c]}", ha="center", va="center", fontsize=9,
                        color="white" if dark else "black")
        ax.set_xticks([0, 1], CLASSES, fontsize=7)
        ax.set_yticks([0, 1], CLASSES, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def mcnemar_tables(path: Path, tables: Sequence[tuple[str, str, Mapping[str, int], str]]) -> None:
    """Thesis Table 4.4 as figures: (first, second, {a, b, c, d}, test text) per panel."""
    fig, axes = plt.subplots(1, len(tables), figsize=(3.6 * len(tables), 3.2), squeeze=False)
    for ax, (first, second, table, text) in zip(axes[0], tables):
        matrix = np.array([[table["a"], table["b"]], [table["c"], table["d"]]])
        ax.imshow(np.array([[0.15, 1.0], [1.0, 0.15]]), cmap="Oranges", vmin=0, vmax=1.6)
        for r, c, key in ((0, 0, "a"), (0, 1, "b"), (1, 0, "c"), (1, 1, "d")):
            ax.text(c, r, f"{key} = {matrix[r, c]}", ha="center", va="center", fontsize=10)
        ax.set_xticks([0, 1], ["correct", "wrong"], fontsize=8)
        ax.set_yticks([0, 1], ["correct", "wrong"], fontsize=8)
        ax.set_xlabel(second, fontsize=8)
        ax.set_ylabel(first, fontsize=8)
        ax.set_title(f"{first} vs {second}\n{text}", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def training_curves(path: Path, curves: Sequence[tuple[str, str, Mapping[str, np.ndarray], np.ndarray]]) -> None:
    """One panel per log: (title, x label, {series: values}, x)."""
    if not curves:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no training log with step+loss or epoch+*_loss columns", ha="center", va="center",
                fontsize=8)
        ax.axis("off")
        _save(fig, path)
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(3.8 * len(curves), 3.0), squeeze=False)
    for ax, (title, xlabel, series, x) in zip(axes[0], curves):
        for name, values in series.items():
            ax.plot(x, values, label=name, marker="." if len(x) < 30 else None)
        positive = all(np.nanmin(v) > 0 for v in series.values() if np.isfinite(v).any())
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def fnr_intervals(path: Path, rows: Sequence[tuple[str, float | None, float | None, float | None, bool]],
                  confidence: float) -> None:
    """FNR = FN / (FN + TP) per set with its bootstrap interval; label-leaking sets drawn hatched and marked."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.2))
    for i, (name, value, low, high, leaks) in enumerate(rows):
        if value is None:
            continue
        err = None
        if low is not None and high is not None:
            err = [[max(value - low, 0.0)], [max(high - value, 0.0)]]
        ax.bar(i, value, color="tab:gray" if leaks else "tab:blue", hatch="//" if leaks else None,
               alpha=0.8, yerr=err, capsize=4)
    ax.set_xticks(range(len(rows)), [r[0] + (" (leaks label)" if r[4] else "") for r in rows],
                  rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("false negative rate FN / (FN + TP)", fontsize=8)
    ax.set_title(f"FNR per image set + classifier (val operating point, pooled), {confidence:.0%} bootstrap interval",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def fnr_forest(path: Path, rows: Sequence[tuple[str, float | None, float | None, float | None, list[float], bool]],
               confidence: float) -> None:
    """Forest plot: per comparison (label, pooled FNR difference first - second, CI low, CI high, per-replicate
    differences, leaks_label). Left of 0: the first arm misses fewer unhealthy images. Oracle rows grey, marked."""
    fig, ax = plt.subplots(figsize=(8.0, 0.45 * max(len(rows), 1) + 1.2))
    for i, (label, value, low, high, replicates, leaks) in enumerate(rows):
        y = len(rows) - 1 - i
        colour = "tab:gray" if leaks else "tab:blue"
        if value is not None and low is not None and high is not None:
            ax.errorbar([value], [y], xerr=[[max(value - low, 0.0)], [max(high - value, 0.0)]], fmt="o",
                        color=colour, capsize=3)
        ax.scatter(replicates, [y] * len(replicates), s=10, color=colour, alpha=0.5, marker="|")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r[0] + (" [ORACLE, leaks label]" if r[5] else "") for r in reversed(rows)],
                  fontsize=7)
    ax.set_xlabel("FNR difference, first - second (< 0: first misses fewer unhealthy images)", fontsize=8)
    ax.set_title(f"FNR differences at the val operating point: pooled mean, {confidence:.0%} paired bootstrap "
                 "interval, ticks = replicates", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


ROC_COLOURS = ("tab:blue", "tab:orange")


def roc_curves(path: Path, title: str, panels: Sequence[tuple[str, Sequence[tuple[str, Mapping]]]],
               max_fpr: float, target_fpr: float) -> None:
    """One column per comparison (panel title, [(arm label, arm roc dict) for first, second]): top, the whole test
    ROC curve; bottom, the tail FPR <= max_fpr where the val operating point lies. Each arm: the curve pooled over
    replicates (vertical average) with the min-max band of the replicates, its val point (the val threshold's
    (FPR, TPR) on val, open circle) and its test point (the same thresholds on test, cross), joined by a dotted
    line; small markers are the replicates' test points."""
    if not panels:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, f"{title}: no fair comparison in this run", ha="center", va="center", fontsize=8)
        ax.axis("off")
        _save(fig, path)
        return
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.4), squeeze=False)
    for j, (panel_title, arms) in enumerate(panels):
        whole, tail = axes[0, j], axes[1, j]
        tail_tprs = []
        for (label, roc), colour in zip(arms, ROC_COLOURS):
            fpr, mean = np.asarray(roc["fpr"]), np.asarray(roc["tpr_mean"])
            low, high = np.asarray(roc["tpr_low"]), np.asarray(roc["tpr_high"])
            inside = fpr <= max_fpr + 1e-12
            tail_tprs += [low[inside], high[inside]]
            val, test = roc["points"]["val"], roc["points"]["test"]
            for ax, keep in ((whole, np.ones_like(inside)), (tail, inside)):
                ax.fill_between(fpr[keep], low[keep], high[keep], color=colour, alpha=0.18, lw=0)
                ax.plot(fpr[keep], mean[keep], color=colour, lw=1.4, label=label if ax is whole else None)
                for p in roc["points"]["test"]["per_replicate"]:
                    ax.plot(p["fpr"], p["tpr"], ".", color=colour, ms=4, alpha=0.6)
                if val["fpr"] is not None and test["fpr"] is not None:
                    ax.plot([val["fpr"], test["fpr"]], [val["tpr"], test["tpr"]], ":", color=colour, lw=1)
                if val["fpr"] is not None:
                    ax.plot(val["fpr"], val["tpr"], "o", mfc="white", mec=colour, mew=1.5, ms=7,
                            label="val point (on val)" if ax is tail and colour == ROC_COLOURS[0] else None)
                if test["fpr"] is not None:
                    ax.plot(test["fpr"], test["tpr"], "X", color=colour, ms=8, mec="black", mew=0.5,
                            label="same threshold on test" if ax is tail and colour == ROC_COLOURS[0] else None)
            tail_tprs += [np.array([v for v in (val["tpr"], test["tpr"]) if v is not None])]
        whole.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--")
        whole.axvspan(0, max_fpr, color="gold", alpha=0.12, lw=0)
        whole.set(xlim=(0, 1), ylim=(0, 1.01))
        whole.set_title(panel_title, fontsize=8)
        whole.legend(fontsize=6, loc="lower right")
        values = np.concatenate([t for t in tail_tprs if t.size])
        bottom = max(0.0, float(np.nanmin(values)) - 0.05) if values.size else 0.0
        tail.set(xlim=(0, max_fpr), ylim=(bottom, min(1.01, float(np.nanmax(values)) + 0.05) if values.size else 1.01))
        tail.axvline(target_fpr, color="black", lw=0.6, ls="--")
        tail.set_title(f"tail FPR <= {max_fpr} (specificity >= {1 - max_fpr:.2f}); dashed: val target FPR "
                       f"{target_fpr:.2f}", fontsize=7)
        tail.legend(fontsize=6, loc="lower right")
        for ax in (whole, tail):
            ax.set_xlabel("false positive rate = 1 - specificity", fontsize=7)
            ax.set_ylabel("true positive rate = 1 - FNR", fontsize=7)
            ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


# --- the trust audit ---------------------------------------------------------------------------

def posterior_maps(path: Path, hr: np.ndarray, mean: np.ndarray, std: np.ndarray, lam: float | None,
                   row_titles: Sequence[str]) -> None:
    """Per test image: HR, SR mean, |mean - HR|, per-pixel std, and the pixels outside the calibrated interval."""
    error = np.abs(mean - hr)
    miss = error > lam * interval_sigma(std) if lam is not None else np.zeros_like(error, dtype=bool)
    columns = [("HR", hr, "gray", (0, 1)), ("SR mean of samples", mean, "gray", (0, 1)),
               ("|SR mean - HR|", error, "magma", (0, max(float(error.max()), 1e-6))),
               ("std over samples", std, "magma", (0, max(float(std.max()), 1e-6))),
               (f"outside interval (lambda {lam:.2f})" if lam is not None else "no calibrated lambda", miss, "Reds",
                (0, 1))]
    _image_grid(path, columns, row_titles)


def _image_grid(path: Path, columns: Sequence[tuple], row_titles: Sequence[str], interpolation: str | None = None,
                title_size: int = 7) -> None:
    """One row per image, one column per (title, images, colormap, (low, high)) map."""
    rows = len(columns[0][1])
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.9 * len(columns), 1.9 * rows + 0.3), squeeze=False)
    for i in range(rows):
        for j, (title, images, cmap, (lo, hi)) in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(images[i], cmap=cmap, vmin=lo, vmax=hi, interpolation=interpolation)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=title_size)
            if j == 0:
                ax.set_ylabel(row_titles[i], fontsize=7)
    _save(fig, path)


def coverage_reliability(path: Path, curves: Mapping[str, Mapping[str, Sequence[float]]], alpha: float,
                         lambdas: Mapping[str, float | None]) -> None:
    """Pixel coverage of [mean - lambda std, mean + lambda std] against lambda, val and test, per SR set; the
    Gaussian nominal 2 Phi(lambda) - 1 for reference; the target 1 - alpha and each set's chosen lambda."""
    from scipy.stats import norm
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, curve in curves.items():
        lam = np.asarray(curve["lambda"])
        line, = ax.plot(lam, curve["val"], label=f"{name} val")
        ax.plot(lam, curve["test"], "--", color=line.get_color(), label=f"{name} test")
        if lambdas.get(name) is not None:
            ax.axvline(lambdas[name], color=line.get_color(), lw=0.8, alpha=0.6)
    grid = np.linspace(0, float(max(max(c["lambda"]) for c in curves.values())), 100)
    ax.plot(grid, 2 * norm.cdf(grid) - 1, ":", color="grey", label="Gaussian nominal")
    ax.axhline(1 - alpha, color="black", lw=0.8, label=f"target 1 - alpha = {1 - alpha:.2f}")
    ax.set_xlabel("lambda (interval half-width in stds)")
    ax.set_ylabel("share of pixels inside the interval")
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=6, loc="lower right")
    _save(fig, path)


def stability_histogram(path: Path, shares: Mapping[str, np.ndarray], labels: np.ndarray, samples: int) -> None:
    """Per test image with samples: the share of its samples the HR classifier calls unhealthy, by true class."""
    fig, axes = plt.subplots(1, len(shares), figsize=(3.2 * len(shares), 2.8), squeeze=False)
    bins = np.linspace(-0.5 / samples, 1 + 0.5 / samples, samples + 2)
    for ax, (name, share) in zip(axes[0], shares.items()):
        for cls in (1, 0):
            ax.hist(share[labels == cls], bins=bins, alpha=0.6, label=f"truly {CLASSES[cls]}")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("share of samples called unhealthy")
        ax.axvspan(0.5 / samples, 1 - 0.5 / samples, color="orange", alpha=0.12, lw=0)
    axes[0, 0].set_ylabel("test images")
    axes[0, 0].legend(fontsize=6)
    _save(fig, path)


def swap_maps(path: Path, hr: np.ndarray, null: np.ndarray, swapped: np.ndarray, row_titles: Sequence[str]) -> None:
    """HR, the null-guided draw, the draw told the opposite label (same noise), and swapped - null (signed)."""
    diff = swapped - null
    bound = max(float(np.abs(diff).max()), 1e-6)
    columns = [("HR", hr, "gray", (0, 1)), ("null guidance", null, "gray", (0, 1)),
               ("told the opposite label", swapped, "gray", (0, 1)),
               ("swapped - null", diff, "RdBu_r", (-bound, bound))]
    _image_grid(path, columns, row_titles)
