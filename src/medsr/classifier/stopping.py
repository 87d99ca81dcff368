"""How a classifier's training run ended: early stopping on a val criterion and whether it converged.

Plain functions of the per-epoch values of the monitored val criterion (`train_classifier.monitor`: the val loss,
lower is better, or the val AUROC, higher is better; no torch): `medsr train-classifier` stops and records with them,
the classifier benchmarks replay them on recorded histories, and `medsr evaluate`'s learning gate reads the
record (RUN_FIELDS) from the history CSVs with `training_record`. Early stopping: Prechelt 1998, "Early stopping -
but when?"; `min_epochs` (no stop before that many epochs, Keras' `start_from_epoch`) lets a run through a flat
start, where the val criterion has not moved yet because learning has not begun.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from medsr.core.errors import MedsrError
from medsr.core.io import read_csv
from medsr.core.parameters import MONITOR_HIGHER_IS_BETTER as HIGHER_IS_BETTER  # per train_classifier.monitor


@dataclasses.dataclass(frozen=True)
class Stopping:
    """How a training run ended, from its per-epoch val losses (`stopping`).

    epochs_run: epochs trained; best_epoch: the kept one (best monitored value, ties to the earlier);
    stopped_early: epochs_run < the maximum; converged: the kept epoch is followed by at least max(patience, 1)
    epochs without a better value, i.e. the val criterion had stopped improving before the budget ran out. With
    patience > 0 a run that stops early is converged by construction, and one that uses every epoch is not
    converged when its best epoch lies within the last `patience` epochs; with patience 0 (no early stopping) a run
    is not converged when its last epoch is its best.
    """

    epochs_run: int
    best_epoch: int
    stopped_early: bool
    converged: bool

    def as_dict(self) -> dict[str, int | bool]:
        return dataclasses.asdict(self)


def best_epoch(values: list[float], monitor: str = "val_loss") -> int:
    """1-based epoch of the best value of `monitor` (the lowest loss, the highest AUROC), ties to the earlier."""
    sign = -1.0 if HIGHER_IS_BETTER[monitor] else 1.0
    return min(range(len(values)), key=lambda i: (sign * values[i], i)) + 1


def should_stop(values: list[float], patience: int, min_epochs: int = 0, monitor: str = "val_loss") -> bool:
    """Early stopping after the last epoch of `values`: at least `min_epochs` epochs run, and `patience` > 0 epochs
    in a row without a better value of `monitor` than the best before them."""
    return (patience > 0 and len(values) >= min_epochs
            and len(values) - best_epoch(values, monitor) >= patience)


def stopping(values: list[float], patience: int, max_epochs: int, monitor: str = "val_loss") -> Stopping:
    """The `Stopping` of a run whose monitored val values are `values` (every epoch it trained)."""
    best = best_epoch(values, monitor)
    run = len(values)
    return Stopping(epochs_run=run, best_epoch=best, stopped_early=run < max_epochs,
                    converged=run - best >= max(patience, 1))


def trained_epochs(values: list[float], patience: int, min_epochs: int = 0, monitor: str = "val_loss") -> list[float]:
    """The monitored values a run with early stopping at (`patience`, `min_epochs`) trains, given those of the full
    run: its first epochs up to the stop (the training stream does not depend on the stop, so the prefix is exact)."""
    for k in range(1, len(values) + 1):
        if should_stop(values[:k], patience, min_epochs, monitor):
            return values[:k]
    return list(values)


RUN_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Stopping))  # history CSV run columns


def training_record(path: Path) -> dict[str, Any] | None:
    """The run-level fields of a classifier history CSV (None: written before they existed, or empty), and the
    kept epoch's val AUROC (`val_auroc`; None in a history written before that column existed)."""
    rows = read_csv(path)
    if not rows or any(rows[-1].get(f) in (None, "") for f in RUN_FIELDS):
        return None
    last = rows[-1]
    flags = {}
    for name in ("stopped_early", "converged"):
        if last[name] not in ("True", "False"):
            raise MedsrError(f"{path}: column {name} holds {last[name]!r}, expected True or False")
        flags[name] = last[name] == "True"
    try:
        record = {"epochs_run": int(last["epochs_run"]), "best_epoch": int(last["best_epoch"]), **flags}
    except ValueError as err:
        raise MedsrError(f"{path}: epochs_run / best_epoch are not integers ({err})") from err
    kept = next((r for r in rows if r.get("epoch") == str(record["best_epoch"])), None)
    if kept is None:
        raise MedsrError(f"{path}: no row for its best_epoch {record['best_epoch']}")
    try:
        record["val_auroc"] = float(kept["val_auroc"]) if kept.get("val_auroc") not in (None, "") else None
    except ValueError as err:
        raise MedsrError(f"{path}: val_auroc of epoch {record['best_epoch']} is not a number ({err})") from err
    return record
