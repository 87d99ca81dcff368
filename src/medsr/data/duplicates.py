"""Images duplicated across train / val / test: exact (same sha256) and near (perceptual hash) duplicates.

A test image that also sits in train (the same scan exported twice, a slice resaved with another compression)
measures memory, not generalisation. The check runs on the fitted images, as written, for every source:

* exact: the PNG files' sha256 (the manifest's) are equal, i.e. the pixels are equal;
* near: the 64-bit DCT perceptual hash (pHash; Zauner 2010, the `imagehash.phash` construction) of the two images
  differs in at most data.near_duplicate_bits bits (the image resized to 32 x 32, its 2-D DCT-II, the 8 x 8
  lowest frequencies compared with their median) AND the Pearson correlation of their pixels is at least
  data.near_duplicate_correlation. The hash alone cannot tell brain slices apart: all are an oval head on black,
  so their low frequencies agree. The hash finds the candidates (robust to re-encoding and intensity changes),
  the correlation confirms them (what both thresholds were set from: docs/pipeline.md "Where the defaults come
  from").

Pairs within one split are kept (counted). Across splits, data.duplicates `fail` stops the download with an error
naming both files; `drop` removes one image of each pair: the one in train rather than val, in val rather than
test (the evaluation set keeps its size), and lists it in duplicates.csv.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dctn

from medsr.core import io
from medsr.core.errors import MedsrError

HASH_SIDE, LOW = 32, 8  # pHash: resize side and the kept low-frequency block
KEEP_ORDER = ("test", "val", "train")  # of a cross-split pair, the image in the earlier split is kept
FIELDS = ("kind", "distance", "kept", "kept_split", "dropped", "dropped_split", "action")


def phash(image: np.ndarray) -> int:
    """64-bit DCT pHash of a [0, 1] grayscale image (bit i: coefficient i of the 8 x 8 block above the median)."""
    small = Image.fromarray(io.to_uint8(image), mode="L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    coefficients = dctn(np.asarray(small, dtype=np.float64), type=2)[:LOW, :LOW]  # DCT-II along both axes
    bits = (coefficients > np.median(coefficients)).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two arrays of 64-bit hashes: [len(a), len(b)]."""
    return np.bitwise_count(np.bitwise_xor(a[:, None], b[None, :])).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Pair:
    kind: str  # exact | near
    distance: int  # Hamming distance of the pHashes (0 for exact)
    first: io.Record
    second: io.Record


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images' pixels (1 when both are constant and equal, 0 when one is constant)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / norm) if norm > 0 else float(np.allclose(a, b))


def find_pairs(records: Sequence[io.Record], images: Sequence[np.ndarray], near_bits: int,
               min_correlation: float) -> list[Pair]:
    """Every pair of images that are exact (same sha256) or near (pHash distance <= near_bits and pixel correlation
    >= min_correlation) duplicates, in record order; near_bits -1 finds exact duplicates only."""
    pairs = []
    values = np.array([phash(image) for image in images], dtype=np.uint64)
    distances = hamming(values, values)
    exact_of: dict[str, int] = {}
    for j, record in enumerate(records):
        i = exact_of.setdefault(record.sha256, j)
        if i != j:
            pairs.append(Pair("exact", 0, records[i], record))
    if near_bits >= 0:
        rows, cols = np.nonzero(np.triu(distances <= near_bits, k=1))
        for i, j in zip(rows.tolist(), cols.tolist()):
            if records[i].sha256 != records[j].sha256 and correlation(images[i], images[j]) >= min_correlation:
                pairs.append(Pair("near", int(distances[i, j]), records[i], records[j]))
    return pairs


def _name(record: io.Record) -> str:
    return f"{record.path} [{record.source}]" if record.source else record.path


def resolve(root: Path, records: Sequence[io.Record], policy: str, near_bits: int,
            min_correlation: float) -> tuple[list[io.Record], list[dict], dict]:
    """Check the written set at `root`: (records kept, duplicates.csv rows, counts for download.json).

    With `drop`, the dropped images' files are deleted from `root` (a folder still being written)."""
    images = [io.read_record_image(root, r) for r in records]
    pairs = find_pairs(records, images, near_bits, min_correlation)
    across = [p for p in pairs if p.first.split != p.second.split]
    if across and policy == "fail":
        first = across[0]
        raise MedsrError(f"{_name(first.first)} and {_name(first.second)}: {first.kind} duplicate "
                         f"images across splits ({len(across)} pair(s); pHash distance {first.distance}); remove them "
                         f"from the source or set data.duplicates: drop")
    dropped: set[str] = set()
    rows = []
    for pair in pairs:
        kept, other = sorted((pair.first, pair.second), key=lambda r: KEEP_ORDER.index(r.split))
        action = "kept both (same split)"
        if pair.first.split != pair.second.split:
            if kept.id in dropped or other.id in dropped:
                action = "already dropped"
            else:
                dropped.add(other.id)
                action = "dropped"
        rows.append({"kind": pair.kind, "distance": pair.distance, "kept": _name(kept),
                     "kept_split": kept.split, "dropped": _name(other), "dropped_split": other.split,
                     "action": action})
    for record in records:
        if record.id in dropped:
            io.image_path(root, record).unlink()
    counts = {"policy": policy, "near_duplicate_bits": near_bits, "near_duplicate_correlation": min_correlation,
              "exact_pairs_across_splits": sum(p.kind == "exact" for p in across),
              "near_pairs_across_splits": sum(p.kind == "near" for p in across),
              "pairs_within_a_split": len(pairs) - len(across), "dropped": len(dropped)}
    return [r for r in records if r.id not in dropped], rows, counts
