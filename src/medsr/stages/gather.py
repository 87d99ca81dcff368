"""`medsr gather`: the generation shards of one (guidance, seed) run into one image set.

Checks that every shard was made by the same model, sampler and settings, that the shards are
exactly 0..n-1 of n, and that no image appears twice; then copies PNG + npy files, merges the
manifests (sorted by id) and the per-image guide classes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from medsr.core import io
from medsr.diffusion import posterior
from medsr.core.parameters import GenerateParams
from medsr.core.errors import MedsrError
from medsr.data.image_sets import shard_folders

PER_SHARD = ("shard", "guide_class", posterior.KEY)  # metadata keys that differ between shards


def run(params: GenerateParams, *, shards: Path, out: Path) -> None:
    shards = shard_folders(params, shards)
    missing = next((s for s in shards if not (s / "metadata.json").is_file()), None)
    if missing is not None:
        raise MedsrError(f"{missing}: generation shard is missing (run generate for it first)")
    metadata = [io.read_json(s / "metadata.json") for s in shards]
    common = {k: v for k, v in metadata[0].items() if k not in PER_SHARD}
    for folder, meta in zip(shards, metadata):
        other = {k: v for k, v in meta.items() if k not in PER_SHARD}
        if other != common:
            key = next(k for k in sorted(set(other) | set(common)) if other.get(k) != common.get(k))
            raise MedsrError(f"{folder / 'metadata.json'}: {key} is {other.get(key)!r}, shard "
                             f"{shards[0]} has {common.get(key)!r}: the shards come from different runs")
    found = sorted(int(m["shard"]) for m in metadata)
    if found != list(range(int(common["shards"]))):
        raise MedsrError(f"{shards[0].parent}: shards {found} do not make up 0..{int(common['shards']) - 1}")
    records, guide_class, samples = [], {}, {}
    with io.atomic_dir(out) as tmp:
        for folder, meta in zip(shards, metadata):
            for record in io.read_manifest(folder, allow_empty=True):
                if record.id in guide_class:
                    raise MedsrError(f"{folder / io.MANIFEST}: image {record.id} is in two shards")
                for suffix in (".png", ".npy"):
                    source = (folder / record.path).with_suffix(suffix)
                    if not source.is_file():
                        raise MedsrError(f"{source}: listed in {folder / io.MANIFEST} but missing")
                    target = (tmp / record.path).with_suffix(suffix)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                guide_class[record.id] = meta["guide_class"].get(record.id)
                records.append(record)
            for image_id, entry in (meta.get(posterior.KEY) or {}).items():  # posterior samples
                copies = posterior.files(image_id) + ([f"{posterior.SWAPPED_DIR}/{image_id}.npy"]
                                                      if entry.get("swapped") else [])
                for relative in copies:
                    if not (folder / relative).is_file():
                        raise MedsrError(f"{folder / relative}: listed in {folder / 'metadata.json'} but missing")
                    (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(folder / relative, tmp / relative)
                samples[image_id] = entry
        if not records:
            raise MedsrError(f"{shards[0].parent}: the shards hold no images")
        records.sort(key=lambda r: r.id)
        io.write_manifest(tmp, records)
        io.write_json(tmp / "metadata.json", {**common, "images": len(records),
                                              "guide_class": dict(sorted(guide_class.items())),
                                              posterior.KEY: dict(sorted(samples.items()))})
    print(f"gather: {len(records)} images from {len(shards)} shard(s) into {out}", file=sys.stderr)
