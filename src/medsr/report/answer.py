"""What the run found, in three plain sentences: does SR lower the HR-trained (deployed) classifier's misses (Q1),
does a classifier fine-tuned on bicubic images do better (Q2, the matched baseline), and what the two tests rest on.
The README's first screen (`medsr readme`) and the report (summary.rst) open with them.

Each answer sentence names its arms in a reader's words (`arm_name`), quotes both false-negative rates, the
difference with the interval of the verdict's own test and its Holm p, and keeps within MAX_WORDS words. A verdict
that is not significant reads "no detectable difference", never "no effect"; a verdict withheld by the learning gate
says so; an arm whose guidance leaks the label says so in its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medsr.evaluation.comparisons import Arm
from medsr.evaluation.gate import NO_VERDICT
from medsr.evaluation.verdicts import VERDICT_TESTS
from medsr.report.tables import difference_interval, num, pvalue, verdict_p

MAX_WORDS = 40
SET_NAMES = {"hr": "the HR images", "bicubic": "bicubic upsampling", "regression": "regression SR"}
GUIDED = {"null": "", "predicted": " guided by the predicted class",
          "oracle": " given the true label (not a fair test)", "swapped": " given the opposite label (not a fair test)"}
CLASSIFIER_NAMES = {"hr": "the HR-trained classifier", "bicubic": "a classifier fine-tuned on bicubic images",
                    "sr": "a classifier fine-tuned on SR images"}
NOT_LEARNED = "the classifiers did not learn this data"


def _set_entry(results: Mapping[str, Any], arm: str) -> Mapping[str, Any]:
    """The first image set of an arm group (`sr_null@hr`): its kind, guidance, title."""
    return results["sets"][results["arm_groups"][arm]["sets"][0]]


def arm_name(results: Mapping[str, Any], arm: str) -> str:
    """An arm group's images in a reader's words: `diffusion SR`, `bicubic upsampling`, `regression SR`."""
    entry = _set_entry(results, arm)
    if entry["kind"] == "sr":
        guidance = entry.get("guidance")
        if guidance in GUIDED:
            return "diffusion SR" + GUIDED[guidance]
        name = f"diffusion SR ({guidance} guidance)"
    else:
        name = SET_NAMES.get(entry["kind"], entry["title"])
    return f"{name} (leaks the label, not a fair test)" if results["arm_groups"][arm]["leaks_label"] else name


def classifier_name(arm: str) -> str:
    classifier = Arm.parse(arm).classifier
    return CLASSIFIER_NAMES.get(classifier, f"the {classifier} classifier")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rates(v: Mapping[str, Any]) -> str:
    return f"false-negative rate {num(v['fnr_first_val']['value'])} vs {num(v['fnr_second_val']['value'])}"


def _evidence(v: Mapping[str, Any], confidence: float) -> str:
    """`false-negative rate a vs b, difference d (95% CI low to high, Holm p p)`: the verdict table's numbers."""
    d = difference_interval(v, confidence)
    value = "n/a" if d["value"] is None else f"{d['value']:+.3f}"
    mde = (v.get("mde") or {}).get("value")  # beside a difference not shown: what the run could have seen
    shown = v["verdict"] in ("first_better", "second_better")
    detectable = f", detectable {mde:.2f}" if mde is not None and mde <= 1 and not shown else ""
    rates = f"{_rates(v)}, " if not detectable else ""  # the table has them; the sentence stays short
    return (f"{rates}difference {value} ({confidence:.0%} CI {num(d['ci_low'])} to {num(d['ci_high'])}, "
            f"Holm p {pvalue(verdict_p(v, '_holm'))}{detectable})")


def _margin(v: Mapping[str, Any]) -> str:
    """'+-0.05': the equivalence margin the verdict was tested against."""
    return f"+-{v['equivalence']['margin']:g}"


def _rank(results: Mapping[str, Any], v: Mapping[str, Any]) -> tuple[bool, bool, bool]:
    """Diffusion SR before other sets, fair before label-leaking, null guidance first; the list order after that."""
    entry = _set_entry(results, v["first"])
    return entry["kind"] != "sr", bool(v["leaks_label"]), entry.get("guidance") != "null"


