"""Where can resolution matter at all? A sweep of the embedded dataset's difficulty knob, on the val split.

For each lesion radius (data.mni.lesion_radius, HR pixels; the LR pixel is degrade.scale HR pixels) this builds
the default dataset with the project's own stages in a scratch folder (`medsr.stages.download.run`,
`medsr.stages.degrade.run`), trains the HR classifier on HR and the matched baseline on bicubic-upsampled LR
(`medsr.stages.train_classifier.run`: train split, epoch chosen on val) and scores each on its own kind of val images:
AUROC, and FNR / specificity at the operating point chosen on val (evaluate.val_specificity; chosen and measured
on the same val images, so it is in-sample: a sweep to choose the default, not a result), plus McNemar's test on
the unhealthy val images only (HR right / bicubic wrong against the reverse: a test of FNR, paired by image).
With `--sr-model` (a model from `medsr train-sr` at data.image_size and degrade.scale; the same model for every
level) the SR images of the val split (generate.* params, null guidance) go through the HR classifier too.

The test split is never read: each scratch dataset gets one test image per class (the generator needs a test
split), which nothing here opens after writing.

    .venv/bin/python benchmarks/difficulty.py [--radii 1.5 2 2.5 3 3.5] [--train-per-class 320] [--epochs 12]
        [--threads 1] [--sr-model models/sr.safetensors]

Prints a table and writes results/benchmarks/difficulty.json and difficulty.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medsr.stages import degrade
from medsr.core import io
from medsr.stages import train_classifier
from medsr.classifier.model import load_classifier, predict_proba
from medsr.core.config import load_params
from medsr.core.parameters import CLASSES
from medsr.stages import download
from medsr.evaluation.metrics import auroc
from medsr.evaluation.operating_point import predict, val_threshold
from medsr.evaluation.statistics import contingency, mcnemar_test
from medsr.report.benchmark_tables import DIFFICULTY_HEADER, difficulty_row

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "difficulty.json"
DOMAINS = ("hr", "bicubic")


def val_scores(model: Path, images: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """P(unhealthy) of every val image of a set (by id), its labels and ids."""
    records = sorted(io.read_manifest(images, split="val"), key=lambda r: r.id)
    pixels = torch.from_numpy(io.load_images(images, records)).unsqueeze(1)
    scores = predict_proba(load_classifier(model), pixels)[:, CLASSES.index("unhealthy")].numpy()
    labels = np.array([CLASSES.index(r.label) for r in records])
    return scores, labels, [r.id for r in records]


def score_row(scores: np.ndarray, labels: np.ndarray, specificity: float) -> tuple[dict, np.ndarray]:
    point = val_threshold(labels, scores, specificity, "difficulty sweep")
    preds = predict(scores, point.threshold)
    positives = labels == 1
    return {"auroc": auroc(labels, scores), "fnr": float(np.mean(preds[positives] == 0)),
            "specificity": float(np.mean(preds[~positives] == 0)), "accuracy": float(np.mean(preds == labels)),
            "threshold": point.threshold}, preds


def build_level(params, radius: float, args, root: Path) -> float:
    """The dataset of one level under `root` (hr, lr, bicubic): the project's download and degrade stages.
    Returns the seconds the generation took."""
    data = dataclasses.replace(params.data, source="mni", mni=dataclasses.replace(
        params.data.mni, lesion_radius=radius, train_per_class=args.train_per_class, test_per_class=1))
    started = time.perf_counter()
    download.run(data, root / "hr")
    generated = time.perf_counter() - started
    degrade.run(params.degrade, root / "hr", root / "lr", root / "bicubic")
    return generated


def score_level(params, args, root: Path) -> dict:
    """Train the HR and the bicubic classifier of one level (train split, epoch chosen on val); score them on val."""
    classifier_params = dataclasses.replace(params.train_classifier, epochs=args.epochs)
    seed = params.evaluate.train_seeds[0]
    row: dict = {}
    preds, labels = {}, None
    for domain in DOMAINS:
        model = root / f"classifier_{domain}.safetensors"
        train_classifier.run(classifier_params, images=root / domain, model=model, log=root / f"{domain}.csv",
                             architecture=classifier_params.architectures[0], domain=domain, seed=seed)
        scores, labels, _ = val_scores(model, root / domain)
        row[domain], preds[domain] = score_row(scores, labels, params.evaluate.val_specificity)
    if args.sr_model:
        row["sr"], preds["sr"] = sr_row(params, args.sr_model, root, labels)
    unhealthy = labels == 1
    table = contingency(preds["hr"][unhealthy] == 1, preds["bicubic"][unhealthy] == 1)
    row["mcnemar_unhealthy_hr_vs_bicubic"] = {
        **table,
        "pvalue": mcnemar_test(table, params.evaluate.exact_below)["pvalue"],
    }
    row["val_images"] = {"healthy": int((~unhealthy).sum()), "unhealthy": int(unhealthy.sum())}
    return row


def sweep_level(params, radius: float, args, scratch: Path) -> dict:
    root = scratch / f"radius{radius:g}"
    started = time.perf_counter()
    generated = build_level(params, radius, args, root)
    row = {"lesion_radius": radius, "lesion_radius_lr_px": radius / params.degrade.scale,
           "generate_s": round(generated, 2), **score_level(params, args, root)}
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def sr_row(params, sr_model: Path, root: Path, labels: np.ndarray) -> tuple[dict, np.ndarray]:
    """The SR model's val images (generate.* params, null guidance, one shard) through the HR classifier."""
    from medsr.stages import generate

    out = root / "sr"
    generate.run(
        dataclasses.replace(params.generate, shards=(0,)),
        params.evaluate,
        model=Path(sr_model),
        lr=root / "lr",
        out=out,
        guidance="null",
        seed=params.evaluate.sampling_seeds[0],
        shard=0,
    )
    scores, sr_labels, _ = val_scores(root / "classifier_hr.safetensors", out)
    if not np.array_equal(sr_labels, labels):
        raise RuntimeError(f"{out}: the SR val images do not match the HR val images")
    return score_row(scores, sr_labels, params.evaluate.val_specificity)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    radii = [r["lesion_radius"] for r in rows]
    kinds = [k for k in ("hr", "bicubic", "sr") if k in rows[0]]
    names = {"hr": "HR (HR-trained)", "bicubic": "bicubic (bicubic-trained)", "sr": "SR (HR-trained)"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for kind in kinds:
        axes[0].plot(radii, [r[kind]["fnr"] for r in rows], "o-", label=names[kind])
        axes[1].plot(radii, [r[kind]["auroc"] for r in rows], "o-", label=names[kind])
    axes[0].set_ylabel("FNR at the val operating point")
    axes[1].set_ylabel("AUROC")
    for ax in axes:
        ax.set_xlabel("lesion radius (HR pixels)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle("Difficulty sweep (val split): rim vs solid lesions of equal size and mass", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", nargs="+", default=[str(ROOT / "params.yaml")])
    parser.add_argument("--radii", nargs="+", type=float, default=[1.5, 2.0, 2.5, 3.0, 3.5])
    parser.add_argument("--train-per-class", type=int, default=None, help="default: data.mni.train_per_class")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="the maximum (train_classifier.patience may stop earlier); default: train_classifier.epochs",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sr-model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    args.train_per_class = args.train_per_class or params.data.mni.train_per_class
    args.epochs = args.epochs or params.train_classifier.epochs
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="medsr-difficulty-") as scratch:
        for radius in args.radii:
            rows.append(sweep_level(params, radius, args, Path(scratch)))
            print_row(rows[-1])
            write(sorted(rows, key=lambda r: r["lesion_radius"]), params, args)  # after every level: a partial sweep
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", file=sys.stderr)


def write(rows: list[dict], params, args) -> None:
    result = {"benchmark": "difficulty", "split": "val", "rows": rows,
              "settings": {"train_per_class": args.train_per_class, "epochs": args.epochs, "threads": args.threads,
                           "val_fraction": params.data.val_fraction, "train_seed": params.evaluate.train_seeds[0],
                           "val_specificity": params.evaluate.val_specificity,
                           "mni": {k: v for k, v in dataclasses.asdict(params.data.mni).items()
                                   if k not in ("lesion_radius", "train_per_class", "test_per_class")},
                           "degrade": dataclasses.asdict(params.degrade), "sr_model": str(args.sr_model or "")},
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(args.out, result)
    plot(rows, args.out.with_suffix(".png"))


def print_row(row: dict) -> None:
    if not hasattr(print_row, "header"):
        print_row.header = True
        print(DIFFICULTY_HEADER)
    print(difficulty_row(row), flush=True)


if __name__ == "__main__":
    main()
