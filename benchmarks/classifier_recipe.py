"""Classifier recipe across training seeds: does every seed's classifier learn in the default epochs, with and
without precise BatchNorm (`train_classifier.precise_bn`)? Chosen on val, never test.

For each seed, one training run of `train-classifier`'s loop (params.yaml's train_classifier: batches,
augmentation, optimizer, schedule, epochs) on the train split of `--images`; after every epoch the val split is
scored twice from the same weights: with the running BatchNorm statistics kept during training (`ema`, what
`precise_bn: false` keeps) and with statistics recomputed on the train split (`precise`, on a copy: the training
run itself is the same for both). Per variant, the epoch with the best monitored value (train_classifier.monitor)
is kept, as train-classifier does (with train_classifier.patience > 0: up to where its early stopping would stop,
after at least train_classifier.min_epochs, on that variant's values;
every epoch up to the maximum is still trained and recorded; `recipe_choice.py --replay` replays other stopping
rules on those full curves); the table shows its val accuracy and AUROC per seed
and the worst seed, and each run's `stopping` (epochs run, best epoch, stopped early, converged).

    .venv/bin/python benchmarks/classifier_recipe.py --images data/hr --seeds 0 1 2 3 4 5 [--workers 2] \
        [--set learning_rate=0.003 epochs=8 --out results/benchmarks/classifier_recipe_<variant>.json]

`--set` overrides train_classifier keys of the params file (validated as params.yaml is) for a recipe variant.
`--init-images data/hr` starts each seed from the classifier `train-classifier` trains on those images with the
same seed and params.yaml's recipe (fine-tuning, as `train-classifier --init` does for the pipeline's bicubic
classifier); those classifiers are written to `--init-dir` and reused when already there.

Prints a table and writes results/benchmarks/classifier_recipe.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from medsr.classifier.model import build_classifier, load_classifier
from medsr.stages.train_classifier import (evaluate_classifier, optimizer_and_schedule, precise_bn_subset,
                                    recalibrate_batchnorm, run as train_classifier, split_tensors, train_epoch)
from medsr.core.config import load_params
from medsr.core.parameters import TrainClassifierParams
from medsr.core.io import write_json
from medsr.core.randomness import seed_everything
from medsr.classifier.stopping import stopping, trained_epochs

VARIANTS = ("ema", "precise")
NOT_LEARNED = 0.75  # a best-epoch val accuracy below this counts as a seed whose classifier did not learn


def _score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """train-classifier's val pass (`evaluate_classifier`, 64 images a batch) as the row's val values."""
    val_loss, val_acc, val_auroc = evaluate_classifier(model, x, y, 64, torch.device("cpu"))
    return {"val_loss": val_loss, "val_acc": val_acc, "val_auroc": val_auroc}


def recipe(params_file: str, overrides: list[str]) -> TrainClassifierParams:
    """params.yaml's train_classifier with `key=value` overrides (YAML values), validated."""
    values = dataclasses.asdict(load_params([params_file]).train_classifier)
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in values:
            raise SystemExit(f"--set {item}: train_classifier has no key {key!r}")
        values[key] = yaml.safe_load(value)
    return TrainClassifierParams(**values)


def init_classifier(params: TrainClassifierParams, init_images: Path, init_dir: Path, architecture: str,
                    seed: int) -> Path:
    """The classifier train-classifier writes for (init_images, architecture, seed) with the recipe `params`."""
    path = init_dir / f"classifier_{architecture}_{init_images.name}_seed{seed}.safetensors"
    if not path.exists():
        torch.set_num_threads(1)
        train_classifier(params, images=init_images, model=path,
                         log=path.with_suffix(".csv"), architecture=architecture, domain=init_images.name, seed=seed)
    return path