def headline_verdicts(results: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """The Q1 verdict the answer reads (diffusion SR, fair, null guidance where the run has it) and the Q2 verdict
    of the same SR arm against the matched baseline; None where the run has no such comparison."""
    verdicts = results["verdicts"]
    q1 = min((v for v in verdicts if v["question"] == "Q1"), key=lambda v: _rank(results, v), default=None)
    q2s = [v for v in verdicts if v["question"] == "Q2"]
    same = [v for v in q2s if q1 is not None and v["first"] == q1["first"]]
    q2 = min(same or q2s, key=lambda v: _rank(results, v), default=None)
    return q1, q2


def q1_sentence(results: Mapping[str, Any], v: Mapping[str, Any]) -> str:
    """Whether SR lowers the HR-trained classifier's misses compared with bicubic upsampling, and by how much."""
    first, second = arm_name(results, v["first"]), arm_name(results, v["second"])
    whose = f"{classifier_name(v['first'])}'s misses"
    if v["verdict"] == NO_VERDICT:
        return f"No verdict on whether {first} lowers {whose} compared with {second}: {NOT_LEARNED} ({_rates(v)})."
    evidence = _evidence(v, results["settings"]["confidence"])
    if v["verdict"] == "first_better":
        return f"{_capital(first)} lowers {whose} compared with {second}: {evidence}."
    if v["verdict"] == "second_better":
        return f"{_capital(first)} raises {whose} compared with {second}: {evidence}."
    if v["verdict"] == "equivalent":
        return f"{_capital(first)} matches {second} in {whose} within {_margin(v)}: {evidence}."
    return f"{_capital(first)} shows no detectable difference from {second} in {whose}: {evidence}."


def q2_sentence(results: Mapping[str, Any], v: Mapping[str, Any]) -> str:
    """Whether the matched baseline (bicubic images through a classifier fine-tuned on them) misses fewer than SR
    through the HR-trained classifier; the rates are SR's, then the baseline's, as in the verdict table."""
    baseline = classifier_name(v["second"])
    sr = f"{arm_name(results, v['first'])} through {classifier_name(v['first'])}"
    if v["verdict"] == NO_VERDICT:
        return f"No verdict on whether {baseline} does better than {sr}: {NOT_LEARNED} ({_rates(v)})."
    evidence = _evidence(v, results["settings"]["confidence"])
    if v["verdict"] == "second_better":
        return f"{_capital(baseline)} does better: {sr} misses more, {evidence}."
    if v["verdict"] == "first_better":
        return f"{_capital(baseline)} does worse: {sr} misses fewer, {evidence}."
    if v["verdict"] == "equivalent":
        return f"{_capital(baseline)} matches {sr} within {_margin(v)}: {evidence}."
    return f"{_capital(baseline)} shows no detectable difference from {sr}: {evidence}."


def basis_sentence(results: Mapping[str, Any]) -> str:
    """What the tests rest on: paired, the unhealthy test images, the training seeds, the verdict's test."""
    s = results["settings"]
    rule = VERDICT_TESTS.get(s.get("verdict_rule", "majority"))
    test = rule.summary.split(" (")[0] if rule else s.get("verdict_rule", "the verdict's test")
    seeds = len(s["train_seeds"])
    sampling = len(s.get("sampling_seeds", ()))
    over = f"{seeds} classifier training seed{'' if seeds == 1 else 's'}"
    if sampling > 1:
        over += f" and {sampling} SR sampling seeds"
    return (f"Each test is paired on {results['n_unhealthy']} unhealthy test images over {over}: {test}, "
            f"Holm-adjusted, at each classifier's val threshold for specificity {s['val_specificity']}.")


def answer_sentences(results: Mapping[str, Any]) -> list[str]:
    """The three sentences (fewer when the run lacks a question's comparison)."""
    q1, q2 = headline_verdicts(results)
    if q1 is None and q2 is None:
        return ["This run has no comparison of SR with bicubic upsampling to answer from."]
    out = [q1_sentence(results, q1)] if q1 is not None else []
    out += [q2_sentence(results, q2)] if q2 is not None else []
    return [*out, basis_sentence(results)]


def answer_text(results: Mapping[str, Any]) -> str:
    return " ".join(answer_sentences(results))
