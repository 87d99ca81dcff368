"""`medsr classify`: the HR-trained classifier on the test split of every image set, paired by id.

All sets take the same path: 8-bit PNG -> `io.read_image` -> [0, 1] -> `predict_proba`. An image
whose size differs from the classifier's training size is an error, never silently resized.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from medsr.classifier.model import load_classifier, predict_proba
from medsr.config import CLASSES, ClassifyParams
from medsr.errors import MedsrError
from medsr.io import MANIFEST, Record, image_path, read_image, read_manifest, write_csv

PREDICTION_FIELDS = ("set", "id", "label", "label_index", "pred_index", "prob_unhealthy")
REFERENCE_SET = "hr"
POSITIVE = CLASSES.index("unhealthy")


def paired_test_records(sets: Mapping[str, Path]) -> dict[str, list[Record]]:
    """Each set's test records in the reference set's id order (`hr`, else the first set given).

    Every set must hold exactly the reference's test ids with the same labels.
    """
    if not sets:
        raise MedsrError("--set: give at least one image set")
    reference = REFERENCE_SET if REFERENCE_SET in sets else next(iter(sets))
    by_set = {name: {r.id: r for r in read_manifest(folder, split="test")} for name, folder in sets.items()}
    ref = by_set[reference]
    order = sorted(ref)
    paired: dict[str, list[Record]] = {}
    for name, records in by_set.items():
        manifest = Path(sets[name]) / MANIFEST
        missing = [i for i in order if i not in records]
        if missing:
            raise MedsrError(f"{manifest}: set {name} lacks test image {missing[0]} of set {reference} "
                             f"({len(missing)} missing)")
        extra = sorted(set(records) - set(ref))
        if extra:
            raise MedsrError(f"{manifest}: set {name} has test image {extra[0]} that set {reference} lacks "
                             f"({len(extra)} extra)")
        mislabeled = next((i for i in order if records[i].label != ref[i].label), None)
        if mislabeled is not None:
            raise MedsrError(f"{manifest}: set {name} labels test image {mislabeled} "
                             f"{records[mislabeled].label!r}, set {reference} says {ref[mislabeled].label!r}")
        bad = next((i for i in order if records[i].label not in CLASSES), None)
        if bad is not None:
            raise MedsrError(f"{manifest}: test image {bad} has label {records[bad].label!r}, "
                             f"expected one of {', '.join(CLASSES)}")
        paired[name] = [records[i] for i in order]
    return paired


def load_set(folder: Path, records: list[Record], size: int | None) -> np.ndarray:
    """N x H x W float32 in [0, 1]; every image must be size x size (no silent resizing)."""
    images = []
    for record in records:
        path = image_path(folder, record)
        image = read_image(path)
        if size is not None and image.shape != (size, size):
            raise MedsrError(f"{path}: image is {image.shape[0]}x{image.shape[1]}, the classifier was trained "
                             f"on {size}x{size} (resizing is not done silently)")
        images.append(image)
    return np.stack(images).astype(np.float32)


def run(params: ClassifyParams, *, model: Path, sets: Mapping[str, Path], out: Path,
        device: torch.device | None = None) -> None:
    device = device or torch.device("cpu")
    classifier = load_classifier(model, device)
    size = getattr(classifier, "image_size", None)
    paired = paired_test_records(sets)
    rows = []
    for name, records in paired.items():
        images = load_set(Path(sets[name]), records, size)
        proba = predict_proba(classifier, torch.from_numpy(images).unsqueeze(1), params.batch_size).numpy()
        pred = proba.argmax(axis=1)
        for record, p, k in zip(records, proba[:, POSITIVE], pred):
            rows.append({"set": name, "id": record.id, "label": record.label,
                         "label_index": CLASSES.index(record.label), "pred_index": int(k),
                         "prob_unhealthy": f"{float(p):.8g}"})
        accuracy = float(np.mean(pred == np.array([CLASSES.index(r.label) for r in records])))
        print(f"classify: {name}: {len(records)} test images, accuracy {accuracy:.3f}", file=sys.stderr)
    write_csv(out, rows, PREDICTION_FIELDS)
