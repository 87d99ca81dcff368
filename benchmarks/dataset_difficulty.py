"""Is the synthetic dataset a meaningful test bed? HR must be learnable, bicubic(LR) must lose some of it.

Trains the project's ResNet18 (1-channel stem, weights=None) from scratch on the HR training images
of the default synthetic dataset, with the train_classifier parameters, and evaluates it on the HR
test images and on the bicubic upsampling of their LR versions (degrade parameters, Eq. 1.1).
With --bicubic-trained it also trains one classifier on bicubic images: how much class information
survives in the LR image at all (a ceiling for any SR method that only sees LR).

    .venv/bin/python benchmarks/dataset_difficulty.py [--params params.yaml] [--seeds 0 1]

Prints a table and writes results/benchmarks/dataset_difficulty.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medsr.classifier.model import build_classifier, normalize, predict_proba
from medsr.config import CLASSES, load_params
from medsr.data import synthetic
from medsr.degrade import degrade_image
from medsr.pixels import bicubic_upsample, quantize
from medsr.randomness import torch_generator as noise_generator


def dataset(params, image_size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{split: (images [N, 1, H, W] as stored in 8 bits, labels [N])}."""
    out: dict[str, list] = {"train": [], "test": []}
    for item in synthetic.generate(params, image_size):
        out[item.split].append((item.image, CLASSES.index(item.label)))
    return {split: (quantize(torch.from_numpy(np.stack([im for im, _ in rows]))[:, None]),
                    torch.tensor([label for _, label in rows]))
            for split, rows in out.items()}


def bicubic_of(images: torch.Tensor, ids: list[str], degrade) -> torch.Tensor:
    lows = [quantize(degrade_image(img[None], degrade.scale, degrade.blur_sigma, degrade.noise_std,
                                   noise_generator(degrade.seed, image_id)))
            for img, image_id in zip(images, ids)]
    return bicubic_upsample(torch.cat(lows), degrade.scale)


def train(images: torch.Tensor, labels: torch.Tensor, config, seed: int, epochs: int) -> torch.nn.Module:
    """As `medsr train-classifier` does: Adam, hflip, a stratified validation split carved from
    train, and the weights of the epoch with the lowest validation cross-entropy."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(labels.numpy() == c))[:round(config.val_fraction *
                          int((labels == c).sum()))] for c in range(len(CLASSES))])
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    is_val[torch.from_numpy(val)] = True
    x_train, y_train, x_val, y_val = images[~is_val], labels[~is_val], images[is_val], labels[is_val]
    model = build_classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    best_loss, best_state = float("inf"), None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order) - 1, config.batch_size):
            index = order[start:start + config.batch_size]
            batch = x_train[index]
            if config.hflip:
                flip = torch.rand(len(batch), generator=generator) < 0.5
                batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            loss = F.cross_entropy(model(normalize(batch)), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val_loss = float(F.nll_loss(predict_proba(model, x_val).clamp_min(1e-12).log(), y_val))
        if val_loss < best_loss:
            best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval()


def scores(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    predicted = predict_proba(model, images).argmax(1)
    positive = labels == 1
    tp = int((predicted[positive] == 1).sum())
    fn = int((predicted[positive] == 0).sum())
    tn = int((predicted[~positive] == 0).sum())
    fp = int((predicted[~positive] == 1).sum())
    return {"accuracy": (tp + tn) / len(labels), "recall": tp / max(tp + fn, 1),
            "specificity": tn / max(tn + fp, 1), "tp": tp, "fn": fn, "tn": tn, "fp": fp}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", action="append", help="parameter files (default: params.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="classifier training seeds")
    parser.add_argument("--epochs", type=int, help="default: train_classifier.epochs")
    parser.add_argument("--bicubic-trained", action="store_true",
                        help="also train on bicubic images (how much the LR image still holds)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/dataset_difficulty.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params(args.params or ["params.yaml"])
    config, degrade = params.train_classifier, params.degrade
    epochs = args.epochs or config.epochs

    start = time.perf_counter()
    data = dataset(params.data.synthetic, params.data.image_size)
    generation_s = time.perf_counter() - start
    ids = {split: [synthetic.image_id(split, CLASSES[int(label)], i // 2) for i, label in enumerate(labels)]
           for split, (_, labels) in data.items()}
    train_hr, train_labels = data["train"]
    test_hr, test_labels = data["test"]
    test_bicubic = bicubic_of(test_hr, ids["test"], degrade)
    train_bicubic = bicubic_of(train_hr, ids["train"], degrade) if args.bicubic_trained else None

    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        model = train(train_hr, train_labels, config, seed, epochs)
        run = {"seed": seed, "train_s": round(time.perf_counter() - t0, 1),
               "hr_trained": {"hr": scores(model, test_hr, test_labels),
                              "bicubic": scores(model, test_bicubic, test_labels)}}
        if train_bicubic is not None:
            model = train(train_bicubic, train_labels, config, seed, epochs)
            run["bicubic_trained"] = {"bicubic": scores(model, test_bicubic, test_labels)}
        runs.append(run)
        print(f"seed {seed}: trained in {run['train_s']} s", file=sys.stderr)

    rows = [("HR-trained", "hr"), ("HR-trained", "bicubic")]
    if args.bicubic_trained:
        rows.append(("bicubic-trained", "bicubic"))
    summary = {}
    print(f"\n{'classifier':<16}{'test set':<10}{'accuracy':>10}{'recall':>9}{'specif.':>9}{'FN':>6}{'FP':>6}")
    for trained, test_set in rows:
        key = trained.replace("-", "_").lower()
        found = [run[key][test_set] for run in runs]
        mean = {m: float(np.mean([f[m] for f in found])) for m in found[0]}
        summary[f"{key}/{test_set}"] = mean
        print(f"{trained:<16}{test_set:<10}{mean['accuracy']:>10.3f}{mean['recall']:>9.3f}"
              f"{mean['specificity']:>9.3f}{mean['fn']:>6.1f}{mean['fp']:>6.1f}")
    print(f"(mean over seeds {args.seeds}; {len(test_labels)} test images; generation {generation_s:.1f} s)")

    result = {"benchmark": "dataset_difficulty", "data": {"image_size": params.data.image_size,
              **vars(params.data.synthetic)}, "degrade": vars(degrade), "classifier": {**vars(config),
              "epochs": epochs, "model": "resnet18-1ch"}, "generation_s": round(generation_s, 2),
              "summary": summary, "runs": runs,
              "machine": {"torch": torch.__version__, "threads": args.threads, "platform": platform.platform()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
