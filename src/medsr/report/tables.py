"""The verdict table and the per-arm table as rows of text, written as reStructuredText or Markdown.

One source for summary.rst (the report) and the README block, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsr.evaluation.comparisons import Arm
from medsr.evaluation.gate import NO_VERDICT, NO_VERDICT_TEXT
from medsr.evaluation.roc import MAX_FPR
from medsr.evaluation.verdicts import VERDICT_TESTS

ORACLE = "ORACLE, leaks the label"
LEAKS = "LEAKS THE LABEL"  # what the title of an image set with label-leaking guidance says (medsr.data.image_sets)


def flagged(title: str, leaks_label: bool) -> str:
    """`title`, marked [ORACLE, leaks the label] when its guidance leaks the label and it does not say so itself."""
    return f"{title} [{ORACLE}]" if leaks_label and LEAKS not in title else title


def num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def pvalue(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def interval(est: Mapping[str, Any], digits: int = 3, signed: bool = False) -> str:
    value = est["value"]
    head = "n/a" if value is None else (f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}")
    return f"{head} [{num(est['ci_low'], digits)}, {num(est['ci_high'], digits)}]"


VERDICT_HEADER = ("Question", "Classifier family", "Comparison (first vs second)", "FNR first vs second",
                  "Specificity first vs second", "FNR difference [CI]", "p", "Holm p", "Holds in",
                  f"pAUC difference, FPR <= {MAX_FPR} [CI]", "Verdict")
VERDICT_WORDS = {"first_better": "first lower FNR", "second_better": "second lower FNR", "equivalent": "equivalent",
                 "inconclusive": "inconclusive", NO_VERDICT: "no verdict (the classifiers did not learn)",
                 "not_significant": "not significant"}  # the label of results written before the four labels


def verdict_words(v: Mapping[str, Any]) -> str:
    """A verdict's label in words with the smallest difference its test detects: "equivalent within +-0.05;
    detectable: |d| >= 0.11" (results written before either: the label alone)."""
    words = VERDICT_WORDS[v["verdict"]]
    if v["verdict"] == "equivalent":
        words += f" within +-{v['equivalence']['margin']:g}"
    if "mde" not in v or v["verdict"] == NO_VERDICT:
        return words
    mde = v["mde"]["value"]
    shown = "n/a (no standard error)" if mde is None else f"|d| >= {mde:.2g}" if mde <= 1 else "no |d| <= 1"
    return f"{words}; detectable: {shown}"


