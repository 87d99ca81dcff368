"""The DVC metrics file: a few headline numbers with short keys (`dvc exp show` stays readable).

Keys are short so that `dvc exp show --only-changed` fits a 200-column terminal: an arm is its set group through
the HR-trained classifier (`sr_null`), or with `_m` through the classifier trained on its own kind of images
(`bicubic_m`: the matched-domain baseline). fnr.<arm> (pooled FNR at the val operating point), spec.<arm> (pooled
test specificity at the same point: what the FNR was bought with), auroc.<arm>,
acc.<arm> (pooled accuracy at the val operating point), psnr.<set group>, ssim.<set group>, p.q1_<arm> /
p.q2_<arm> (the Holm-adjusted p of the verdict's FNR test: evaluate.verdict_rule). Label-leaking (oracle) entries
carry the prefix ORACLE_ and only their FNR and specificity are kept. gate: "passed", or "no_verdict" when the learning
gate failed (medsr.evaluation.gate: the p values are then description only).
Trust audit: crc_fnr.<set group> / crc_spec.<set group> (test FNR and specificity at the conformal-risk-
control threshold chosen on val, mean over train seeds and sampling seeds; hr and SR through the HR classifier,
bicubic through its matched one); trust.<key> for the first null-guided SR set with posterior samples:
interval_risk, interval_width, rho_width_error, std_auroc, unstable_share, fn_caught (summed over train seeds),
and ORACLE_injection / ORACLE_injection_null (the label-injection rate of the swapped draw and the null draw's
share of the same class: the swapped draw leaks the label by construction). deployed.fnr_<arm> / deployed.p_<arm>:
the user's own classifier's Q1 arms and Holm p (only with evaluate.deployed; outside the cap). If a large run still
exceeds MAX_NUMBERS, whole blocks are dropped in the order of DROP_ORDER (listed under "omitted"); the full results
JSON holds everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medsr.evaluation.comparisons import Arm
from medsr.evaluation.gate import NO_VERDICT

MAX_NUMBERS = 45  # the default run's 38 numbers and one specificity per arm
DROP_ORDER = ("acc", "ssim", "auroc", "crc_spec", "trust", "spec")


def arm_key(arm_group: str) -> str:
    """`sr_null@hr` -> `sr_null`; `bicubic@bicubic` -> `bicubic_m` (through its own domain's classifier)."""
    group, classifier = Arm.parse(arm_group)
    return group if classifier == "hr" else f"{group}_m"


def _key(name: str, leaks: bool) -> str:
    name = arm_key(name) if Arm.SEP in name else name
    return f"ORACLE_{name}" if leaks else name


def headline(results: Mapping[str, Any]) -> dict[str, Any]:
    blocks: dict[str, dict[str, float | None]] = {"fnr": {}, "spec": {}, "p": {}, "auroc": {}, "acc": {},
                                                  "psnr": {}, "ssim": {}}
    for key, group in results["arm_groups"].items():
        blocks["fnr"][_key(key, group["leaks_label"])] = group["pooled"]["fnr_val"]["value"]
        blocks["spec"][_key(key, group["leaks_label"])] = group["pooled"]["specificity_val"]["value"]
        if not group["leaks_label"]:
            blocks["auroc"][arm_key(key)] = group["pooled"]["auroc"]["value"]
            blocks["acc"][arm_key(key)] = group["pooled"]["accuracy_val"]["value"]
    for name, group in results["set_groups"].items():
        if not group["leaks_label"]:
            blocks["psnr"][name], blocks["ssim"][name] = group["psnr"], group["ssim"]
    for v in results["verdicts"]:
        if v["question"] in ("Q1", "Q2") and not v["leaks_label"]:
            blocks["p"][f"{v['question'].lower()}_{arm_key(v['first'])}"] = v["pvalue_holm"]
    blocks.update(trust_blocks(results.get("trust")))
    omitted = []
    for name in DROP_ORDER:
        if sum(len(b) for b in blocks.values()) <= MAX_NUMBERS:
            break
        if name in blocks:  # crc_spec and trust exist only with a trust audit
            omitted.append(name)
            del blocks[name]
    out: dict[str, Any] = {k: v for k, v in blocks.items() if v}
    if "gate" in results:  # a word, not a number (outside the cap): "passed" | "no_verdict"
        out = {"gate": "passed" if results["gate"]["passed"] else NO_VERDICT, **out}
    if results.get("deployed"):
        out["deployed"] = deployed_block(results["deployed"])
    if omitted:
        out["omitted"] = ",".join(omitted)
    return out


def deployed_block(deployed: Mapping[str, Any]) -> dict[str, Any]:
    """The deployed classifier's numbers (only with evaluate.deployed): fnr_<arm> of each Q1 arm through it, and
    p_<arm>, the Holm-adjusted p of its Q1 verdict, as `deployed.fnr_sr_null`, `deployed.p_sr_null`."""
    out: dict[str, Any] = {}
    for v in deployed["verdicts"]:
        first, second = (_key(Arm.parse(v[side]).set, v["leaks_label"] and side == "first")
                         for side in ("first", "second"))
        out[f"fnr_{first}"], out[f"fnr_{second}"] = v["fnr_first"], v["fnr_second"]
        if not v["leaks_label"]:
            out[f"p_{first}"] = v["pvalue_holm"]
    return out


def count_numbers(metrics: Mapping[str, Any]) -> int:
    return sum(count_numbers(v) if isinstance(v, Mapping) else isinstance(v, (int, float)) or v is None
               for v in metrics.values())


def trust_blocks(trust: Mapping[str, Any] | None) -> dict[str, dict[str, float | None]]:
    """crc_fnr, crc_spec and trust blocks (see the module docstring); empty without a trust audit."""
    if not trust:
        return {}
    fnr: dict[str, list] = {}
    spec: dict[str, list] = {}
    for arm in trust["crc"].values():
        group = arm["set"].rsplit("_seed", 1)[0] if arm["set"].startswith("sr_") else arm["set"]
        if arm["leaks_label"]:
            continue
        fnr.setdefault(group, []).append(arm["test_fnr"])
        spec.setdefault(group, []).append(arm["test_specificity"])

    def mean(values):
        kept = [v for v in values if v is not None]
        return sum(kept) / len(kept) if kept else None

    out = {"crc_fnr": {k: mean(v) for k, v in fnr.items()}, "crc_spec": {k: mean(v) for k, v in spec.items()}}
    sets = trust["sets"]
    first = next((n for n, e in sets.items() if e["guidance"] == "null"), next(iter(sets), None))
    if first is not None:
        entry = sets[first]
        test = entry["intervals"].get("test") or {}
        block = {"interval_risk": test.get("realised_risk"), "interval_width": test.get("mean_width"),
                 "rho_width_error": test.get("spearman_width_error"),
                 "std_auroc": test.get("std_auroc_wrong_pixels"),
                 "unstable_share": entry["stability"]["pooled"]["unstable_share"],
                 "fn_caught": entry["stability"]["pooled"]["false_negatives_caught"]}
        if entry.get("injection"):
            seed = next(iter(entry["injection"]))
            block["ORACLE_injection"] = entry["injection"][seed]["swapped"]["rate"]
            block["ORACLE_injection_null"] = entry["injection"][seed]["null"]["rate"]
        out["trust"] = block
    return out
