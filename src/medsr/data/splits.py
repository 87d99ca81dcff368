"""The val split: carved once from the source's train images at download, stratified by class and seeded.

Every choice the pipeline makes (the classifier's best epoch, operating thresholds, benchmark settings) is
made on `val`; `test` is read only by `classify` and `evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medsr.randomness import numpy_rng


def carve_val(labels: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """A boolean mask over train images: True for those moved to val.

    Per class, a seeded permutation puts round(fraction * n_class) images into val (at least one, and at least
    one left in train, when the class has two or more images).
    """
    labels = np.asarray(labels)
    rng = numpy_rng("val-split", seed)
    mask = np.zeros(len(labels), dtype=bool)
    for label in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(fraction * len(members)))
        n_val = min(max(n_val, 1), len(members) - 1) if len(members) > 1 else 0
        mask[members[:n_val]] = True
    return mask
