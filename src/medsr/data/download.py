"""`medsr download`: build (synthetic) or fetch (folder | url | kaggle) the labeled HR dataset.

Writes, as one atomic folder, `<out>/{train,test}/{healthy,unhealthy}/<id>.png` (8-bit grayscale,
data.image_size square), `manifest.csv`, `download.json` (where the data came from; image counts per
split and label; skipped images) and `skipped.csv` (unreadable source images, with
data.on_bad_image: skip). On any error nothing is left in place of `out` and an existing `out`
is untouched.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


from medsr import io
from medsr.config import CLASSES, DataParams
from medsr.data import sources, synthetic
from medsr.errors import MedsrError

SUMMARY = "download.json"
SKIPPED = "skipped.csv"
SKIPPED_FIELDS = ("path", "reason")


def run(data: DataParams, out: Path) -> None:
    out = Path(out)
    with io.atomic_dir(out) as tmp:
        if data.source == "synthetic":
            records, skipped, provenance = _write_synthetic(data, tmp)
        else:
            with tempfile.TemporaryDirectory(prefix=f".{out.name}.source.", suffix=".tmp", dir=out.parent) as work:
                located = sources.locate(data, Path(work))
                records, skipped = _write_real(data, located, tmp)
                provenance = located.provenance
        io.write_manifest(tmp, records)
        io.write_csv(tmp / SKIPPED, skipped, SKIPPED_FIELDS)
        io.write_json(tmp / SUMMARY, _summary(data, records, skipped, provenance))
    if skipped:
        print(f"medsr download: skipped {len(skipped)} unreadable image(s), listed in {out / SKIPPED}",
              file=sys.stderr)


def _write_synthetic(data: DataParams, root: Path) -> tuple[list[io.Record], list[dict], dict]:
    records = []
    for item in synthetic.generate(data.synthetic, data.image_size):
        records.append(_write(root, item.id, item.split, item.label, item.image, "synthetic"))
    provenance = {"source": "synthetic", "seed": data.synthetic.seed,
                  "generator": "medsr.data.synthetic (T1-like axial slices; unhealthy: atrophy + small lesions)"}
    return records, [], provenance


def _write_real(data: DataParams, located: sources.LocatedSource, root: Path) -> tuple[list[io.Record], list[dict]]:
    records: list[io.Record] = []
    skipped: list[dict] = []
    numbers = {split: 0 for split in sources.SPLITS}
    for item in sources.list_images(located, data.class_map):
        try:
            image = io.read_image(item.path)
        except MedsrError as err:
            if data.on_bad_image == "fail":
                raise MedsrError(f"{item.source}: unreadable image ({_reason(err, item.path)}); set "
                                 f"data.on_bad_image: skip to leave it out") from err
            skipped.append({"path": item.source, "reason": _reason(err, item.path)})
            continue
        image_id = f"{item.split}_{numbers[item.split]:05d}"
        numbers[item.split] += 1
        image = sources.fit_to_size(image, data.image_size, data.resize)
        records.append(_write(root, image_id, item.split, item.label, image, item.source))
    for split in sources.SPLITS:
        for label in CLASSES:
            if not any(r.split == split and r.label == label for r in records):
                raise MedsrError(f"{located.root / split}: no readable {label} images "
                                 f"({len(skipped)} unreadable image(s) skipped)")
    return records, skipped


def _reason(err: MedsrError, path: Path) -> str:
    message = str(err)
    return message.removeprefix(f"{path}: ").removeprefix("unreadable image ").strip("()") or message


def _write(root: Path, image_id: str, split: str, label: str, image, source: str) -> io.Record:
    relative = io.relative_image_path(split, label, image_id)
    io.write_image(root / relative, image)
    return io.Record(image_id, split, label, relative, io.sha256_file(root / relative), source)


def _summary(data: DataParams, records: list[io.Record], skipped: list[dict], provenance: dict) -> dict:
    counts = {split: {label: sum(r.split == split and r.label == label for r in records) for label in CLASSES}
              for split in sources.SPLITS}
    return {"images": len(records), "counts": counts, "skipped": len(skipped),
            "image_size": data.image_size, "resize": data.resize if data.source != "synthetic" else None,
            **provenance}
