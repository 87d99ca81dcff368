"""Where a classifier epoch's time goes, and what the memory layout and the optimizer implementation change in it.

One train-classifier epoch (medsr.stages.train_classifier, params.yaml's train_classifier) has three parts: training
over the train split (forward, backward, Adam step per batch), the precise-BatchNorm pass (`recalibrate_batchnorm`,
train mode, no gradient) and the val pass (`evaluate_classifier`, eval mode). Each is timed for the architecture in four
variants: weights and inputs contiguous (NCHW) or channels_last (NHWC, `medsr.classifier.model.MEMORY_FORMAT`), Adam
as torch's per-tensor loop (`foreach`) or its fused kernel (`fused=True`, what `optimizer_and_schedule` builds). The
update rule is the same in all four; only the order of floating-point operations differs. Seconds are the median
over `--epochs` epochs after one warm-up epoch, on `--threads` threads (the default run gives each job one).

    .venv/bin/python benchmarks/classifier_speed.py --images data/hr [--epochs 3] [--threads 1]

Prints a table and writes results/benchmarks/classifier_speed.json. Timing only: nothing here chooses a recipe,
and the val split is read for its cost, not its scores.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import medsr.classifier.model as classifier_model
from medsr.classifier.model import build_classifier
from medsr.stages.train_classifier import (evaluate_classifier, precise_bn_subset, recalibrate_batchnorm, split_tensors,
                                    train_epoch)
from medsr.core.config import load_params
from medsr.core.io import write_json
from medsr.core.parameters import ARCHITECTURES
from medsr.core.randomness import seed_everything

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
OPTIMIZERS = {"foreach": {"foreach": True}, "fused": {"fused": True}}
PARTS = ("train", "precise_bn", "val")


def time_variant(architecture: str, params, x_train, y_train, x_val, y_val, layout: str, optimizer: str,
                 epochs: int, seed: int) -> dict:
    classifier_model.MEMORY_FORMAT = LAYOUTS[layout]  # read by build_classifier and normalize at call time
    try:
        generator = seed_everything(seed)
        net = build_classifier(architecture)
        adam = torch.optim.Adam(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay,
                                **OPTIMIZERS[optimizer])
        cpu = torch.device("cpu")
        times: dict[str, list[float]] = {part: [] for part in PARTS}
        for epoch in range(epochs + 1):  # epoch 0 warms up (oneDNN primitive caches) and is not counted
            marks = [time.perf_counter()]
            train_epoch(net, adam, x_train, y_train, params, generator, cpu, epoch + 1)
            marks.append(time.perf_counter())
            recalibrate_batchnorm(net, precise_bn_subset(x_train), params.batch_size, cpu)
            marks.append(time.perf_counter())
            evaluate_classifier(net, x_val, y_val, params.batch_size, cpu)
            marks.append(time.perf_counter())
            if epoch:
                for part, start, end in zip(PARTS, marks, marks[1:]):
                    times[part].append(end - start)
    finally:
        classifier_model.MEMORY_FORMAT = LAYOUTS["channels_last"]
    row = {"layout": layout, "optimizer": optimizer} | {f"{part}_s": statistics.median(t) for part, t in times.items()}
    row["epoch_s"] = sum(row[f"{part}_s"] for part in PARTS)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", type=Path, default=Path("data/hr"))
    parser.add_argument("--architecture", default="resnet18", choices=ARCHITECTURES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/classifier_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params([args.params]).train_classifier
    x_train, y_train = split_tensors(args.images, "train")
    x_val, y_val = split_tensors(args.images, "val")
    rows = []
    print(f"{'layout':<14} {'optimizer':<8} {'train s':>8} {'BN s':>6} {'val s':>6} {'epoch s':>8} {'x first':>7}")
    for layout in LAYOUTS:
        for optimizer in OPTIMIZERS:
            row = time_variant(args.architecture, params, x_train, y_train, x_val, y_val, layout, optimizer,
                               args.epochs, args.seed)
            row["relative"] = row["epoch_s"] / (rows[0]["epoch_s"] if rows else row["epoch_s"])
            rows.append(row)
            print(f"{layout:<14} {optimizer:<8} {row['train_s']:8.2f} {row['precise_bn_s']:6.2f} {row['val_s']:6.2f} "
                  f"{row['epoch_s']:8.2f} {row['relative']:7.2f}", flush=True)
    write_json(args.out, {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__},
        "architecture": args.architecture, "images": str(args.images), "train_images": len(x_train),
        "val_images": len(x_val), "batch_size": params.batch_size, "epochs_timed": args.epochs, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