def all_verdicts(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every classifier family's verdicts, each comparison's rows together, the first family's (resnet18) first."""
    others = [v for a in results.get("other_architectures", {}).values() for v in a["verdicts"]]
    return [w for v in results["verdicts"] for w in [v, *(o for o in others if o["id"] == v["id"])]]


def verdict_p(v: Mapping[str, Any], kind: str = "") -> float | None:
    """The p (kind "") or Holm p (kind "_holm") a verdict rests on; results written before the pooled test hold
    only the medians over replicates."""
    return v.get(f"pvalue{kind}", v.get(f"pvalue{kind}_median"))


def difference_interval(v: Mapping[str, Any], confidence: float) -> Mapping[str, Any]:
    """The interval of a verdict's FNR difference that its own test implies (its rule's `interval`: for the
    seed-level t test, mean +- t_{S-1} x SE); otherwise the paired bootstrap interval over the test images (the
    trained classifiers held fixed)."""
    rule = VERDICT_TESTS.get(v.get("rule", ""))
    own = rule.interval(v.get("verdict_test") or {}, confidence) if rule else None
    return v["fnr_difference_val"] if own is None else own


def verdict_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """One row per comparison group and classifier family: pooled FNR and test specificity at the val operating
    point, paired CI of the FNR difference, the p and Holm p of its paired test over all replicates, in how many
    replicates it holds alone, and (secondary) the paired difference of the partial AUROC over the tail."""
    rows = []
    for v in all_verdicts(results):
        family = v.get("architecture", "resnet18")  # results written before there were several
        rows.append([v["question"], family, flagged(f"{v['first_title']} vs {v['second_title']}", v["leaks_label"]),
                     f"{num(v['fnr_first_val']['value'])} vs {num(v['fnr_second_val']['value'])}",
                     f"{_value(v, 'specificity_first_val')} vs {_value(v, 'specificity_second_val')}",
                     interval(difference_interval(v, results["settings"]["confidence"]), signed=True),
                     pvalue(verdict_p(v)),
                     pvalue(verdict_p(v, "_holm")), f"{v['holds']}/{v['replicates']}",
                     interval(v["pauc_difference"], signed=True) if "pauc_difference" in v else "n/a",
                     verdict_words(v)])
    q1 = sum(1 for v in all_verdicts(results) if v["question"] == "Q1")
    return rows[:q1] + deployed_rows(results) + rows[q1:]


DEPLOYED_WORDS = {**VERDICT_WORDS, NO_VERDICT: "no verdict (the deployed classifier did not pass its gate)"}
ONE_CLASSIFIER = "n/a (one classifier)"  # a deployed classifier's "holds in": one classifier is all there is


def deployed_family(results: Mapping[str, Any]) -> str:
    """The classifier-family cell of the deployed classifier's rows (medsr.evaluation.deployed)."""
    return f"deployed: {Path(results['deployed']['classifier']['file']).name}"


def deployed_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """The verdict table's rows of the deployed classifier's Q1 verdicts (none without one)."""
    out = []
    for v in results.get("deployed", {}).get("verdicts", []):
        out.append(["Q1", deployed_family(results), flagged(f"{v['first_title']} vs {v['second_title']}",
                                                            v["leaks_label"]),
                    f"{num(v['fnr_first'])} vs {num(v['fnr_second'])}",
                    f"{num(v['specificity_first'])} vs {num(v['specificity_second'])}",
                    interval(v["fnr_difference"], signed=True), pvalue(v["pvalue"]), pvalue(v["pvalue_holm"]),
                    ONE_CLASSIFIER, "n/a",
                    DEPLOYED_WORDS[v["verdict"]] if v["verdict"] == NO_VERDICT else verdict_words(v)])
    return out


def _value(entry: Mapping[str, Any], key: str) -> str:
    """The value of an estimate, "n/a" in results written before it was computed."""
    return num(entry[key]["value"]) if key in entry else "n/a"


PER_SEED = "per seed, min-max"
ARM_HEADER = ("Image set + classifier", "FNR (val point)", PER_SEED, "Specificity (val point)", PER_SEED,
              "FNR at 0.5", PER_SEED, "Accuracy (val point)", "AUROC", f"pAUC (FPR <= {MAX_FPR})", "PSNR", "SSIM")


def seed_range(values: Sequence[float | None]) -> str:
    """Per-train-seed values as one short cell: "low-high", one value when they all round alike, n/a when none."""
    kept = sorted(v for v in values if v is not None)
    if not kept:
        return "n/a"
    low, high = num(kept[0]), num(kept[-1])
    return low if low == high else f"{low}-{high}"


def _per_seed(results: Mapping[str, Any], group: Mapping[str, Any], point: str, rate: str = "fnr") -> str:
    """A rate per train seed (averaged over the group's sets, i.e. its sampling seeds), as `seed_range`."""
    values = []
    for seed in results["settings"]["train_seeds"]:
        rates = [results["arms"][str(Arm(name, group["classifier"]))]["per_seed"][str(seed)][point][rate]["value"]
                 for name in group["sets"]]
        rates = [r for r in rates if r is not None]
        values.append(sum(rates) / len(rates) if rates else None)
    return seed_range(values)


def arm_rows(results: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for key, group in results["arm_groups"].items():
        pooled = group["pooled"]
        quality = results["set_groups"].get(group["group"], {})
        rows.append([flagged(group["title"], group["leaks_label"]), interval(pooled["fnr_val"]),
                     _per_seed(results, group, "val"),
                     interval(pooled["specificity_val"]), _per_seed(results, group, "val", "specificity"),
                     interval(pooled["fnr_0.5"]), _per_seed(results, group, "0.5"),
                     num(pooled["accuracy_val"]["value"]), num(pooled["auroc"]["value"]), _value(pooled, "pauc"),
                     num(quality.get("psnr"), 2), num(quality.get("ssim"))])
    return rows


MAX_COLUMN_WEIGHT = 60  # characters: a longer cell wraps rather than take the width of the short columns
CELL_PADDING = 3  # characters' worth of a cell's padding


def _longest_word(texts: Sequence[str]) -> int:
    return max((len(word) for text in texts for word in text.split()), default=1)


def column_widths(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """Relative column widths of a report table: a column's longest cell up to MAX_COLUMN_WEIGHT characters, never
    less than its longest word (the header's included), plus its padding: short numbers keep a line, long
    comparisons wrap over a few, no word spills into the next column."""
    widths = []
    for i, name in enumerate(header):
        cells = [row[i] for row in rows]
        longest = max((len(cell) for cell in cells), default=1)
        widths.append(max(_longest_word([name, *cells]), min(longest, MAX_COLUMN_WEIGHT)) + CELL_PADDING)
    return widths


def rst_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> str:
    out = [f".. list-table:: {title}".rstrip(), "   :header-rows: 1",
           f"   :widths: {' '.join(str(w) for w in column_widths(header, rows))}", ""]
    for row in [list(header), *rows]:
        out.append(f"   * - {_rst_cell(row[0])}")
        out += [f"     - {_rst_cell(cell)}" for cell in row[1:]]
    return "\n".join(out) + "\n"


def _rst_cell(text: str) -> str:
    return text.replace("*", "\\*").replace("|", "\\|") or "\\ "


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)]) + "\n"


def gate_failed(results: Mapping[str, Any]) -> bool:
    """The learning gate failed (results written before the gate have none: their verdicts stand)."""
    return "gate" in results and not results["gate"]["passed"]


def gate_lead(results: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The sentence every summary opens with when the learning gate failed, and its reasons, one line each."""
    return f"{NO_VERDICT_TEXT}.", list(results["gate"]["reasons"])
