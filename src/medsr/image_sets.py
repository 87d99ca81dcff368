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

KINDS = ("hr", "bicubic", "regression", "sr", "external")
# Guidance modes that hand the generator the true label: flagged in every output, never a fair comparison.
LEAKING_GUIDANCE = ("oracle",)


@dataclasses.dataclass(frozen=True)
class ImageSet:
    name: str  # unique, used in predictions.csv and metrics: hr, bicubic, regression, sr_null_seed0, ext_<name>
    kind: str  # one of KINDS
    path: Path
    guidance: str | None = None  # sr only: null | predicted | oracle
    seed: int | None = None  # sr only: the sampling seed
    leaks_label: bool = False  # True for oracle guidance: never a fair comparison
    matched: str | None = None  # classifier domain trained on this kind of image (hr, bicubic, sr) or None

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


def build(*, hr: Path, bicubic: Path, regression: Path, sr: Path, guidance: Sequence[str],
          sampling_seeds: Sequence[int], sr_classifier: bool, external: Mapping[str, str]) -> list[ImageSet]:
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
