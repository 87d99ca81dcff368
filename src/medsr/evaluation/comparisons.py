"""THE comparison families, declared in advance, in this one place (what is tested, and what is Holm-adjusted
together).

An *arm* is an image set seen through one classifier: (set name, classifier domain). A comparison puts two arms
side by side on the same test images (paired by id). Questions:
  Q1 (a deployed classifier): "my classifier was trained on HR and cannot be retrained; my new scans are LR:
     does SR beat bicubic in front of it?"  each regression / SR / external set through the hr classifier
     vs bicubic through the hr classifier.
  Q2 (a new study): "should I super-resolve at all, or train my classifier on LR (bicubic) images?"  each SR set
     through the hr classifier (and through the sr classifier when one is trained) vs bicubic through the
     HR classifier fine-tuned on bicubic train images (the matched-domain baseline).
  reference: hr through hr vs bicubic through bicubic ("does resolution matter at all?"), and each SR set
     through hr vs hr through hr (how far SR is from the real thing).
Holm (1979) families: (question, fair | leaks_label) per train seed; a set with oracle guidance leaks the true
label and is never in a family with fair comparisons. The primary test is McNemar on the truly unhealthy test
images at the val-chosen operating point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from medsr.data.image_sets import ImageSet

QUESTION_TEXT = {
    "Q1": "Deployed HR-trained classifier, LR scans: does SR beat bicubic in front of it?",
    "Q2": "New study: super-resolve for the HR classifier, or train the classifier on bicubic images?",
    "reference": "Reference: how far are the inputs from HR?",
}


class Arm(NamedTuple):
    """An image set (or a group of sets: `group_name`) seen through the classifiers of one domain. Its text,
    `sr_null_seed0@hr`, is its key in the results and its name in tables and plots (`str` and `parse`)."""

    set: str
    classifier: str  # classifier domain: hr | bicubic | sr

    SEP = "@"

    def __str__(self) -> str:
        return f"{self.set}{self.SEP}{self.classifier}"

    @classmethod
    def parse(cls, text: str) -> Arm:
        set_name, classifier = text.split(cls.SEP)
        return cls(set_name, classifier)


@dataclass(frozen=True)
class Comparison:
    question: str  # Q1 | Q2 | reference
    first: Arm
    second: Arm
    leaks_label: bool

    @property
    def family(self) -> str:
        return f"{self.question}/{'leaks_label' if self.leaks_label else 'fair'}"


def group_name(image_set: ImageSet) -> str:
    """Sets that differ only by sampling seed form one group (their replicates): sr_<guidance>; else the name."""
    return f"sr_{image_set.guidance}" if image_set.kind == "sr" else image_set.name


def comparisons(sets: Sequence[ImageSet], classifiers: Sequence[str]) -> list[Comparison]:
    """Every comparison of the run, in reading order (Q1, Q2, reference)."""
    by_kind = {kind: [s for s in sets if s.kind == kind] for kind in ("hr", "bicubic", "regression", "sr", "external")}
    if not by_kind["hr"] or not by_kind["bicubic"]:
        return []
    hr, bicubic = by_kind["hr"][0], by_kind["bicubic"][0]
    out: list[Comparison] = []
    for s in by_kind["regression"] + by_kind["sr"] + by_kind["external"]:  # Q1
        out.append(Comparison("Q1", Arm(s.name, "hr"), Arm(bicubic.name, "hr"), s.leaks_label))
    for s in by_kind["sr"]:  # Q2
        out.append(Comparison("Q2", Arm(s.name, "hr"), Arm(bicubic.name, "bicubic"), s.leaks_label))
        if "sr" in classifiers and s.matched == "sr":
            out.append(Comparison("Q2", Arm(s.name, "sr"), Arm(bicubic.name, "bicubic"), s.leaks_label))
    out.append(Comparison("reference", Arm(hr.name, "hr"), Arm(bicubic.name, "bicubic"), False))
    for s in by_kind["sr"]:
        out.append(Comparison("reference", Arm(s.name, "hr"), Arm(hr.name, "hr"), s.leaks_label))
    return out


def arms(sets: Sequence[ImageSet], classifiers: Sequence[str]) -> list[Arm]:
    """Every arm evaluated: each set through the hr classifier, and each set through its matched classifier."""
    out: list[Arm] = [Arm(s.name, "hr") for s in sets]
    out += [Arm(s.name, c) for s in sets for c in s.classifiers[1:] if c in classifiers]
    return out
