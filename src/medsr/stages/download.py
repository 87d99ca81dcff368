"""`medsr download`: build (mni | synthetic) or fetch (folder | url | kaggle) the labeled HR dataset.

Writes, as one atomic folder, `<out>/{train,val,test}/{healthy,unhealthy}/<id>.png` (8-bit grayscale,
data.image_size square), `manifest.csv` (with each image's subject, when the source knows it), `download.json`
(where the data came from; image counts per split and label; skipped images; duplicates),
`skipped.csv` (unreadable source images, with data.on_bad_image: skip) and `duplicates.csv` (images duplicated
exactly or nearly, `medsr.data.duplicates`). On any error nothing is left in place of `out` and an existing `out`
is untouched. The source's train images are split once into `train` and `val` (data.val_fraction,
stratified by class, by subject when subjects exist, seeded by data.split_seed: `medsr.data.splits`); the
source's test images are `test`. Volume sources (nifti | dicom, `medsr.data.volumes`) have no test folder:
test (data.volumes.test_fraction) and then val are carved from their subjects.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


from medsr.core import io
from medsr.core.config import to_jsonable
from medsr.core.parameters import CLASSES, SPLITS, VOLUME_SOURCES, DataParams
from medsr.data import duplicates, mni, sources, synthetic, volumes
from medsr.data.splits import carve, carve_val
from medsr.core.errors import MedsrError

SUMMARY = "download.json"
SKIPPED = "skipped.csv"
SKIPPED_FIELDS = ("path", "reason")
DUPLICATES = "duplicates.csv"
GENERATORS = {  # the embedded, offline sources: data.source -> (module with generate(params, size), description)
    "mni": (mni, "medsr.data.mni (MNI152 2009a template slices; unhealthy: rim lesions, healthy: solid lesions "
                 "of equal size and mass)"),
    "synthetic": (synthetic, "medsr.data.synthetic (T1-like axial slices; unhealthy: atrophy + small lesions)"),
}


def run(data: DataParams, out: Path) -> None:
    out = Path(out)
    with io.atomic_dir(out) as tmp:
        if data.source in GENERATORS:
            records, skipped, provenance = _write_generated(data, tmp)
        elif data.source in VOLUME_SOURCES:
            records, skipped, provenance = _write_volumes(data, tmp)
        else:
            with tempfile.TemporaryDirectory(prefix=f".{out.name}.source.", suffix=".tmp", dir=out.parent) as work:
                located = sources.locate(data, Path(work))
                records, skipped = _write_real(data, located, tmp)
                provenance = located.provenance
        records, pairs, duplicate_counts = duplicates.resolve(tmp, records, data.duplicates, data.near_duplicate_bits,
                                                                      data.near_duplicate_correlation)
        io.write_manifest(tmp, records)
        io.write_csv(tmp / SKIPPED, skipped, SKIPPED_FIELDS)
        io.write_csv(tmp / DUPLICATES, pairs, duplicates.FIELDS)
        io.write_json(tmp / SUMMARY, {**_summary(data, records, skipped, provenance), "duplicates": duplicate_counts})
    if skipped:
        print(f"medsr download: skipped {len(skipped)} unreadable image(s), listed in {out / SKIPPED}",
              file=sys.stderr)
    if duplicate_counts["dropped"]:
        print(f"medsr download: dropped {duplicate_counts['dropped']} image(s) duplicated across splits, listed in "
              f"{out / DUPLICATES}", file=sys.stderr)


def _write_generated(data: DataParams, root: Path) -> tuple[list[io.Record], list[dict], dict]:
    module, description = GENERATORS[data.source]
    params = getattr(data, data.source)
    items = list(module.generate(params, data.image_size))
    splits = _with_val([item.split for item in items], [item.label for item in items], data)
    records = [_write(root, item.id, split, item.label, item.image, data.source) for item, split in zip(items, splits)]
    provenance = {"source": data.source, "seed": params.seed, "generator": description,
                  "params": to_jsonable(params)}
    if data.source == "mni":
        provenance["template"] = mni.template_provenance()
    return records, [], provenance


def _write_real(data: DataParams, located: sources.LocatedSource, root: Path) -> tuple[list[io.Record], list[dict]]:
    records: list[io.Record] = []
    skipped: list[dict] = []
    numbers = {split: 0 for split in sources.SPLITS}
    items = sources.list_images(located, data.class_map)
    splits = _with_val([item.split for item in items], [item.label for item in items], data)
    for item, split in zip(items, splits):
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
        records.append(_write(root, image_id, split, item.label, image, item.source))
    for split in sources.SPLITS:  # the source's splits; val is carved from train best-effort (tiny sets may lack it)
        held = ("train", "val") if split == "train" else (split,)
        for label in CLASSES:
            if not any(r.split in held and r.label == label for r in records):
                raise MedsrError(f"{located.root / split}: no readable {label} images "
                                 f"({len(skipped)} unreadable image(s) skipped)")
    return records, skipped


def _with_val(splits: list[str], labels: list[str], data: DataParams, subjects: list[str] | None = None) -> list[str]:
    """The source splits with val carved from train, by subject when `subjects` are known (the ids keep their
    source split's numbering)."""
    train = [i for i, split in enumerate(splits) if split == "train"]
    moved = carve_val([labels[i] for i in train], data.val_fraction, data.split_seed,
                      None if subjects is None else [subjects[i] for i in train])
    out = list(splits)
    for i, to_val in zip(train, moved):
        if to_val:
            out[i] = "val"
    return out


# --- data.source: nifti | dicom (medsr.data.volumes) ------------------------------------------

def _write_volumes(data: DataParams, root: Path) -> tuple[list[io.Record], list[dict], dict]:
    """Slices of every subject of the CSV; test and val carved by subject, stratified by class."""
    slices: list[volumes.Slice] = []
    skipped: list[dict] = []

    def bad(err: MedsrError, where: Path) -> None:
        if data.on_bad_image == "fail":
            raise MedsrError(f"{err}; set data.on_bad_image: skip to leave it out") from err
        skipped.append({"path": str(where), "reason": str(err).removeprefix(f"{where}: ")})

    for subject, label in volumes.subjects(data):
        try:
            inputs = volumes.subject_inputs(data, subject)
        except MedsrError as err:
            bad(err, Path(data.volumes.path).expanduser() / subject)
            continue
        for path in inputs:
            try:
                slices += volumes.read_slices(data, subject, label, path)
            except MedsrError as err:
                bad(err, path)
    labels, subjects = [s.label for s in slices], [s.subject for s in slices]
    test = carve(labels, data.volumes.test_fraction, data.split_seed, subjects, stream="test-split", what="slice")
    splits = _with_val(["test" if t else "train" for t in test], labels, data, subjects)
    records = [_write(root, f"vol_{n:05d}", split, item.label, item.image, item.source, item.subject)
               for n, (item, split) in enumerate(zip(slices, splits))]
    for split in SPLITS:
        for label in CLASSES:
            if not any(r.split == split and r.label == label for r in records):
                have = len({s.subject for s in slices if s.label == label})
                raise MedsrError(f"{data.volumes.path}: no {label} subject left for {split} ({have} readable {label} "
                                 f"subject(s), {len(skipped)} skipped; test, val and train need one each)")
    provenance = {"source": data.source, "path": data.volumes.path, "axis": data.volumes.axis,
                  "orientation": "RAS+ (nibabel as_closest_canonical)",
                  "test": {"fraction": data.volumes.test_fraction, "seed": data.split_seed,
                           "from": "subjects, stratified by class"}}
    return records, skipped, provenance


def _reason(err: MedsrError, path: Path) -> str:
    message = str(err)
    return message.removeprefix(f"{path}: ").removeprefix("unreadable image ").strip("()") or message


def _write(root: Path, image_id: str, split: str, label: str, image, source: str, subject: str = "") -> io.Record:
    relative = io.relative_image_path(split, label, image_id)
    io.write_image(root / relative, image)
    return io.Record(image_id, split, label, relative, io.sha256_file(root / relative), source, subject)


def _summary(data: DataParams, records: list[io.Record], skipped: list[dict], provenance: dict) -> dict:
    counts = {split: {label: sum(r.split == split and r.label == label for r in records) for label in CLASSES}
              for split in SPLITS}
    subjects = {split: len({r.unit for r in records if r.split == split}) for split in SPLITS}
    by_subject = any(r.subject for r in records)
    return {"images": len(records), "counts": counts, "skipped": len(skipped),
            "subjects": subjects if by_subject else None,
            "val": {"fraction": data.val_fraction, "seed": data.split_seed,
                    "from": "train, stratified by class" + (", by subject" if by_subject else "")},
            "image_size": data.image_size, "resize": data.resize if data.source not in GENERATORS else None,
            **provenance}
