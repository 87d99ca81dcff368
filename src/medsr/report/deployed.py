"""The deployed classifier's Q1 verdicts (medsr.evaluation.deployed) in the verdict table and the summary, beside
the trained classifiers' ones and labelled as conditional on that one classifier."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsr.evaluation.gate import NO_VERDICT

WORDS = {"first_better": "first lower FNR", "second_better": "first higher FNR",
         "not_significant": "not significant", NO_VERDICT: "no verdict (the deployed classifier did not pass its gate)"}
ONE_CLASSIFIER = "n/a (one classifier)"


def family(results: Mapping[str, Any]) -> str:
    """The verdict table's classifier-family cell of the deployed classifier's rows (their "holds in" cell says
    that one classifier is all there is: ONE_CLASSIFIER)."""
    return f"deployed: {Path(results['deployed']['classifier']['file']).name}"


def rows(results: Mapping[str, Any], num, pvalue, interval, oracle: str) -> list[list[str]]:
    """The verdict table's rows of the deployed classifier (the table's cell formatters passed in)."""
    out = []
    for v in results.get("deployed", {}).get("verdicts", []):
        flag = f" [{oracle}]" if v["leaks_label"] else ""
        out.append(["Q1", family(results), f"{v['first_title']} vs {v['second_title']}{flag}", num(v["fnr_first"]),
                    num(v["fnr_second"]), num(v["specificity_first"]), num(v["specificity_second"]),
                    interval(v["fnr_difference"], signed=True), pvalue(v["pvalue"]), pvalue(v["pvalue_holm"]),
                    ONE_CLASSIFIER, "n/a", WORDS[v["verdict"]]])
    return out


def lines(results: Mapping[str, Any], num, pvalue, interval) -> list[str]:
    """The summary's sentences on the deployed classifier (empty without one)."""
    deployed = results.get("deployed")
    if not deployed:
        return []
    gate = deployed["gate"]
    head = (f"[{family(results)}] Q1 {deployed['conditional']}. Its HR val AUROC {num(gate['hr_val_auroc'])} "
            f"(gate floor {gate['floor']}: {'passed' if gate['passed'] else 'FAILED, no verdict'})")
    out = [head]
    for v in deployed["verdicts"]:
        out.append(f"  {v['first_title']} vs {v['second_title']}: {WORDS[v['verdict']]}; FNR {num(v['fnr_first'])} "
                   f"vs {num(v['fnr_second'])} (test specificity {num(v['specificity_first'])} vs "
                   f"{num(v['specificity_second'])}), difference {interval(v['fnr_difference'], signed=True)}; "
                   f"Holm p {pvalue(v['pvalue_holm'])} (per-image randomization test, "
                   f"{v['verdict_test']['resamples']} swaps of the healthy val and unhealthy test images)")
    return out
