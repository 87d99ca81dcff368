"""The image sets the experiment classifies, named once and passed as objects from the CLI to classify/evaluate.

An `ImageSet` is one folder of HR-size images of the `val` and `test` splits, paired by id with the HR set:
  hr          the HR images themselves (the reference)
  bicubic     bicubic upsampling of the LR images (the strongest "no SR" input)
  regression  the one-pass L1 regression U-Net's SR
  sr          the diffusion model's SR, one set per (guidance mode, sampling seed)
  external    a user's own SR of the same LR images (evaluate.external: bring your own SR)
`matched` names the classifier domain trained on this kind of image (the matched-domain baseline of the
"new study" question), or None when no classifier is trained on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from medsr.core.parameters import LEAKING_GUIDANCE
from medsr.core.errors import MedsrError
from medsr.core.io import MANIFEST, Record, read_manifest

KINDS = ("hr", "bicubic", "regression", "sr", "external")
# LEAKING_GUIDANCE (declared in config): modes computed from the true label (oracle, swapped), flagged in every
# output, never a fair comparison.


@dataclasses.dataclass(frozen=True)
class ImageSet:
    name: str  # unique, used in predictions.csv and metrics: hr, bicubic, regression, sr_null_seed0, ext_<name>
    kind: str  # one of KINDS
    path: Path
    guidance: str | None = None  # sr only: null | predicted | oracle | swapped
    seed: int | None = None  # sr only: the sampling seed
    leaks_label: bool = False  # True for LEAKING_GUIDANCE (oracle, swapped): never a fair comparison
    matched: str | None = None  # classifier domain trained on this kind of image (hr, bicubic, sr) or None

    @property
    def classifiers(self) -> tuple[str, ...]:
        """The classifier domains that see this set: the HR classifier always (a deployed classifier), and the one
        trained on this kind of image when there is one (the matched-domain baseline). classify runs these and
        evaluate's arms are these (medsr.evaluation.comparisons.arms)."""
        return ("hr",) if self.matched in (None, "hr") else ("hr", self.matched)

    @property
    def title(self) -> str:
        """A reader's name for tables and figures."""
        if self.kind == "sr":
            leak = ", LEAKS THE LABEL" if self.leaks_label else ""
            return f"SR ({self.guidance} guidance, seed {self.seed}{leak})"
        if self.kind == "external":
            return f"external SR {self.name.removeprefix('ext_')}"
        return {"hr": "HR", "bicubic": "bicubic", "regression": "regression SR"}[self.kind]


def sr_folder(root: Path, guidance: str, seed: int) -> Path:
    return Path(root) / guidance / f"seed{seed}"


def shard_folders(params, shards: Path) -> list[Path]:
    """<shards>/shard<k> for every k in generate.shards (`params`: the generate section): generate writes each,
    gather joins them into one SR set."""
    return [Path(shards) / f"shard{k}" for k in sorted(params.shards)]


def build(*, hr: Path, bicubic: Path, regression: Path, sr: Path, guidance: Sequence[str],
          sampling_seeds: Sequence[int], external: Mapping[str, str], sr_classifier: bool = False) -> list[ImageSet]:
    """Every image set of a run, in comparison order: hr, bicubic, regression, sr_<guidance>_seed<seed>, ext_*."""
    sets = [ImageSet("hr", "hr", Path(hr), matched="hr"),
            ImageSet("bicubic", "bicubic", Path(bicubic), matched="bicubic"),
            ImageSet("regression", "regression", Path(regression))]
    for mode in guidance:
        for seed in sampling_seeds:
            sets.append(ImageSet(f"sr_{mode}_seed{seed}", "sr", sr_folder(sr, mode, seed), guidance=mode, seed=seed,
                                 leaks_label=mode in LEAKING_GUIDANCE, matched="sr" if sr_classifier else None))
    for name, folder in external.items():
        sets.append(ImageSet(f"ext_{name}", "external", Path(folder)))
    return sets


def paired_records(sets: Sequence[ImageSet], splits: Sequence[str]) -> dict[str, list[tuple[Record, Record]]]:
    """Per set, (HR record, the set's record of that image) for every HR image of `splits`, in HR id order.

    A set with a manifest must hold exactly those ids with the same labels; an external folder without one holds
    `<id>.png` files (a missing val image leaves val out for that set; a missing test image is an error).
    """
    if not sets or sets[0].kind != "hr":
        raise MedsrError("image sets: the first set must be hr (the reference)")
    reference = sorted(read_manifest(sets[0].path, split=splits), key=lambda r: r.id)
    out: dict[str, list[tuple[Record, Path]]] = {}
    for image_set in sets:
        manifest = Path(image_set.path) / MANIFEST
        if image_set.kind == "external" and not manifest.is_file():
            out[image_set.name] = _external_files(image_set, reference)
            continue
        records = {r.id: r for r in read_manifest(image_set.path, split=splits)}
        missing = [r.id for r in reference if r.id not in records]
        if missing:
            raise MedsrError(f"{manifest}: set {image_set.name} lacks image {missing[0]} of the hr set "
                             f"({len(missing)} missing)")
        extra = sorted(set(records) - {r.id for r in reference})
        if extra:
            raise MedsrError(f"{manifest}: set {image_set.name} has image {extra[0]} that the hr set lacks "
                             f"({len(extra)} extra)")
        for ref in reference:
            mine = records[ref.id]
            if (mine.label, mine.split) != (ref.label, ref.split):
                raise MedsrError(f"{manifest}: set {image_set.name} has image {ref.id} as {mine.split}/{mine.label}, "
                                 f"the hr set as {ref.split}/{ref.label}")
        out[image_set.name] = [(ref, records[ref.id]) for ref in reference]
    return out


def _external_files(image_set: ImageSet, reference: Sequence[Record]) -> list[tuple[Record, Record]]:
    folder = Path(image_set.path)
    if not folder.is_dir():
        raise MedsrError(f"{folder}: evaluate.external.{image_set.name.removeprefix('ext_')}: folder is missing")
    pairs = []
    for ref in reference:
        path = folder / f"{ref.id}.png"
        if path.is_file():  # no manifest, so no recorded hash to check the file against
            pairs.append((ref, Record(ref.id, ref.split, ref.label, path.name)))
        elif ref.split == "test":
            raise MedsrError(f"{path}: evaluate.external.{image_set.name.removeprefix('ext_')}: no SR image for test "
                             f"image {ref.id} (expected <id>.png for every test id of data/lr)")
    return pairs
