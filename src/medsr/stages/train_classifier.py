"""`medsr train-classifier`: one classifier family on the `train` split of one image set, the best epoch chosen
on `val`.

The train and val splits are those of the set's manifest (val carved once at download); the test split is
never read. The kept weights are those of the epoch with the best value of the val criterion `monitor` (the
cross-entropy, lowest, or the AUROC, highest; ties go to the earlier epoch). Training runs for at most `epochs`;
with `patience` > 0 it stops early once `patience` epochs in a row have not improved it, but never before
`min_epochs` epochs (early stopping, Prechelt 1998, "Early stopping - but when?"), and `medsr.classifier.stopping` says
whether the kept epoch was still improving at the budget (`converged`: the learning gate of `medsr evaluate`
reads it from the history CSV). Every epoch's val loss, accuracy and AUROC are in the history either way.
The learning-rate schedule always spans the maximum `epochs` (cosine over the budget): a run that stops early
stops where its val criterion stopped improving, at a learning rate not yet decayed to zero, and its epochs before the
stop are exactly those of a run without early stopping. With `precise_bn`, every val
pass (and so the kept weights) uses BatchNorm statistics recomputed on the train split under that epoch's final
weights (`recalibrate_batchnorm`). One classifier is trained
per (architecture, domain, seed): `architecture` is one of train_classifier.architectures, `domain` says which
kind of images the set holds (hr, bicubic, sr), `seed` is one of evaluate.train_seeds.

A classifier of another domain than HR starts from the HR classifier of its family and seed (`init`: fine-tuning,
the same recipe and epochs): the strongest "no SR" baseline a user with the HR train images has. From scratch,
544 bicubic train images teach ResNet18 nothing beyond chance in the default epochs on val
(results/benchmarks/bicubic_recipe.json compares the recipes tried, with the criterion fixed before the runs).
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medsr.core.model_files import read_metadata, save_model
from medsr.evaluation.metrics import auroc
from medsr.classifier.model import NORMALIZE_MEAN, NORMALIZE_STD, build_classifier, load_classifier, normalize
from medsr.core.config import to_jsonable
from medsr.core.parameters import CLASSES, TrainClassifierParams
from medsr.core.randomness import seed_everything
from medsr.core.errors import MedsrError
from medsr.core.io import MANIFEST, Record, load_images, read_manifest, sha256_file, write_csv
from medsr.classifier.stopping import RUN_FIELDS, best_epoch, should_stop, stopping
from medsr.core.training import Diverged, check_loss

# Per epoch, then the columns about the whole run (the same on every row, so any row tells): medsr.classifier.stopping.
HISTORY_FIELDS = ("epoch", "learning_rate", "train_loss", "train_acc", "val_loss", "val_acc", "val_auroc",
                  *RUN_FIELDS)
PRECISE_BN_IMAGES = 256  # train images (evenly spaced in manifest order) the BatchNorm statistics are recomputed on


def label_indices(records: list[Record], manifest: Path) -> np.ndarray:
    """healthy -> 0, unhealthy -> 1 (positive); anything else is an error naming the manifest."""
    bad = next((r for r in records if r.label not in CLASSES), None)
    if bad is not None:
        raise MedsrError(f"{manifest}: image {bad.id} has label {bad.label!r}, expected one of {', '.join(CLASSES)}")
    return np.array([CLASSES.index(r.label) for r in records], dtype=np.int64)


def split_records(images: Path, split: str) -> list[Record]:
    """One split of the set (train or val): the test images of the set are never loaded here."""
    if split == "test":
        raise MedsrError("train-classifier: the test split is never read for training or selection")
    return read_manifest(images, split=split)


def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              device: torch.device) -> tuple[float, float, float]:
    """Val cross-entropy, accuracy at the argmax, and AUROC of the unhealthy probability."""
    model.eval()
    loss_sum, correct, scores = 0.0, 0, []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            logits = model(normalize(xb))
            loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
            scores.append(torch.softmax(logits.float(), 1)[:, 1].cpu().numpy())
    return loss_sum / len(x), correct / len(x), auroc(y.numpy(), np.concatenate(scores).astype(np.float64))


def precise_bn_subset(x: torch.Tensor, count: int = PRECISE_BN_IMAGES) -> torch.Tensor:
    """`count` images of `x` evenly spaced in its order (all of them when there are fewer): precise BN's statistics
    from a fixed-size sample of the train split rather than all of it, so its cost per epoch does not grow with the
    split."""
    if len(x) <= count:
        return x
    return x[torch.linspace(0, len(x) - 1, count).round().long()]


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> None:
    """Precise BatchNorm (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", Section 3.1): every BatchNorm's
    running mean and variance replaced by the average of its batch statistics over the images `x`, computed
    with the current weights, in a fixed order and without augmentation (no random draw: the training stream is
    unchanged).

    The running statistics kept during training are an exponential average (momentum 0.1) over the last ~10
    batches, each computed with different weights; in a few hundred steps on a few hundred images the weights move
    faster than that average follows, and in eval mode the network can then score every val image at chance while
    its train accuracy is high (the classifier_recipe table in docs/evaluation.md).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average over the batches that follow (torch.nn.BatchNorm2d)
    model.train()
    with torch.no_grad():  # not inference_mode: the buffers updated here are trained with again
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            if len(batch) >= 2:  # a batch of one has no variance
                model(normalize(batch.to(device)))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def random_crop(x: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    """A `side` x `side` window of each image of `x` [N, 1, H, W] at a uniform random offset (`train_classifier.crop`,
    training only). ResNet-style networks end in global average pooling, so the whole images of val and evaluation
    go through the same weights; precise BN recomputes BatchNorm's statistics on whole images (the train-test
    resolution discrepancy and its BatchNorm fix: Touvron et al. 2019, "Fixing the train-test resolution
    discrepancy"). Side 0, or one at least the images' own, returns `x` and draws nothing from `generator`."""
    height, width = x.shape[-2:]
    if side == 0 or side >= min(height, width):
        return x
    rows = torch.randint(0, height - side + 1, (len(x),), generator=generator)
    cols = torch.randint(0, width - side + 1, (len(x),), generator=generator)
    return torch.stack([image[:, r:r + side, c:c + side] for image, r, c in zip(x, rows.tolist(), cols.tolist())])


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 params: TrainClassifierParams, generator: torch.Generator,
                 device: torch.device, epoch: int = 1) -> tuple[float, float]:
    model.train()
    order = torch.randperm(len(x), generator=generator)
    loss_sum, correct, seen = 0.0, 0, 0
    for batch, start in enumerate(range(0, len(x), params.batch_size), start=1):
        idx = order[start:start + params.batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples; a lone leftover image waits for the next epoch
            continue
        xb, yb = x[idx], y[idx]
        if params.hflip:  # training-only augmentation: mirror a random half of the batch
            flip = torch.rand(len(idx), generator=generator) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        xb = random_crop(xb, params.crop, generator)
        xb, yb = xb.to(device), yb.to(device)
        logits = model(normalize(xb))
        loss = nn.functional.cross_entropy(logits, yb)
        check_loss(loss.item(), "train-classifier", f"epoch {epoch} batch {batch}", "train_classifier.learning_rate",
                   optimizer.param_groups[0]["lr"])  # before the step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(idx)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def optimizer_and_schedule(net: nn.Module, params: TrainClassifierParams, epochs: int | None = None):
    """Adam and its per-epoch learning-rate schedule over `epochs` (params.epochs, the maximum): cosine decay to zero
    (the last epochs settle instead of jumping between minima) or constant. Early stopping leaves it as it is: the
    schedule of a run that stops at epoch k is the first k epochs of the full one. The stage and the classifier
    benchmarks share it. Adam is torch's fused implementation: the same update rule in one kernel per step instead of a
    loop over ResNet18's 62 tensors (what it saves per epoch: benchmarks/classifier_speed.py)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay,
                                 fused=True)  # one kernel per step, not one per tensor: classifier_speed.json
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs or params.epochs)
                if params.lr_schedule == "cosine" else torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0))
    return optimizer, schedule


def split_tensors(images: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    records = split_records(images, split)
    labels = label_indices(records, images / MANIFEST)
    if len(np.unique(labels)) < len(CLASSES):
        raise MedsrError(f"{images / MANIFEST}: the {split} split needs images of both classes")
    pixels = load_images(images, records)
    if pixels.shape[1] != pixels.shape[2]:
        raise MedsrError(f"{images}: images must be square, got {pixels.shape[1]}x{pixels.shape[2]}")
    return torch.from_numpy(pixels).unsqueeze(1), torch.from_numpy(labels)


def starting_point(init: Path, architecture: str, image_size: int) -> nn.Module:
    """The classifier in `init` to fine-tune: it must be of `architecture` and take images of `image_size`."""
    net = load_classifier(init)
    if net.architecture != architecture:
        raise MedsrError(f"{init}: a {net.architecture} classifier cannot start a {architecture} one (--init)")
    if net.image_size is not None and int(net.image_size) != image_size:
        raise MedsrError(f"{init}: trained on {net.image_size}-pixel images, these are {image_size} (--init)")
    return net


def _init_record(init: Path) -> dict:
    """What the model file says about where its training started."""
    origin = read_metadata(init)
    return {"path": str(init), "sha256": sha256_file(init), "domain": origin.get("domain"), "seed": origin.get("seed")}


def _load_splits(images: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x_train, y_train = split_tensors(images, "train")
    x_val, y_val = split_tensors(images, "val")
    if x_train.shape[-2:] != x_val.shape[-2:]:
        raise MedsrError(
            f"{images}: val images are {tuple(x_val.shape[-2:])}, train images {tuple(x_train.shape[-2:])}"
        )
    return x_train, y_train, x_val, y_val


def _fit(net: nn.Module, params: TrainClassifierParams, x_train: torch.Tensor, y_train: torch.Tensor,
         x_val: torch.Tensor, y_val: torch.Tensor, generator: torch.Generator, device: torch.device):
    """Epochs until `params.epochs` or early stopping; returns (history rows, best epoch's record and weights,
    the monitored val values). The kept epoch is the one with the best value of `params.monitor`."""
    optimizer, schedule = optimizer_and_schedule(net, params)
    history: list[dict[str, float | int]] = []
    best: dict[str, float | int] = {}
    best_state: dict[str, torch.Tensor] = {}
    monitored: list[float] = []
    for epoch in range(1, params.epochs + 1):
        learning_rate = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_epoch(net, optimizer, x_train, y_train, params, generator, device, epoch)
        schedule.step()
        if params.precise_bn:
            recalibrate_batchnorm(net, precise_bn_subset(x_train), params.batch_size, device)
        val_loss, val_acc, val_auroc = evaluate_classifier(net, x_val, y_val, params.batch_size, device)
        # a nan validation loss would win no comparison and so stay "best" if it came first
        check_loss(val_loss, "train-classifier", f"epoch {epoch} (validation)", "train_classifier.learning_rate",
                   learning_rate)
        row = {
            "epoch": epoch,
            "learning_rate": learning_rate,
            "train_loss": round(train_loss, 6),
            "train_acc": round(train_acc, 6),
            "val_loss": round(val_loss, 6),
            "val_acc": round(val_acc, 6),
            "val_auroc": round(val_auroc, 6),
        }
        history.append(row)
        print(f"train-classifier: epoch {epoch}/{params.epochs} train_loss {train_loss:.4f} "
              f"train_acc {train_acc:.3f} val_loss {val_loss:.4f} val_acc {val_acc:.3f} val_auroc {val_auroc:.3f}",
              file=sys.stderr)
        current = {"val_loss": val_loss, "val_auroc": val_auroc}[params.monitor]
        monitored.append(current)
        if best_epoch(monitored, params.monitor) == epoch:  # strictly better than every earlier epoch
            best = {"epoch": epoch, "val_loss": val_loss, "val_acc": val_acc, "val_auroc": val_auroc}
            best_state = copy.deepcopy(net.state_dict())
        if should_stop(monitored, params.patience, params.min_epochs, params.monitor):
            print(f"train-classifier: early stop after epoch {epoch}: no better {params.monitor} in "
                  f"{params.patience} epochs (best epoch {best['epoch']})", file=sys.stderr)
            break
    return history, best, best_state, monitored


def _check_finite(best: dict[str, float | int], best_state: dict[str, torch.Tensor],
                  params: TrainClassifierParams) -> None:
    """A diverged run is never saved as a model."""
    finite = all(bool(torch.isfinite(v).all()) for v in best_state.values() if v.is_floating_point())
    if not finite or not math.isfinite(best["val_loss"]):
        raise Diverged(f"train-classifier: non-finite weights or validation loss ({best['val_loss']}) "
                       f"(train_classifier.learning_rate {params.learning_rate:g}): training diverged; "
                       f"no model written")


def run(params: TrainClassifierParams, *, images: Path, model: Path, log: Path, architecture: str, domain: str,
        seed: int, init: Path | None = None, device: torch.device | None = None) -> None:
    """Train on `images`' train split (from the weights in `init` when given, else from scratch), choose the epoch
    on its val split; write the weights and the history."""
    device = device or torch.device("cpu")
    images = Path(images)
    if architecture not in params.architectures:
        raise MedsrError(f"train-classifier: architecture {architecture!r} is not in train_classifier.architectures "
                         f"({', '.join(params.architectures)})")
    generator = seed_everything(seed)
    x_train, y_train, x_val, y_val = _load_splits(images)
    net = (build_classifier(architecture) if init is None
           else starting_point(Path(init), architecture, int(x_train.shape[-1]))).to(device)
    history, best, best_state, monitored = _fit(net, params, x_train, y_train, x_val, y_val, generator, device)
    stop = stopping(monitored, params.patience, params.epochs, params.monitor)
    if not stop.converged:
        print(f"train-classifier: not converged: the {params.monitor} was still improving at epoch "
              f"{stop.best_epoch} of {params.epochs} (train_classifier.epochs, patience {params.patience})",
              file=sys.stderr)
    _check_finite(best, best_state, params)
    metadata = {
        "architecture": architecture,
        "num_classes": len(CLASSES),
        "classes": list(CLASSES),
        "image_size": int(x_train.shape[-1]),
        "domain": domain,
        "seed": seed,
        "init": None if init is None else _init_record(Path(init)),
        "normalize": {"mean": NORMALIZE_MEAN, "std": NORMALIZE_STD},
        "epochs": params.epochs,  # the maximum
        **stop.as_dict(),  # epochs_run, best_epoch, stopped_early, converged
        "patience": params.patience,
        "min_epochs": params.min_epochs,
        "selection": params.monitor,
        "val_loss": best["val_loss"],
        "val_acc": best["val_acc"],
        "val_auroc": best["val_auroc"],
        "train_images": int(len(x_train)),
        "val_images": int(len(x_val)),
        "input_set": str(images),
        "input_manifest_sha256": sha256_file(images / MANIFEST),
        "params": to_jsonable(params),
    }
    write_csv(log, [{**row, **stop.as_dict()} for row in history], HISTORY_FIELDS)
    save_model(model, best_state, metadata)