def one_seed(params: TrainClassifierParams, images: Path, architecture: str, seed: int, threads: int,
             init: Path | None = None) -> dict:
    torch.set_num_threads(threads)
    generator = seed_everything(seed)
    x_train, y_train = split_tensors(images, "train")
    x_val, y_val = split_tensors(images, "val")
    net = build_classifier(architecture) if init is None else load_classifier(init)
    optimizer, schedule = optimizer_and_schedule(net, params)
    epochs, train_s, recal_s = [], [], []
    for epoch in range(1, params.epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc = train_epoch(net, optimizer, x_train, y_train, params, generator,
                                             torch.device("cpu"), epoch)
        train_s.append(time.perf_counter() - start)
        schedule.step()
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "ema": _score(net, x_val, y_val)}
        precise = copy.deepcopy(net)
        start = time.perf_counter()
        recalibrate_batchnorm(precise, precise_bn_subset(x_train), params.batch_size, torch.device("cpu"))
        recal_s.append(time.perf_counter() - start)
        row["precise"] = _score(precise, x_val, y_val)
        epochs.append(row)
    # train-classifier's early stopping (train_classifier.patience, min_epochs, monitor) on each variant's val
    # values: the kept epoch is the best monitored value up to the stop (ties: the earlier epoch)
    stops = {v: stopping(trained_epochs([r[v][params.monitor] for r in epochs], params.patience, params.min_epochs,
                                        params.monitor), params.patience, params.epochs, params.monitor)
             for v in VARIANTS}
    best = {v: epochs[stops[v].best_epoch - 1] for v in VARIANTS}
    return {"seed": seed, "epochs": epochs, "train_s_per_epoch": float(np.median(train_s)),
            "recalibration_s": float(np.median(recal_s)),
            "best": {v: {"epoch": best[v]["epoch"], **best[v][v], "stopping": stops[v].as_dict()} for v in VARIANTS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", type=Path, default=Path("data/hr"))
    parser.add_argument("--architecture", default="resnet18")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="train_classifier overrides")
    parser.add_argument("--workers", type=int, default=2, help="seeds trained at once, one thread each")
    parser.add_argument("--init-images", type=Path, help="fine-tune from the classifier trained on these images")
    parser.add_argument("--init-dir", type=Path, default=Path("models/classifier_recipe_init"),
                        help="where those classifiers are written (and reused)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/classifier_recipe.json"))
    args = parser.parse_args()
    params = recipe(args.params, args.set)
    with ProcessPoolExecutor(args.workers) as pool:
        inits = ([None] * len(args.seeds) if args.init_images is None else
                 list(pool.map(init_classifier, *zip(*[(recipe(args.params, []), args.init_images, args.init_dir,
                                                         args.architecture, s) for s in args.seeds]))))
        runs = list(pool.map(one_seed, *zip(*[(params, args.images, args.architecture, s, 1, init)
                                              for s, init in zip(args.seeds, inits)])))
    print(f"{'seed':>4} " + " ".join(f"{v + ' ep':>10} {v + ' acc':>11} {v + ' AUROC':>13}" for v in VARIANTS))
    for run in runs:
        print(f"{run['seed']:>4} " + " ".join(f"{run['best'][v]['epoch']:>10} {run['best'][v]['val_acc']:>11.3f} "
                                              f"{run['best'][v]['val_auroc']:>13.3f}" for v in VARIANTS))
    summary = {v: {"worst_val_acc": min(r["best"][v]["val_acc"] for r in runs),
                   "median_val_acc": float(np.median([r["best"][v]["val_acc"] for r in runs])),
                   "worst_val_auroc": min(r["best"][v]["val_auroc"] for r in runs),
                   "seeds_not_learned": sum(r["best"][v]["val_acc"] < NOT_LEARNED for r in runs)}
               for v in VARIANTS}
    for v in VARIANTS:
        print(f"{v}: worst val acc {summary[v]['worst_val_acc']:.3f}, worst val AUROC "
              f"{summary[v]['worst_val_auroc']:.3f}, seeds below val acc {NOT_LEARNED}: "
              f"{summary[v]['seeds_not_learned']}/{len(runs)}")
    train_s = float(np.median([r["train_s_per_epoch"] for r in runs]))
    recal_s = float(np.median([r["recalibration_s"] for r in runs]))
    print(f"s/epoch (training, 1 thread, {args.workers} at once): {train_s:.1f}; recalibration: {recal_s:.1f} "
          f"(+{100 * recal_s / train_s:.0f}%)")
    write_json(
        args.out,
        {
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "threads": 1,
                "workers": args.workers,
                "torch": torch.__version__,
            },
            "images": str(args.images),
            "architecture": args.architecture,
            "params": dataclasses.asdict(params),
            "overrides": args.set,
            "init_images": None if args.init_images is None else str(args.init_images),
            "not_learned_below_val_acc": NOT_LEARNED,
            "summary": summary,
            "train_s_per_epoch": train_s,
            "recalibration_s": recal_s,
            "runs": runs,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
