"""Classifier families: seconds per training epoch and the val loss / accuracy they reach, to choose which
families the default run (15 minutes on 2 CPU cores) can afford next to ResNet18.

Every row trains `train-classifier`'s loop (medsr.stages.train_classifier: the same batches, augmentation, optimizer
and schedule as params.yaml's train_classifier) on the train split of `--images` for `--epochs` epochs and
scores the val split after each (never test: the choice of default families is made on val). s/epoch is the
median wall time of the training part of an epoch (forward + backward + step over the whole train split).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/classifier_architectures.py --images data/bicubic [--epochs 12]

Prints a table and writes results/benchmarks/classifier_architectures.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from medsr.classifier.model import build_classifier
from medsr.stages.train_classifier import (evaluate_classifier, optimizer_and_schedule, precise_bn_subset,
                                    recalibrate_batchnorm, split_tensors, train_epoch)
from medsr.core.config import load_params
from medsr.core.parameters import ARCHITECTURES
from medsr.core.randomness import seed_everything


def bench(architecture: str, params, images: Path, epochs: int, seed: int) -> dict:
    generator = seed_everything(seed)
    x_train, y_train = split_tensors(images, "train")
    x_val, y_val = split_tensors(images, "val")
    net = build_classifier(architecture)
    optimizer, schedule = optimizer_and_schedule(net, params, epochs)
    times, val = [], []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_epoch(net, optimizer, x_train, y_train, params, generator, torch.device("cpu"), epoch)
        times.append(time.perf_counter() - start)
        schedule.step()
        if params.precise_bn:  # as train-classifier: val scored with BatchNorm statistics of the train split
            recalibrate_batchnorm(net, precise_bn_subset(x_train), params.batch_size, torch.device("cpu"))
        val.append(evaluate_classifier(net, x_val, y_val, params.batch_size, torch.device("cpu")))
    best = min(range(epochs), key=lambda i: val[i][0])
    return {"architecture": architecture, "parameters": sum(p.numel() for p in net.parameters()),
            "s_per_epoch": statistics.median(times), "epochs": epochs, "best_epoch": best + 1,
            "best_val_loss": val[best][0], "best_val_acc": val[best][1], "last_val_acc": val[-1][1],
            "train_images": len(x_train), "val_images": len(x_val)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", type=Path, default=Path("data/bicubic"))
    parser.add_argument("--epochs", type=int, default=None, help="default: train_classifier.epochs")
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/classifier_architectures.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params([args.params]).train_classifier
    epochs = args.epochs or params.epochs
    rows = []
    print(f"{'architecture':<20} {'params':>10} {'s/epoch':>8} {'x resnet18':>10} {'best ep':>7} "
          f"{'val loss':>8} {'val acc':>7}")
    for architecture in args.architectures:
        row = bench(architecture, params, args.images, epochs, args.seed)
        rows.append(row)
        ref = next((r["s_per_epoch"] for r in rows if r["architecture"] == "resnet18"), None)
        ratio = f"{row['s_per_epoch'] / ref:10.2f}" if ref else f"{'-':>10}"
        print(f"{architecture:<20} {row['parameters']:>10,} {row['s_per_epoch']:8.2f} {ratio} {row['best_epoch']:>7} "
              f"{row['best_val_loss']:8.4f} {row['best_val_acc']:7.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads,
                    "torch": torch.__version__},
        "images": str(args.images), "params": dataclasses.asdict(params) | {"epochs": epochs}, "rows": rows},
        indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
