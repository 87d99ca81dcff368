"""`medsr classify`: every classifier on the val and test images of every image set, paired by id.

Every classifier (one per trained domain x train seed) sees every image set, so `evaluate` can pick the pairs
its questions need: an image kind through the HR classifier (a deployed classifier) and through the
classifier trained on that kind (the matched-domain baseline). All sets take the same path: 8-bit PNG ->
`io.read_record_image` -> [0, 1] -> `predict_proba`. An image whose size differs from the classifier's training size
is an error, never silently resized.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medsr.checkpoint import read_metadata
from medsr.classifier.model import load_classifier, predict_proba
from medsr.config import CLASSES, EVAL_SPLITS, ClassifyParams
from medsr.errors import MedsrError
from medsr.image_sets import ImageSet, paired_records
from medsr.io import Record, image_path, read_record_image, write_csv

PREDICTION_FIELDS = ("classifier", "train_seed", "set", "split", "id", "label", "label_index", "prob_unhealthy")
POSITIVE = CLASSES.index("unhealthy")


def load_set(folder: Path, records: Sequence[Record], size: int | None) -> np.ndarray:
    """N x H x W float32 in [0, 1], each file checked against its manifest hash; every image must be size x size
    (no silent resizing)."""
    images = []
    for record in records:
        path = image_path(folder, record)
        image = read_record_image(folder, record)
        if size is not None and image.shape != (size, size):
            raise MedsrError(f"{path}: image is {image.shape[0]}x{image.shape[1]}, the classifier was trained "
                             f"on {size}x{size} (resizing is not done silently)")
        images.append(image)
    return np.stack(images).astype(np.float32)


def classifier_identity(model: Path) -> tuple[str, int]:
    """(domain, train seed) recorded by train-classifier in the model file."""
    metadata = read_metadata(model)
    if "domain" not in metadata or "seed" not in metadata:
        raise MedsrError(f"{model}: classifier without domain/seed metadata: retrain it with this medsr")
    return str(metadata["domain"]), int(metadata["seed"])


def run(params: ClassifyParams, *, models: Sequence[Path], sets: Sequence[ImageSet], out: Path,
        device: torch.device | None = None) -> None:
    device = device or torch.device("cpu")
    identities = {Path(m): classifier_identity(Path(m)) for m in models}
    seen: dict[tuple[str, int], Path] = {}
    for model, identity in identities.items():
        if identity in seen:
            raise MedsrError(f"{model}: same domain and seed ({identity[0]}, {identity[1]}) as {seen[identity]}")
        seen[identity] = model
    paired = paired_records(sets, EVAL_SPLITS)  # {set name: [(record of hr, image path)]}
    rows = []
    for model, (domain, seed) in identities.items():
        classifier = load_classifier(model, device)
        size = getattr(classifier, "image_size", None)
        for image_set in sets:
            pairs = paired[image_set.name]
            images = load_set(image_set.path, [own for _, own in pairs], size)
            proba = predict_proba(classifier, torch.from_numpy(images).unsqueeze(1), params.batch_size).numpy()
            labels = np.array([CLASSES.index(record.label) for record, _ in pairs])
            for (record, _), p in zip(pairs, proba[:, POSITIVE]):
                rows.append({"classifier": domain, "train_seed": seed, "set": image_set.name, "split": record.split,
                             "id": record.id, "label": record.label, "label_index": CLASSES.index(record.label),
                             "prob_unhealthy": f"{float(p):.8g}"})
            test = np.array([record.split == "test" for record, _ in pairs])
            accuracy = float(np.mean((proba[test].argmax(1)) == labels[test])) if test.any() else float("nan")
            print(f"classify: {domain} classifier seed {seed} on {image_set.name}: {len(pairs)} images, "
                  f"test accuracy at 0.5 {accuracy:.3f}", file=sys.stderr)
    write_csv(out, rows, PREDICTION_FIELDS)
