"""The DVC metrics file: a few headline numbers with short keys (`dvc exp show` stays readable).

Keys: fnr.<set group>@<classifier> (pooled FNR at the val operating point), auroc.*, acc.* (pooled accuracy at
the val operating point), psnr.<set group>, ssim.<set group>, holm_p.q1_<group> / holm_p.q2_<group>@<classifier>
(median over replicates of the Holm-adjusted unhealthy-only McNemar p). Label-leaking (oracle) entries carry the
prefix ORACLE_ and only their FNR is kept. If a large run still exceeds MAX_NUMBERS, whole blocks are dropped in
the order of DROP_ORDER (listed under "omitted"); the full results JSON holds everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_NUMBERS = 40
DROP_ORDER = ("acc", "ssim", "auroc")


def _key(name: str, leaks: bool) -> str:
    return f"ORACLE_{name}" if leaks else name


def headline(results: Mapping[str, Any]) -> dict[str, Any]:
    blocks: dict[str, dict[str, float | None]] = {"fnr": {}, "holm_p": {}, "auroc": {}, "acc": {}, "psnr": {},
                                                  "ssim": {}}
    for key, group in results["arm_groups"].items():
        blocks["fnr"][_key(key, group["leaks_label"])] = group["pooled"]["fnr_val"]["value"]
        if not group["leaks_label"]:
            blocks["auroc"][key] = group["pooled"]["auroc"]["value"]
            blocks["acc"][key] = group["pooled"]["accuracy_val"]["value"]
    for name, group in results["set_groups"].items():
        if not group["leaks_label"]:
            blocks["psnr"][name], blocks["ssim"][name] = group["psnr"], group["ssim"]
    for v in results["verdicts"]:
        if v["question"] in ("Q1", "Q2") and not v["leaks_label"]:
            first = v["first"].split("@")[0] if v["question"] == "Q1" else v["first"]
            blocks["holm_p"][f"{v['question'].lower()}_{first}"] = v["pvalue_holm_median"]
    omitted = []
    for name in DROP_ORDER:
        if sum(len(b) for b in blocks.values()) <= MAX_NUMBERS:
            break
        omitted.append(name)
        del blocks[name]
    out: dict[str, Any] = {k: v for k, v in blocks.items() if v}
    if omitted:
        out["omitted"] = ",".join(omitted)
    return out


def count_numbers(metrics: Mapping[str, Any]) -> int:
    return sum(count_numbers(v) if isinstance(v, Mapping) else isinstance(v, (int, float)) or v is None
               for v in metrics.values())
