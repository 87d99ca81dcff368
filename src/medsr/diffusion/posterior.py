"""Posterior samples of an SR set: N stochastic SR draws per chosen image, and the class-swap audit's draws.

Layout inside an SR set folder (generate writes it per shard, gather merges it):
  posterior/<id>.npy        N x H x W float32: the N samples, each quantized as an 8-bit PNG would be (so the
                            classifier sees what it sees for the main image)
  posterior/<id>.mean.npy   their per-pixel mean;  posterior/<id>.std.npy  their per-pixel std (ddof = 0)
  swapped/<id>.npy          H x W: one draw guided towards the opposite of the true label (null runs only);
                            it shares the noise of sample 0, so swapped - sample 0 is what the label paints
metadata.json "posterior": {id: {"samples": sha256, "swapped": sha256 | null}}; every read checks the hash.
The mean and std files are conveniences: evaluate recomputes both from the hash-checked samples
(`load_posterior`, for its trust audit).

Which images get samples: `posterior_images` per split (0: all), half per class (the rest from the other class
when one is short), ranked by derived_seed("posterior", id): independent of shards and batch sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsr.core import io
from medsr.core.parameters import CLASSES
from medsr.core.errors import MedsrError
from medsr.data.image_sets import ImageSet
from medsr.core.randomness import derived_seed

SAMPLES_DIR = "posterior"
SWAPPED_DIR = "swapped"
KEY = "posterior"  # metadata.json key


def chosen_ids(records: Sequence[io.Record], per_split: int) -> set[str]:
    """The ids given posterior samples: per split, ceil(k/2) of one class and the rest of the other."""
    if per_split == 0:
        return {r.id for r in records}
    chosen: set[str] = set()
    for split in sorted({r.split for r in records}):
        by_class = {c: sorted((r.id for r in records if r.split == split and r.label == c),
                              key=lambda i: derived_seed("posterior", i)) for c in CLASSES}
        want = {CLASSES[1]: (per_split + 1) // 2, CLASSES[0]: per_split // 2}
        for c in CLASSES:  # a class with too few images leaves its share to the other
            spare = max(0, want[c] - len(by_class[c]))
            other = CLASSES[1 - CLASSES.index(c)]
            want[other] += spare
        for c in CLASSES:
            chosen.update(by_class[c][:want[c]])
    return chosen


def swapped_label(label: str) -> int:
    """The class index opposite to the true label (the class-swap audit's injected class)."""
    return 1 - CLASSES.index(label)


def write(root: Path, image_id: str, samples: np.ndarray, swapped: np.ndarray | None) -> dict[str, str | None]:
    """Write one image's samples (N x H x W, quantized), mean, std and swapped draw; return their hashes."""
    folder = Path(root) / SAMPLES_DIR
    io.write_array(folder / f"{image_id}.npy", samples)
    io.write_array(folder / f"{image_id}.mean.npy", samples.mean(axis=0))
    io.write_array(folder / f"{image_id}.std.npy", samples.std(axis=0))
    entry: dict[str, str | None] = {"samples": io.sha256_file(folder / f"{image_id}.npy"), "swapped": None}
    if swapped is not None:
        io.write_array(Path(root) / SWAPPED_DIR / f"{image_id}.npy", swapped)
        entry["swapped"] = io.sha256_file(Path(root) / SWAPPED_DIR / f"{image_id}.npy")
    return entry


def files(image_id: str) -> list[str]:
    """Paths (relative to the set) of one image's posterior files, for copying."""
    return [f"{SAMPLES_DIR}/{image_id}{s}" for s in (".npy", ".mean.npy", ".std.npy")]


def entries(folder: Path) -> dict[str, dict[str, str | None]]:
    """{id: hashes} recorded in an SR set's metadata.json ({} when it has no posterior samples)."""
    meta_path = Path(folder) / "metadata.json"
    if not meta_path.is_file():
        return {}
    return dict(io.read_json(meta_path).get(KEY) or {})


def _checked(path: Path, sha256: str | None) -> np.ndarray:
    if sha256 is None:
        raise MedsrError(f"{path}: no hash recorded in metadata.json")
    if not path.is_file():
        raise MedsrError(f"{path}: posterior file listed in metadata.json is missing")
    if io.sha256_file(path) != sha256:
        raise MedsrError(f"{path}: content differs from the sha256 in metadata.json (changed after generate)")
    return np.load(path).astype(np.float32)


def read_samples(folder: Path, image_id: str, entry: Mapping[str, str | None]) -> np.ndarray:
    """N x H x W samples of one image, checked against metadata.json."""
    samples = _checked(Path(folder) / SAMPLES_DIR / f"{image_id}.npy", entry.get("samples"))
    if samples.ndim != 3:
        raise MedsrError(f"{Path(folder) / SAMPLES_DIR / image_id}.npy: expected N x H x W samples")
    return samples


def read_swapped(folder: Path, image_id: str, entry: Mapping[str, str | None]) -> np.ndarray | None:
    if entry.get("swapped") is None:
        return None
    return _checked(Path(folder) / SWAPPED_DIR / f"{image_id}.npy", entry["swapped"])


def load_posterior(image_set: ImageSet, hr: ImageSet) -> dict[str, Any] | None:
    """HR, samples and swapped draws of an SR set's posterior images, by split (None if it has none)."""
    found = entries(image_set.path)
    if not found:
        return None
    records = {r.id: r for r in io.read_manifest(hr.path, split=("val", "test"))}
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        ids = sorted(i for i in found if i in records and records[i].split == split)
        missing = next((i for i in found if i not in records), None)
        if missing is not None:
            raise MedsrError(f"{image_set.path / 'metadata.json'}: posterior image {missing} is not in the hr set")
        samples = [read_samples(image_set.path, i, found[i]) for i in ids]
        if len({s.shape for s in samples}) > 1:
            raise MedsrError(f"{image_set.path / SAMPLES_DIR}: posterior sample counts or sizes differ")
        swapped = [read_swapped(image_set.path, i, found[i]) for i in ids]
        out[split] = {"ids": ids, "labels": np.array([int(records[i].label == "unhealthy") for i in ids]),
                      "hr": np.stack([io.read_record_image(hr.path, records[i]) for i in ids]) if ids else None,
                      "samples": np.stack(samples) if ids else None,
                      "swapped": np.stack(swapped) if ids and all(s is not None for s in swapped) else None}
    return out
