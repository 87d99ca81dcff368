"""The val (and, for volume sources, test) split: carved once at download, by subject, stratified by class, seeded.

Every choice the pipeline makes (the classifier's best epoch, operating thresholds, benchmark settings) is
made on `val`; `test` is read only by `classify` and `evaluate`.

The unit of a carving is the subject: all slices of one patient go to the same split, else a model is tested on
slices of patients it was trained on (the slice-level leakage behind the "99% accuracy" of slice datasets). An
image without a subject is its own subject, which gives exactly the image-level carving of older manifests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medsr.core.errors import MedsrError
from medsr.core.randomness import numpy_rng


def carve_val(labels: Sequence[str], fraction: float, seed: int,
              subjects: Sequence[str] | None = None) -> np.ndarray:
    """A boolean mask over train images: True for those moved to val (stream "val-split")."""
    return carve(labels, fraction, seed, subjects, stream="val-split")


def carve(labels: Sequence[str], fraction: float, seed: int, subjects: Sequence[str] | None = None,
          stream: str = "val-split", what: str = "image") -> np.ndarray:
    """A boolean mask over images: True for the images of the subjects carved off.

    Subjects (in order of first appearance; an empty or absent subject is the image itself) are grouped by
    class; per class a seeded permutation takes round(fraction * n_class) subjects (at least one, and at least
    one left, when the class has two or more subjects). A subject whose images carry two labels is an error.
    """
    labels = np.asarray(labels)
    units = [s if s else f"\0{i}" for i, s in enumerate(subjects)] if subjects is not None else list(range(len(labels)))
    order: dict = {}
    unit_of = np.array([order.setdefault(u, len(order)) for u in units], dtype=np.int64)
    unit_label = [""] * len(order)
    for i, unit in enumerate(unit_of):
        if unit_label[unit] and unit_label[unit] != labels[i]:
            raise MedsrError(f"subject {units[i]!r}: its {what}s carry two labels ({unit_label[unit]}, {labels[i]})")
        unit_label[unit] = str(labels[i])
    unit_label = np.asarray(unit_label)
    rng = numpy_rng(stream, seed)
    chosen = np.zeros(len(order), dtype=bool)
    for label in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(unit_label == label))
        n_out = int(round(fraction * len(members)))
        n_out = min(max(n_out, 1), len(members) - 1) if len(members) > 1 else 0
        chosen[members[:n_out]] = True
    return chosen[unit_of] if len(labels) else np.zeros(0, dtype=bool)
