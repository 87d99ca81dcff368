"""The generated findings: what the run found in three sentences (`medsr.report.answer`), the answers to Q1 and Q2
and the verdict table, then the details.

Every sentence follows a verdict computed in `evaluation/verdicts.py` (the Holm-adjusted FNR test on the unhealthy
test images at the val operating point under `evaluate.verdict_rule`, "holds in k/n" replicates) and quotes its
numbers, so wording and numbers agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medsr.evaluation.gate import NO_VERDICT
from medsr.evaluation.power import POWER
from medsr.evaluation.roc import MAX_FPR
from medsr.evaluation.verdicts import VERDICT_TESTS, VerdictTest
from medsr.report.answer import answer_text
from medsr.report.figures import ROC_FIGURES
from medsr.report.tables import (ARM_HEADER, DEPLOYED_WORDS, ORACLE, VERDICT_HEADER, VERDICT_WORDS, arm_rows,
                                 deployed_family, difference_interval, gate_failed, gate_lead, interval, num, pvalue,
                                 rst_table, verdict_p, verdict_rows, verdict_words)

ANSWER = {  # question -> verdict -> leading word ("not_significant": results written before the four labels)
    q: {"first_better": "Yes", "second_better": "No", "equivalent": "No", "inconclusive": "Not shown",
        "not_significant": "Not shown", NO_VERDICT: "No verdict"} for q in ("Q1", "Q2")
}


def relation(v: Mapping[str, Any]) -> str:
    if v["verdict"] == "first_better":
        return f"{v['first_title']} misses fewer unhealthy images than {v['second_title']}"
    if v["verdict"] == "second_better":
        return f"{v['first_title']} misses more unhealthy images than {v['second_title']}"
    if v["verdict"] == NO_VERDICT:
        return f"{v['first_title']} vs {v['second_title']} (numbers as description only)"
    if v["verdict"] == "equivalent":
        return (f"{v['first_title']} and {v['second_title']} miss unhealthy images at rates within "
                f"+-{v['equivalence']['margin']:g} of each other")
    return f"no significant difference in missed unhealthy images between {v['first_title']} and {v['second_title']}"


def verdict_sentence(v: Mapping[str, Any], confidence: float) -> str:
    """One verdict in words, with the interval its own test implies (the verdict table's, `difference_interval`)."""
    lead = ANSWER.get(v["question"], {}).get(v["verdict"])
    if v["leaks_label"]:  # never an answer to the question: an upper bound, flagged first
        lead = f"[{ORACLE}: not a fair comparison, no answer]"
    text = (f"{relation(v)}: FNR {num(v['fnr_first_val']['value'])} vs {num(v['fnr_second_val']['value'])}"
            f"{specificity_clause(v)}, difference {interval(difference_interval(v, confidence), signed=True)}; "
            f"Holm p {pvalue(verdict_p(v, '_holm'))} "
            f"(paired test over {plural(v['replicates'], 'replicate')}; holds in {v['holds']}/{v['replicates']} of "
            f"them alone){verdict_clause(v)}.")
    return f"{lead}: {text}" if lead else text[0].upper() + text[1:]


def verdict_clause(v: Mapping[str, Any]) -> str:
    """'; verdict: <label words>; detectable: |d| >= x' (empty in results written before the four labels)."""
    return f"; verdict: {verdict_words(v)}" if "mde" in v else ""


def specificity_clause(v: Mapping[str, Any]) -> str:
    """The clause ' (test specificity a vs b)': what each side's FNR at the val point was bought with; empty in
    results written before it was computed."""
    if "specificity_first_val" not in v:
        return ""
    return (f" (test specificity {num(v['specificity_first_val']['value'])} vs "
            f"{num(v['specificity_second_val']['value'])})")


def question_lines(results: Mapping[str, Any], question: str) -> list[str]:
    """The first family's (resnet18) verdicts, then every other family's, labelled with it."""
    confidence = results["settings"]["confidence"]
    lines = [verdict_sentence(v, confidence) for v in results["verdicts"] if v["question"] == question]
    for architecture, other in results.get("other_architectures", {}).items():
        lines += [f"[{architecture}] {verdict_sentence(v, confidence)}" for v in other["verdicts"]
                  if v["question"] == question]
    return lines


def deployed_lines(results: Mapping[str, Any]) -> list[str]:
    """The deployed classifier's gate and Q1 verdicts in words (medsr.evaluation.deployed; none without one)."""
    deployed = results.get("deployed")
    if not deployed:
        return []
    gate = deployed["gate"]
    out = [f"[{deployed_family(results)}] Q1 {deployed['conditional']}. Its HR val AUROC {num(gate['hr_val_auroc'])} "
           f"(gate floor {gate['floor']}: {'passed' if gate['passed'] else 'FAILED, no verdict'})"]
    for v in deployed["verdicts"]:
        out.append(f"  {v['first_title']} vs {v['second_title']}: {DEPLOYED_WORDS[v['verdict']]}; FNR "
                   f"{num(v['fnr_first'])} vs {num(v['fnr_second'])} (test specificity {num(v['specificity_first'])} "
                   f"vs {num(v['specificity_second'])}), difference {interval(v['fnr_difference'], signed=True)}; "
                   f"Holm p {pvalue(v['pvalue_holm'])} (per-image randomization test, "
                   f"{v['verdict_test']['resamples']} swaps of the healthy val and unhealthy test images)")
    return out


def agreement_lines(results: Mapping[str, Any]) -> list[str]:
    """With several classifier families: per comparison, whether its verdict holds in every family or only some."""
    if len(results.get("architectures", [])) < 2:
        return []
    lines = [f"Across classifier families ({', '.join(results['architectures'])}):"]
    for a in results["architecture_agreement"]:
        flag = f" [{ORACLE}]" if a["leaks_label"] else ""
        each = ", ".join(f"{arch} {VERDICT_WORDS[w] if w else 'n/a'}" for arch, w in a["verdicts"].items())
        if a["agree"]:
            how = "the same verdict in every family"
        else:
            how = "; ".join(f"{VERDICT_WORDS[w]} only with {', '.join(archs)}" for w, archs in a["specific_to"].items())
            how = how or "differs between families"
        lines.append(f"  {a['id']}{flag}: {how} ({each})")
    return lines


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """Plain-text findings (results JSON "summary" and the stage's log)."""
    lines = []
    if gate_failed(results):
        sentence, reasons = gate_lead(results)
        lines += [sentence] + [f"  {r}" for r in reasons]
    for question in ("Q1", "Q2", "reference"):
        lines.append(f"{question}. {results['questions'][question]}")
        lines += [f"  {s}" for s in question_lines(results, question)] or ["  (no comparison in this run)"]
        if question == "Q1":
            lines += [f"  {s}" for s in deployed_lines(results)]
    lines += agreement_lines(results)
    lines.append(basis(results))
    if results["leaks_label"]:
        lines.append(oracle_warning(results))
    lines += trust_lines(results)
    return lines


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def trust_lines(results: Mapping[str, Any]) -> list[str]:
    """What the SR model invents: intervals, decision stability, class swap, guaranteed-FNR point."""
    trust = results.get("trust")
    if not trust:
        return []
    lines = ["Trust audit (posterior samples; every choice made on val):"]
    for name, e in trust["sets"].items():
        iv, st = e["intervals"], e["stability"]["pooled"]
        if "test" in iv:
            t = iv["test"]
            lines.append(f"  {name}: pixel intervals mean +- {t['lambda']:.2f} std (RCPS, alpha {iv['alpha']}, delta "
                         f"{iv['delta']}, {iv['val_images']} val images): test miss rate {_f(t['realised_risk'])}, "
                         f"mean width {_f(t['mean_width'])}, Spearman(width, |error|) {_f(t['spearman_width_error'])}, "
                         f"AUROC of std for |error| > threshold {_f(t['std_auroc_wrong_pixels'])}")
        else:
            lines.append(f"  {name}: intervals {iv['status']}")
        lines.append(f"  {name}: {e['samples_per_image']} samples per image on {iv['test_images']} test images: "
                     f"unstable share {_f(st['unstable_share'])}, FNR stable {_f(st['fnr_stable'])} / unstable "
                     f"{_f(st['fnr_unstable'])}, false negatives caught by the flag {st['false_negatives_caught']} of "
                     f"{st['false_negatives']} (summed over train seeds)")
        for seed, inj in (e.get("injection") or {}).items():
            sw, nu = inj["swapped"], inj["null"]
            lines.append(
                f"  {name} class swap (LEAKS THE LABEL by design), train seed {seed}: the HR classifier follows "
                f"the injected label on {sw['follows']}/{sw['images']} = {_f(sw['rate'])} "
                f"[{_f(sw['interval'][0])}, {_f(sw['interval'][1])}] (Clopper-Pearson) vs null "
                f"{nu['follows']}/{nu['images']} = {_f(nu['rate'])}"
            )
    for key, arm in trust["crc"].items():
        flag = " (LEAKS THE LABEL)" if arm["leaks_label"] else ""
        lines.append(f"  CRC E[FNR] <= {arm['alpha']}: {key}{flag}: test FNR {_f(arm['test_fnr'])}, specificity "
                     f"{_f(arm['test_specificity'])} (mean over train seeds)")
    return lines


def plural(count: int, word: str) -> str:
    """`1 replicate`, `5 replicates`."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _seed_interval(rule: type[VerdictTest]) -> str:
    return f"; the verdict's FNR difference: {rule.interval_text}" if rule.interval_text else ""


def basis(results: Mapping[str, Any]) -> str:
    """How the verdict table's numbers were computed, in four short sentences."""
    s = results["settings"]
    rule = VERDICT_TESTS[s.get("verdict_rule", "majority")]  # results written before the pooled test: majority
    where = " in more than half of the replicates" if rule.name == "majority" else ""
    return (f"FNR = FN / (FN + TP) on {results['n_test']} paired test images ({results['n_unhealthy']} unhealthy), at "
            f"the threshold reaching val specificity >= {s['val_specificity']} per classifier and image set. "
            f"Intervals: {s['confidence']:.0%} paired bootstrap ({s['bootstrap']} resamples of the test images)"
            f"{_seed_interval(rule)}. Verdict: {rule.summary}. It is Holm-adjusted within each question and "
            f"significant when Holm p < {1 - s['confidence']:.2g}{where}; replicates: "
            f"{plural(len(s['train_seeds']), 'train seed')} x the SR set's sampling seeds.{labels_sentence(s, rule)}")


def labels_sentence(s: Mapping[str, Any], rule: type[VerdictTest]) -> str:
    """The four labels, the minimum detectable effect and what the verdict generalizes over (empty in results
    written before the four labels)."""
    if "equivalence_margin" not in s:
        return ""
    return (f" Labels: first or second lower FNR (significant), else equivalent within +-{s['equivalence_margin']:g} "
            f"(two one-sided tests at level {1 - s['confidence']:.2g}, Schuirmann 1987; only a test with a standard "
            f"error can say it), else inconclusive. Detectable: the smallest absolute FNR difference the verdict's "
            f"test detects with {POWER:.0%} power at {1 - s['confidence']:.2g} / k (k comparisons in its Holm family: "
            f"the strictest Holm step). It generalizes over {', '.join(rule.generalizes_over)}; held fixed: "
            f"{', '.join(rule.held_fixed)}.")


def oracle_warning(results: Mapping[str, Any]) -> str:
    return (
        f"WARNING: {', '.join(results['leaks_label'])} used label-leaking guidance (oracle: the true test "
        "label, swapped: its opposite), so its numbers are not a fair comparison (an upper bound at best); they are "
        "tested in their own Holm family."
    )


def summary_text(results: Mapping[str, Any]) -> str:
    return "\n".join(summary_lines(results))


def summary_rst(results: Mapping[str, Any]) -> str:
    """summary.rst: what the run found in three sentences (`answer_text`, as the README's first screen), then the
    verdict (answers, one table, the forest plot's name), details after; when the learning gate failed, that it did
    and why come before everything."""
    out = []
    if gate_failed(results):
        sentence, reasons = gate_lead(results)
        out += [f"**{sentence}**", ""] + [f"- {r}" for r in reasons] + [""]
    out += [answer_text(results), "", "Verdict", "=======", ""]
    for question in ("Q1", "Q2"):
        out += [f"**{question}. {results['questions'][question]}**", ""]
        out += [f"- {rst_text(s)}" for s in question_lines(results, question)] or ["- (no comparison in this run)"]
        if question == "Q1" and results.get("deployed"):
            out += [f"- {s.strip()}" for s in deployed_lines(results)]
        out.append("")
    agreement = agreement_lines(results)
    if agreement:
        out += [agreement[0], ""] + [f"- {line.strip()}" for line in agreement[1:]] + [""]
    out += [basis(results), ""]
    if results["leaks_label"]:
        out += [f"**{oracle_warning(results)}**", ""]
    out += [rst_table(VERDICT_HEADER, verdict_rows(results), "Verdict per comparison (FNR at the val operating point)"),
            "The forest plot ``fnr_forest.png`` shows the same differences with their intervals; "
            f"``{'``, ``'.join(ROC_FIGURES.values())}`` show each question's ROC curves and where on them the verdict "
            "is read (the val operating point, in the high-specificity tail).", "",
            "Details", "=======", "", "Reference comparisons:", ""]
    out += [f"- {rst_text(s)}" for s in question_lines(results, "reference")] + [""]
    out += [rst_table(ARM_HEADER, arm_rows(results), "FNR per image set and classifier (pooled, then per train seed)"),
            secondary_text(results), ""]
    if results.get("trust"):
        out += ["Trust audit", "===========", "", "::", ""] + [f"  {line}" for line in trust_lines(results)] + [""]
    return "\n".join(out)


def rst_text(text: str) -> str:
    """`text` with its |...| (the detectable |d|) escaped: reStructuredText reads them as substitutions."""
    return text.replace("|", "\\|")


def secondary_text(results: Mapping[str, Any]) -> str:
    lines = ["Secondary tests (median over replicates): all-images McNemar Holm p, unhealthy-only McNemar Holm p at "
             "the 0.5 threshold, paired DeLong test of AUROC; partial AUROC over the tail FPR <= "
             f"{MAX_FPR} (McClish-standardized, mean over replicates, paired interval of the difference):", ""]
    for v in results["verdicts"]:
        sec = v["secondary"]
        lines.append(f"- {v['question']}, {v['first_title']} vs {v['second_title']}: all images "
                     f"{pvalue(sec['all_images_pvalue_holm_median'])}; at 0.5 "
                     f"{pvalue(sec['unhealthy_at_0.5_pvalue_holm_median'])} (FNR difference at 0.5 "
                     f"{interval(v['fnr_difference_0.5'], signed=True)}); AUROC difference "
                     f"{num(sec['auroc_difference_mean'])}, DeLong p {pvalue(sec['delong_pvalue_median'])}"
                     f"{pauc_clause(v)}")
    return "\n".join(lines) + "\n"


def pauc_clause(v: Mapping[str, Any]) -> str:
    if "pauc_difference" not in v:  # results written before it was computed
        return ""
    return (f"; pAUC {num(v['pauc_first']['value'])} vs {num(v['pauc_second']['value'])}, difference "
            f"{interval(v['pauc_difference'], signed=True)}")
