"""The DVC metrics file: a few headline numbers with short keys (`dvc exp show` stays readable).

Keys are short so that `dvc exp show --only-changed` fits a 200-column terminal: an arm is its set group through
the HR-trained classifier (`sr_null`), or with `_m` through the classifier trained on its own kind of images
(`bicubic_m`: the matched-domain baseline). fnr.<arm> (pooled FNR at the val operating point), auroc.<arm>,
acc.<arm> (pooled accuracy at the val operating point), psnr.<set group>, ssim.<set group>, p.q1_<arm> /
p.q2_<arm> (median over replicates of the Holm-adjusted unhealthy-only McNemar p). Label-leaking (oracle) entries
carry the prefix ORACLE_ and only their FNR is kept. If a large run still exceeds MAX_NUMBERS, whole blocks are dropped in
the order of DROP_ORDER (listed under "omitted"); the full results JSON holds everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_NUMBERS = 40
DROP_ORDER = ("acc", "ssim", "auroc")


def arm_key(arm_group: str) -> str:
    """`sr_null@hr` -> `sr_null`; `bicubic@bicubic` -> `bicubic_m` (through its own domain's classifier)."""
    group, classifier = arm_group.split("@")
    return group if classifier == "hr" else f"{group}_m"


def _key(name: str, leaks: bool) -> str:
    name = arm_key(name) if "@" in name else name
    return f"ORACLE_{name}" if leaks else name


def headline(results: Mapping[str, Any]) -> dict[str, Any]:
    blocks: dict[str, dict[str, float | None]] = {"fnr": {}, "p": {}, "auroc": {}, "acc": {}, "psnr": {},
                                                  "ssim": {}}
    for key, group in results["arm_groups"].items():
        blocks["fnr"][_key(key, group["leaks_label"])] = group["pooled"]["fnr_val"]["value"]
        if not group["leaks_label"]:
            blocks["auroc"][arm_key(key)] = group["pooled"]["auroc"]["value"]
            blocks["acc"][arm_key(key)] = group["pooled"]["accuracy_val"]["value"]
    for name, group in results["set_groups"].items():
        if not group["leaks_label"]:
            blocks["psnr"][name], blocks["ssim"][name] = group["psnr"], group["ssim"]
    for v in results["verdicts"]:
        if v["question"] in ("Q1", "Q2") and not v["leaks_label"]:
            blocks["p"][f"{v['question'].lower()}_{arm_key(v['first'])}"] = v["pvalue_holm_median"]
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
