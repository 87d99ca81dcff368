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


# Each verdict's sentence per question: {a} the SR arm (Q2: through its classifier), {b} the other arm (Q2: the
# classifier fine-tuned on bicubic), {whose} the misses compared (Q1), {margin} the equivalence margin, {evidence}
# the verdict table's numbers, {rates} the two FNRs; a capitalised name starts the sentence.
SENTENCES = {
    "Q1": {NO_VERDICT: "No verdict on whether {a} lowers {whose} compared with {b}: {not_learned} ({rates}).",
           "first_better": "{A} lowers {whose} compared with {b}: {evidence}.",
           "second_better": "{A} raises {whose} compared with {b}: {evidence}.",
           "equivalent": "{A} matches {b} in {whose} within {margin}: {evidence}.",
           "inconclusive": "{A} shows no detectable difference from {b} in {whose}: {evidence}."},
    "Q2": {NO_VERDICT: "No verdict on whether {b} does better than {a}: {not_learned} ({rates}).",
           "second_better": "{B} does better: {a} misses more, {evidence}.",
           "first_better": "{B} does worse: {a} misses fewer, {evidence}.",
           "equivalent": "{B} matches {a} within {margin}: {evidence}.",
           "inconclusive": "{B} shows no detectable difference from {a}: {evidence}."},
}


def verdict_sentence(results: Mapping[str, Any], v: Mapping[str, Any]) -> str:
    """Q1: whether SR lowers the HR-trained classifier's misses compared with bicubic upsampling, and by how much.
    Q2: whether the matched baseline (bicubic images through a classifier fine-tuned on them) misses fewer than SR
    through the HR-trained classifier; the rates are SR's, then the baseline's, as in the verdict table."""
    if v["question"] == "Q1":
        a, b = arm_name(results, v["first"]), arm_name(results, v["second"])
    else:
        a, b = f"{arm_name(results, v['first'])} through {classifier_name(v['first'])}", classifier_name(v["second"])
    templates = SENTENCES[v["question"]]
    template = templates.get(v["verdict"], templates["inconclusive"])  # older results: not_significant
    evidence = "" if v["verdict"] == NO_VERDICT else _evidence(v, results["settings"]["confidence"])
    return template.format(a=a, b=b, A=_capital(a), B=_capital(b), whose=f"{classifier_name(v['first'])}'s misses",
                           margin=_margin(v) if v["verdict"] == "equivalent" else "", evidence=evidence,
                           rates=_rates(v), not_learned=NOT_LEARNED)


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
    out = [verdict_sentence(results, v) for v in (q1, q2) if v is not None]
    return [*out, basis_sentence(results)]


def answer_text(results: Mapping[str, Any]) -> str:
    return " ".join(answer_sentences(results))
