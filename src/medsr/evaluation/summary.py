"""A short generated text of the findings, for metrics.json and the Snakemake report.

"Significant" means the Holm-adjusted primary McNemar p-value is below 1 - confidence; every
sentence carries its interval so a reader sees the effect size, not only the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VARIANT_NAMES = {"exact": "exact binomial McNemar", "chi2_corrected": "McNemar chi-square with continuity correction"}


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _interval(est: Mapping[str, Any], digits: int = 3) -> str:
    return f"{_num(est['value'], digits)} [{_num(est['ci_low'], digits)}, {_num(est['ci_high'], digits)}]"


def comparison_sentence(comp: Mapping[str, Any], alpha: float) -> str:
    first, second = comp["first"], comp["second"]
    test = comp["mcnemar"]
    table = comp["table"]
    significant = test["pvalue_holm"] < alpha
    if significant and test["favours"] != "neither":
        better = first if test["favours"] == "first" else second
        verdict = f"differ significantly: {better} is correct more often"
    else:
        verdict = "do not differ significantly"
    fnr_test = comp["unhealthy_only"]["mcnemar"]
    fnr_verdict = "significant" if fnr_test["pvalue_holm"] < alpha else "not significant"
    return (f"{first} vs {second}: {verdict} (b = {table['b']}, c = {table['c']}, "
            f"{VARIANT_NAMES[test['primary']]} p = {_p(test['pvalue'])}, Holm-adjusted {_p(test['pvalue_holm'])}); "
            f"FNR difference {first} - {second} = {_interval(comp['fnr_difference'])}, "
            f"McNemar on unhealthy images p = {_p(fnr_test['pvalue'])} ({fnr_verdict} after Holm).")


def summary_lines(metrics: Mapping[str, Any]) -> list[str]:
    settings = metrics["settings"]
    alpha = 1.0 - settings["confidence"]
    level = f"{settings['confidence']:.0%}"
    lines = [f"{metrics['n_test']} paired test images ({metrics['n_unhealthy']} unhealthy = positive). "
             f"FNR = FN / (FN + TP) with {level} bootstrap percentile intervals ({settings['bootstrap']} resamples):"]
    for name, entry in metrics["sets"].items():
        flag = " [ORACLE: leaks the true label]" if entry["leaks_label"] else ""
        lines.append(f"  {name}: FNR {_interval(entry['fnr'])}, accuracy {_interval(entry['accuracy'])}{flag}")
    lines.append(f"Paired tests (significance: Holm-adjusted p < {alpha:.2g}):")
    for comp in metrics["comparisons"].values():
        lines.append("  " + comparison_sentence(comp, alpha))
    for guidance, spread in metrics["seed_spread"].items():
        fnr = spread["fnr"]
        p = spread["mcnemar_pvalue_vs_bicubic"]
        lines.append(f"SR guidance {guidance} over {fnr['n']} seed(s): FNR mean {_num(fnr['mean'])} "
                     f"(std {_num(fnr['std'])}, min {_num(fnr['min'])}, max {_num(fnr['max'])}); "
                     f"McNemar p vs bicubic min {_p(p['min'])}, max {_p(p['max'])}.")
    if metrics["leaks_label"]:
        lines.append(f"WARNING: {', '.join(metrics['leaks_label'])} used oracle guidance: the generator was given "
                     "the true test label, so its accuracy and FNR are not a fair comparison (an upper bound at best).")
    return lines


def summary_text(metrics: Mapping[str, Any]) -> str:
    return "\n".join(summary_lines(metrics))


def summary_rst(metrics: Mapping[str, Any]) -> str:
    lines = summary_lines(metrics)
    out = ["Findings", "========", "", lines[0], ""]
    for line in lines[1:]:
        if line.startswith("  "):
            out.append(f"- {line.strip()}")
        else:
            out.extend(["", line, ""])
    return "\n".join(out).replace("\n\n\n", "\n\n") + "\n"
