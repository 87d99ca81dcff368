"""`medsr classify-deployed`: the user's own classifier (`evaluate.deployed`) on the val and test images of every
image set (HR, bicubic, regression, SR, external SR), paired by id as `medsr classify` pairs them.

The file and its contract are checked before any image is read (medsr.classifier.deployed: format, pickle refusal,
the weights against the architecture, a probe batch of the contract's shape, the number of outputs, finite
outputs), then every image's size against the contract; a non-finite score on any image is an error too, and
nothing is written unless every score is finite. The rows have the predictions CSV's columns, with
architecture and classifier DEPLOYED and train seed DEPLOYED_SEED (medsr.classifier.predictions): one classifier, no
training seed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medsr.classifier.deployed import load
from medsr.stages.classify import load_set
from medsr.core.errors import MedsrError
from medsr.data.image_sets import ImageSet, paired_records
from medsr.core.io import write_csv
from medsr.core.parameters import CLASSES, EVAL_SPLITS, ClassifyParams, EvaluateParams
from medsr.classifier.predictions import COLUMNS, DEPLOYED, DEPLOYED_SEED


def run(params: ClassifyParams, evaluate: EvaluateParams, *, classifier: Path, sets: Sequence[ImageSet], out: Path,
        device: torch.device | None = None) -> None:
    """Scores of the deployed classifier `classifier` (evaluate.deployed's contract) on every set's val and test."""
    contract = evaluate.deployed
    if not contract.file:
        raise MedsrError("evaluate.deployed.file: empty: no deployed classifier to run (set it, see docs/deployed.md)")
    deployed = load(contract, Path(classifier), device)
    paired = paired_records(sets, EVAL_SPLITS)
    loaded = {s.name: load_set(s.path, [own for _, own in paired[s.name]], contract.image_size) for s in sets}
    rows = []
    for image_set in sets:
        pairs = paired[image_set.name]
        scores = deployed.score(loaded[image_set.name], params.batch_size, what=f"set {image_set.name}")
        for (record, _), p in zip(pairs, scores):
            rows.append({"architecture": DEPLOYED, "classifier": DEPLOYED, "train_seed": DEPLOYED_SEED,
                         "set": image_set.name, "split": record.split, "id": record.id, "label": record.label,
                         "label_index": CLASSES.index(record.label), "prob_unhealthy": f"{float(p):.8g}"})
        test = np.array([record.split == "test" for record, _ in pairs])
        labels = np.array([CLASSES.index(record.label) for record, _ in pairs])
        accuracy = float(np.mean((scores[test] > 0.5) == labels[test])) if test.any() else float("nan")
        print(f"classify-deployed: {deployed.path.name} ({deployed.format}) on {image_set.name}: {len(pairs)} "
              f"images, test accuracy at 0.5 {accuracy:.3f}", file=sys.stderr)
    write_csv(out, rows, COLUMNS)
