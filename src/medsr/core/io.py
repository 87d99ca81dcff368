"""Files: atomic writes, image read/write on one intensity path, manifests, checkpoints.

Every output goes to a temporary name and is renamed into place only when complete, so an
interrupted stage never leaves a file or folder that looks finished.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
from io import BytesIO
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from medsr.core.errors import MedsrError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ("id", "split", "label", "path", "sha256", "source", "subject")  # subject: "" = its own subject


# --- atomic outputs -------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; it replaces `final` as a whole when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / "previous")
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise MedsrError(f"{path}: cannot read ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise MedsrError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})


def read_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError as err:
        raise MedsrError(f"{path}: cannot read ({err.strerror})") from err


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --- images: one intensity path for every image set -----------------------------------------
# Images live on disk as 8-bit grayscale PNG and in memory as float32 in [0, 1]. HR, LR, bicubic,
# regression and SR images all go through `read_image` / `write_image`; nothing is min-max
# normalised per image.

def read_image(path: str | Path) -> np.ndarray:
    """Read one image as a float32 HxW array in [0, 1]; a clear error names an unreadable file.

    Not checked against any manifest: read an image of a set through `read_record_image`."""
    path = Path(path)
    return decode_image(_read_bytes(path), path)


def read_record_image(root: str | Path, record: Record) -> np.ndarray:
    """The image of `record` in the set at `root`, as `read_image`; when the record holds a sha256, the bytes read
    (once: the image is decoded from them) must hash to it, else the file changed after its manifest was written."""
    path = image_path(root, record)
    data = _read_bytes(path)
    if record.sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != record.sha256.lower():
            raise MedsrError(f"{path}: content changed since the manifest was written (sha256 {actual} expected "
                             f"{record.sha256}); re-run the stage that wrote {root}")
    return decode_image(data, path)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise MedsrError(f"{path}: image file not found") from err
    except OSError as err:
        raise MedsrError(f"{path}: unreadable image ({type(err).__name__}: {err.strerror or err})") from err


def decode_image(data: bytes, path: str | Path) -> np.ndarray:
    """Decode image file bytes (read from `path`, named in errors) as `read_image` does."""
    try:
        with Image.open(BytesIO(data)) as img:
            img.load()
            if img.mode.startswith("I;16"):
                array = np.asarray(img, dtype=np.float32) / 65535.0
            elif img.mode == "I":  # 32-bit integer: 16-bit PNGs open so in some Pillow versions
                array = np.asarray(img, dtype=np.float32)
                array = array / (65535.0 if array.max() > 255 else 255.0)
            else:
                array = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as err:
        raise MedsrError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    if array.ndim != 2 or min(array.shape) < 1:
        raise MedsrError(f"{path}: unreadable image (unexpected shape {array.shape})")
    return np.clip(array, 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a [0, 1] float image as 8-bit grayscale PNG (values outside [0, 1] are clamped)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image), mode="L").save(path, format="PNG", optimize=False)


def write_array(path: str | Path, array: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(array, dtype=np.float32))


# --- manifests: which image is which, paired by id -------------------------------------------

@dataclass(frozen=True)
class Record:
    """One image of a set: `path` is relative to the set's root folder."""

    id: str
    split: str
    label: str
    path: str
    sha256: str = ""
    source: str = ""
    subject: str = ""  # the patient / volume the image was cut from; "" (old manifests too): the image is its own

    @property
    def unit(self) -> str:
        """The sampling unit of splits and bootstrap: the subject, or the image itself when it has none."""
        return self.subject or f"image:{self.id}"


def write_manifest(root: str | Path, records: Sequence[Record]) -> None:
    write_csv(Path(root) / MANIFEST, [r.__dict__ for r in records], MANIFEST_FIELDS)


def read_manifest(root: str | Path, split: str | Sequence[str] | None = None,
                  allow_empty: bool = False) -> list[Record]:
    """Records of an image set (optionally one split or several), checked: the folder, manifest and files exist.

    `allow_empty`: a header-only manifest is valid (a generation shard of more shards than images)."""
    root = Path(root)
    if not root.is_dir():
        raise MedsrError(f"{root}: data folder is missing (run the stage that writes it first)")
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise MedsrError(f"{manifest}: manifest is missing: {root} is not a medsr image set")
    rows = read_csv(manifest)
    missing = set(MANIFEST_FIELDS[:4]) - set(rows[0] if rows else MANIFEST_FIELDS)
    if missing:
        raise MedsrError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}")
    records = [Record(**{k: row.get(k, "") for k in MANIFEST_FIELDS}) for row in rows]
    if split is not None:
        wanted = (split,) if isinstance(split, str) else tuple(split)
        records = [r for r in records if r.split in wanted]
        split = "/".join(wanted)
    if not records and not allow_empty:
        what = f"no {split} images" if split else "no images"
        raise MedsrError(f"{manifest}: {what}: the data folder is empty")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise MedsrError(f"{manifest}: duplicate image ids")
    return records


def image_path(root: str | Path, record: Record) -> Path:
    return Path(root) / record.path


def load_images(root: str | Path, records: Sequence[Record]) -> np.ndarray:
    """Stack the images of `records` into an N x H x W float32 array (all must share one size); each is checked
    against its record's sha256 (`read_record_image`)."""
    images = [read_record_image(root, r) for r in records]
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        first = records[0]
        odd, odd_image = next((r, img) for r, img in zip(records, images) if img.shape != images[0].shape)
        raise MedsrError(f"{image_path(root, odd)}: size {odd_image.shape} differs from "
                         f"{image_path(root, first)} {images[0].shape}")
    return np.stack(images).astype(np.float32)


def relative_image_path(record_split: str, label: str, image_id: str, suffix: str = ".png") -> str:
    return f"{record_split}/{label}/{image_id}{suffix}"


def write_generated(
    root: str | Path, records: Sequence[Record], images: np.ndarray, sources: Sequence[str]
) -> list[Record]:
    """Write generated images (SR, regression) of `records` as PNG plus float32 `.npy` beside it.

    Returns the set's manifest records (same id, split and label; sha256 of the PNG).
    """
    out = []
    for record, image, source in zip(records, images, sources, strict=True):
        relative = relative_image_path(record.split, record.label, record.id)
        write_image(Path(root) / relative, image)
        write_array((Path(root) / relative).with_suffix(".npy"), image)
        out.append(Record(record.id, record.split, record.label, relative, sha256_file(Path(root) / relative),
                          source, record.subject))
    return out
