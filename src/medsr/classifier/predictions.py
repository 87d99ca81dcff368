"""The predictions CSV of `medsr classify`: one row per (architecture, classifier, train_seed, set, split, image).

Columns: architecture,classifier,train_seed,set,split,id,label,label_index,prob_unhealthy. `architecture` is the
classifier family (train_classifier.architectures), `classifier` the domain its training images came from (hr,
bicubic, sr). The evaluation is run once per architecture: `read_predictions` returns one score table per family.
Scores are kept, not hard predictions: the stage decides the operating point (0.5 and a threshold chosen on val).
Every (architecture, classifier, seed, set) of one split lists the same images as the HR set, in one id order, with
the same labels; an external set may lack val rows. The rows of posterior samples (set `<set>~sample<k>`,
`<set>~swapped`, medsr.stages.classify) are read apart, by `posterior_rows` for the trust audit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsr.core.errors import MedsrError
from medsr.core.io import read_csv

COLUMNS = ("architecture", "classifier", "train_seed", "set", "split", "id", "label", "label_index", "prob_unhealthy")
SPLITS = ("val", "test")
REFERENCE_SET = "hr"
DEPLOYED, DEPLOYED_SEED = "deployed", 0  # classify-deployed's architecture and classifier fields, its train seed
SAMPLE_MARK = "~"  # classify's row names: <set>~sample<k>, <set>~swapped


@dataclass(frozen=True)
class Scores:
    """One (classifier, train seed, set, split): ids in sorted order, label index (1 = unhealthy), P(unhealthy)."""

    ids: tuple[str, ...]
    labels: np.ndarray
    scores: np.ndarray


Key = tuple[str, int, str, str]  # (classifier, train_seed, set, split)


def _parse(path: Path, rows: list[dict[str, str]]) -> dict[str, dict[Key, dict[str, tuple[int, float]]]]:
    by_architecture: dict[str, dict[Key, dict[str, tuple[int, float]]]] = {}
    for line, row in enumerate(rows, start=2):
        grouped = by_architecture.setdefault(row["architecture"], {})
        try:
            key = (row["classifier"], int(row["train_seed"]), row["set"], row["split"])
            value = (int(row["label_index"]), float(row["prob_unhealthy"]))
        except ValueError as err:
            raise MedsrError(f"{path}: line {line}: non-numeric train_seed / label_index / prob_unhealthy ({err})") \
                from err
        if key[3] not in SPLITS:
            raise MedsrError(f"{path}: line {line}: split {key[3]!r} is not one of {', '.join(SPLITS)}")
        if value[0] not in (0, 1) or not 0.0 <= value[1] <= 1.0:
            raise MedsrError(f"{path}: line {line}: label_index must be 0/1 and prob_unhealthy in [0, 1]")
        by_id = grouped.setdefault(key, {})
        if row["id"] in by_id:
            raise MedsrError(f"{path}: line {line}: image {row['id']} listed twice for {row['architecture']} "
                             f"{_name(key)}")
        by_id[row["id"]] = value
    return by_architecture


def _name(key: Key) -> str:
    return f"classifier {key[0]}, train seed {key[1]}, set {key[2]}, split {key[3]}"


def read_predictions(path: Path, *, architectures: Sequence[str], arms: Sequence[tuple[str, str]],
                     train_seeds: Sequence[int], optional_val: Sequence[str] = (),
                     splits: Sequence[str] = SPLITS) -> dict[str, dict[Key, Scores]]:
    """architecture -> (classifier, seed, set, split) for every arm (set, classifier) the evaluation needs
    (medsr.evaluation.comparisons.arms), train seed and split, checked to pair by id with the HR set of the first
    architecture (every family sees the same images).

    `optional_val`: sets whose val rows may be absent (external SR); every other combination is required.
    `splits`: the splits kept; rows of the others are dropped before anything is parsed (a benchmark keeps val only).
    """
    path = Path(path)
    rows = read_csv(path)
    if rows and "split" in rows[0]:
        rows = [r for r in rows if r["split"] in splits or r["split"] not in SPLITS]  # unknown splits: refused below
    if not rows:
        raise MedsrError(f"{path}: no predictions")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise MedsrError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})")
    by_architecture = _parse(path, rows)
    if sorted(by_architecture) != sorted(architectures):
        raise MedsrError(f"{path}: architectures {sorted(by_architecture)} differ from train_classifier.architectures "
                         f"{sorted(architectures)}")
    out: dict[str, dict[Key, Scores]] = {a: {} for a in architectures}
    for architecture in architectures:
        grouped = by_architecture[architecture]
        seeds_found = sorted({k[1] for k in grouped})
        if seeds_found != sorted(train_seeds):
            raise MedsrError(f"{path}: {architecture}: train seeds {seeds_found} differ from evaluate.train_seeds "
                             f"{sorted(train_seeds)}")
    for split in splits:
        reference_key = ("hr", train_seeds[0], REFERENCE_SET, split)
        if reference_key not in by_architecture[architectures[0]]:
            raise MedsrError(f"{path}: no rows for {architectures[0]} {_name(reference_key)}")
        reference = by_architecture[architectures[0]][reference_key]
        order = tuple(sorted(reference))
        for architecture in architectures:
            grouped = by_architecture[architecture]
            for name, classifier in arms:
                for seed in train_seeds:
                    key = (classifier, seed, name, split)
                    if key not in grouped:
                        if split == "val" and name in optional_val:
                            continue
                        raise MedsrError(f"{path}: no rows for {architecture} {_name(key)}")
                    out[architecture][key] = _paired(path, key, grouped[key], reference, order, architecture)
    return out


def _paired(path: Path, key: Key, by_id: dict[str, tuple[int, float]], reference: dict[str, tuple[int, float]],
            order: tuple[str, ...], architecture: str) -> Scores:
    absent = next((i for i in order if i not in by_id), None)
    extra = next((i for i in sorted(by_id) if i not in reference), None)
    if absent or extra:
        what = f"lacks image {absent}" if absent else f"has extra image {extra}"
        raise MedsrError(f"{path}: {architecture} {_name(key)} {what} compared with set {REFERENCE_SET}")
    labels = np.array([by_id[i][0] for i in order], dtype=np.int64)
    bad = next((i for i in order if by_id[i][0] != reference[i][0]), None)
    if bad is not None:
        raise MedsrError(f"{path}: {architecture} {_name(key)} labels image {bad} differently from set {REFERENCE_SET}")
    return Scores(order, labels, np.array([by_id[i][1] for i in order], dtype=np.float64))


def posterior_rows(path: Path, architecture: str) -> dict[tuple[str, int, str, str], dict[str, float]]:
    """{(classifier, seed, row set, split): {id: P(unhealthy)}} for the posterior rows of the predictions CSV of
    one classifier family (`architecture`; the audit is of the first, resnet18)."""
    out: dict[tuple[str, int, str, str], dict[str, float]] = {}
    for row in read_csv(path):
        if SAMPLE_MARK in row["set"] and row["architecture"] == architecture:
            out.setdefault((row["classifier"], int(row["train_seed"]), row["set"], row["split"]), {})[row["id"]] = \
                float(row["prob_unhealthy"])
    return out


def read_deployed(path: Path, sets: Sequence) -> dict[tuple[str, str], Scores]:
    """(set, split) -> Scores of classify-deployed's CSV (architecture and classifier DEPLOYED, train seed
    DEPLOYED_SEED), each of `sets` (ImageSets, hr first) paired by id with the first, as `read_predictions` pairs
    the trained classifiers' rows; an external set may lack val rows."""
    path = Path(path)
    rows = read_csv(path)
    if not rows or any(c not in rows[0] for c in COLUMNS):
        raise MedsrError(f"{path}: not classify-deployed's predictions (columns {','.join(COLUMNS)})")
    grouped = _parse(path, rows).get(DEPLOYED)
    if grouped is None:
        raise MedsrError(f"{path}: no rows of architecture {DEPLOYED}")
    out = {}
    for split in SPLITS:
        reference = grouped.get((DEPLOYED, DEPLOYED_SEED, sets[0].name, split))
        if reference is None:
            raise MedsrError(f"{path}: no {split} rows for set {sets[0].name}")
        order = tuple(sorted(reference))
        for s in sets:
            key = (DEPLOYED, DEPLOYED_SEED, s.name, split)
            if key not in grouped:
                if split == "val" and s.kind == "external":
                    continue
                raise MedsrError(f"{path}: no rows for {DEPLOYED} {_name(key)}")
            out[(s.name, split)] = _paired(path, key, grouped[key], reference, order, DEPLOYED)
    return out
