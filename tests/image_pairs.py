"""Small HR / LR image folders for the training-stage tests: HR images written with a manifest, then degraded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from medsr.stages import degrade
from medsr.core.io import Record, write_image, write_manifest
from medsr.core.parameters import CLASSES, DegradeParams


def write_pairs(root: Path, entries: Iterable[tuple[str, int, object, int]]) -> tuple[Path, Path]:
    """(split, index, image [1, H, W], label) in the order given -> root/hr (with its manifest), root/lr and
    root/bicubic; returns the hr and lr folders."""
    records = []
    for split, i, image, label in entries:
        image_id = f"{split}{i:02d}"
        relative = f"{split}/{CLASSES[label]}/{image_id}.png"
        write_image(root / "hr" / relative, image[0].numpy())
        records.append(Record(image_id, split, CLASSES[label], relative))
    write_manifest(root / "hr", records)
    degrade.run(DegradeParams(scale=2, blur_sigma=0.5, noise_std=0.01, seed=0), root / "hr", root / "lr",
                root / "bicubic")
    return root / "hr", root / "lr"
