"""`medsr classify`: the classifiers on the val and test images of the image sets, paired by id.

Each classifier (one per architecture x trained domain x train seed) sees the sets that `evaluate`'s questions put
in front of it (`ImageSet.classifiers`): every set through the HR classifier (a deployed classifier), and a set
through the classifier trained on its own kind (the matched-domain baseline: bicubic through the classifier
fine-tuned on bicubic). All sets take the same path: 8-bit PNG ->
`io.read_record_image` -> [0, 1] -> `predict_proba`. An image whose size differs from the classifier's training size
is an error, never silently resized.

The stage runs once per train seed (`seed`: that seed's classifiers only), so the seeds' jobs share the cores at
the end of a run instead of one job holding one core; `medsr merge-predictions` joins their CSVs in the order one
run over every classifier writes them (architecture, classifier domain, train seed).

SR sets with posterior samples (medsr.diffusion.posterior) add rows for set `<set>~sample<k>` (sample k of each chosen
image) and `<set>~swapped` (the class-swap audit's draw): only the chosen images, read by evaluate's trust audit and
ignored by the verdicts (`posterior_set_name`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medsr.diffusion import posterior
from medsr.core.model_files import read_metadata
from medsr.classifier.model import LEGACY_ARCHITECTURE, load_classifier, predict_proba
from medsr.core.parameters import CLASSES, EVAL_SPLITS, ClassifyParams
from medsr.classifier.predictions import COLUMNS
from medsr.core.errors import MedsrError
from medsr.data.image_sets import ImageSet, paired_records
from medsr.core.io import Record, image_path, read_record_image, write_csv

PREDICTION_FIELDS = COLUMNS  # the predictions CSV's columns, declared by its reader
POSITIVE = CLASSES.index("unhealthy")


def posterior_set_name(set_name: str, sample: int | None) -> str:
    """Rows of sample k (or of the swapped draw, sample None) of an SR set's posterior images."""
    return f"{set_name}~swapped" if sample is None else f"{set_name}~sample{sample}"


def posterior_images(image_set: ImageSet, pairs, size: int | None) -> list[tuple[str, Record, np.ndarray]]:
    """(row set name, HR record, image) for every posterior sample and swapped draw of an SR set."""
    entries = posterior.entries(image_set.path) if image_set.kind == "sr" else {}
    by_id = {ref.id: ref for ref, _ in pairs}
    out = []
    for image_id, entry in sorted(entries.items()):
        if image_id not in by_id:
            raise MedsrError(f"{image_set.path / 'metadata.json'}: posterior image {image_id} is not in the hr set")
        samples = posterior.read_samples(image_set.path, image_id, entry)
        swapped = posterior.read_swapped(image_set.path, image_id, entry)
        if size is not None and samples.shape[1:] != (size, size):
            raise MedsrError(f"{image_set.path / posterior.SAMPLES_DIR / image_id}.npy: samples are "
                             f"{samples.shape[1]}x{samples.shape[2]}, the classifier was trained on {size}x{size}")
        out += [(posterior_set_name(image_set.name, k), by_id[image_id], sample) for k, sample in enumerate(samples)]
        if swapped is not None:
            out.append((posterior_set_name(image_set.name, None), by_id[image_id], swapped))
    return out


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


def classifier_identity(model: Path) -> tuple[str, str, int]:
    """(architecture, domain, train seed) recorded by train-classifier in the model file."""
    metadata = read_metadata(model)
    if "domain" not in metadata or "seed" not in metadata:
        raise MedsrError(f"{model}: classifier without domain/seed metadata: retrain it with this medsr")
    architecture = str(metadata.get("architecture"))
    architecture = "resnet18" if architecture == LEGACY_ARCHITECTURE else architecture
    return architecture, str(metadata["domain"]), int(metadata["seed"])


def run(params: ClassifyParams, *, models: Sequence[Path], sets: Sequence[ImageSet], out: Path,
        seed: int | None = None, device: torch.device | None = None) -> None:
    """Predictions of `models` (all of train seed `seed` when given) on the val and test images of `sets`."""
    device = device or torch.device("cpu")
    identities = {Path(m): classifier_identity(Path(m)) for m in models}
    seen: dict[tuple[str, str, int], Path] = {}
    for model, identity in identities.items():
        if seed is not None and identity[2] != seed:
            raise MedsrError(f"{model}: a classifier of train seed {identity[2]}, this job classifies seed {seed}")
        if identity in seen:
            raise MedsrError(f"{model}: same architecture, domain and seed ({', '.join(map(str, identity))}) "
                             f"as {seen[identity]}")
        seen[identity] = model
    paired = paired_records(sets, EVAL_SPLITS)  # {set name: [(record of hr, image path)]}
    rows = []
    for model, (architecture, domain, seed) in identities.items():
        classifier = load_classifier(model, device)
        size = getattr(classifier, "image_size", None)
        for image_set in (s for s in sets if domain in s.classifiers):
            pairs = paired[image_set.name]
            images = load_set(image_set.path, [own for _, own in pairs], size)
            proba = predict_proba(classifier, torch.from_numpy(images).unsqueeze(1), params.batch_size).numpy()
            labels = np.array([CLASSES.index(record.label) for record, _ in pairs])
            for (record, _), p in zip(pairs, proba[:, POSITIVE]):
                rows.append({"architecture": architecture, "classifier": domain, "train_seed": seed,
                             "set": image_set.name, "split": record.split, "id": record.id, "label": record.label,
                             "label_index": CLASSES.index(record.label), "prob_unhealthy": f"{float(p):.8g}"})
            test = np.array([record.split == "test" for record, _ in pairs])
            accuracy = float(np.mean((proba[test].argmax(1)) == labels[test])) if test.any() else float("nan")
            print(f"classify: {architecture} {domain} classifier seed {seed} on {image_set.name}: {len(pairs)} images, "
                  f"test accuracy at 0.5 {accuracy:.3f}", file=sys.stderr)
            extra = posterior_images(image_set, pairs, size)
            if extra:
                stacked = torch.from_numpy(np.stack([image for _, _, image in extra]).astype(np.float32)).unsqueeze(1)
                extra_proba = predict_proba(classifier, stacked, params.batch_size).numpy()[:, POSITIVE]
                for (name, record, _), p in zip(extra, extra_proba):
                    rows.append({"architecture": architecture, "classifier": domain, "train_seed": seed,
                                 "set": name, "split": record.split, "id": record.id, "label": record.label,
                                 "label_index": CLASSES.index(record.label), "prob_unhealthy": f"{float(p):.8g}"})
    write_csv(out, rows, PREDICTION_FIELDS)
