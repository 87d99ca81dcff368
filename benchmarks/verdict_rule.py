"""Which verdict rule gives the same verdicts under other training seeds? Decided on the val split.

Two finished runs of one commit and data that differ only in `evaluate.train_seeds` (the default run and the
seed check of the README: configs/seed_check.yaml). For each rule of `evaluate.verdict_rule` the whole analysis of
`medsr evaluate` (operating points on val, the declared comparisons, Holm families, verdicts) is run with the val
images in the place of the test images, and the verdicts of the two runs are compared one by one.

Only the val rows of each run's predictions.csv are read (`read_predictions(..., splits=("val",))`); nothing of
the test split is used. The val operating point is chosen on val's healthy images and the verdicts rest on its
unhealthy images, so both are measured on the same images here: the rule comparison is about agreement between
seed sets, not about the values themselves.

Declared before the numbers were seen: the default is the rule with more fair verdicts the same in both runs; on a
tie, "pooled" (one test over every replicate uses all of them; the majority of per-replicate tests reaches at
most the power of its weakest majority).

    .venv/bin/python benchmarks/verdict_rule.py RUN_A RUN_B --second-config configs/seed_check.yaml

Prints a table and writes results/benchmarks/verdict_rule.json.
"""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

from medsr.core.config import classifier_domains, deep_merge, load_raw, params_from_dict, to_jsonable
from medsr.core.parameters import VerdictRule
from medsr.evaluation.comparisons import arms
from medsr.evaluation.compute import classifier_analysis
from medsr.evaluation.metrics import bootstrap_weights
from medsr.data.image_sets import build
from medsr.core.io import write_json
from medsr.classifier.predictions import read_predictions
from medsr.report.agreement import verdict_agreement
from medsr.report.benchmark_tables import verdict_rule_markdown

RULES: tuple[str, ...] = VerdictRule.__args__  # type: ignore[attr-defined]


def val_verdicts(run: Path, overlays: list[Path], rule: str) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """id -> verdict of every comparison of `run`'s first classifier family, on its val images; `overlays`: the
    run's --configfile overlays, relative to it."""
    raw = deep_merge(
        load_raw([run / "params.yaml", *(run / o for o in overlays)]), {"evaluate": {"verdict_rule": rule}}
    )
    params = params_from_dict(raw, str(run / "params.yaml"))  # runs made before verdict_rule existed read too
    evaluate = params.evaluate
    sets = build(hr=run / "data/hr", bicubic=run / "data/bicubic", regression=run / "results/regression",
                 sr=run / "results/sr", guidance=params.generate.guidance, sampling_seeds=evaluate.sampling_seeds,
                 external={}, sr_classifier=bool(evaluate.sr_classifier))
    classifiers = classifier_domains(evaluate)
    architecture = params.train_classifier.architectures[0]
    scores = read_predictions(run / "results/predictions.csv", architectures=params.train_classifier.architectures,
                              arms=arms(sets, classifiers), train_seeds=list(evaluate.train_seeds),
                              splits=("val",))[architecture]
    # the analysis reads its verdict images under the split name "test": hand it the val images there
    scores = {**scores, **{(c, seed, name, "test"): v for (c, seed, name, _), v in scores.items()}}
    n_val = len(scores[("hr", evaluate.train_seeds[0], sets[0].name, "val")].ids)
    weights = bootstrap_weights(n_val, evaluate.bootstrap, evaluate.bootstrap_seed, None)
    analysis = classifier_analysis(evaluate, sets, scores, classifiers, weights, architecture)
    return {v["id"]: v for v in analysis["verdicts"]}, list(evaluate.train_seeds)


def compare_rules(first: Path, second: Path, second_overlays: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "verdict_rule", "split": "val", "runs": {"a": str(first), "b": str(second)},
                           "machine": {"platform": platform.platform(), "torch": version("torch")}, "rules": {}}
    for rule in RULES:
        (a, seeds_a), (b, seeds_b) = val_verdicts(first, [], rule), val_verdicts(second, second_overlays, rule)
        out["train_seeds"] = {"a": seeds_a, "b": seeds_b}
        out["rules"][rule] = verdict_agreement(a.values(), b.values())
    same = {rule: out["rules"][rule]["fair_verdicts_same"] for rule in RULES}
    out["chosen"] = max(RULES, key=lambda rule: (same[rule], rule == "pooled"))  # tie: pooled (declared above)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="a finished run (its params.yaml, data/, results/)")
    parser.add_argument("second", type=Path, help="the same run with other evaluate.train_seeds")
    parser.add_argument("--second-config", type=Path, action="append", default=[],
                        help="an overlay the second run was made with, relative to it (configs/seed_check.yaml)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/verdict_rule.json"))
    args = parser.parse_args()
    out = to_jsonable(compare_rules(args.first, args.second, args.second_config))
    print(verdict_rule_markdown(out))
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
