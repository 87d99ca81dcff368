"""Choose a classifier recipe among runs of benchmarks/classifier_recipe.py, on val, by a criterion fixed here
before the runs were made.

Criterion: the kept epoch's val AUROC with precise BatchNorm (what train-classifier keeps), median over the
training seeds; the highest median wins, and a recipe with fewer epochs (cheaper) wins over it when its median is
within TOLERANCE of the highest. AUROC and not accuracy: a near-chance classifier's accuracy at the 0.5 threshold
says little, and the evaluation reads every classifier at a threshold chosen on val anyway.

    .venv/bin/python benchmarks/recipe_choice.py --label scratch results/benchmarks/classifier_recipe_bicubic.json \
        --label finetune results/benchmarks/classifier_recipe_bicubic_finetune.json ... \
        --out results/benchmarks/bicubic_recipe.json

Prints a table (per seed: val AUROC / accuracy of each recipe) and writes the JSON the README's block is made of.

`--converged` (the early-stopping recipe, fixed before its runs): a recipe is eligible only when every seed's run
converged (`stopping.converged`: its val loss had stopped falling before the maximum epochs, which the learning
gate of `medsr evaluate` requires); among the eligible, the criterion above, with the mean epochs actually run in
place of the maximum as the cost; when no recipe is eligible, the one with the most converged seeds (then the
criterion above) is reported as chosen with `eligible: []`, and the gate will say so on the default data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medsr.io import read_json, write_json

TOLERANCE = 0.02  # median val AUROC a cheaper recipe may give up
VARIANT = "precise"  # train_classifier.precise_bn: true


def choose(recipes: dict[str, dict], converged: bool = False) -> dict:
    """Per recipe: epochs, init, per-seed val AUROC and accuracy, their medians; and the chosen recipe's label.
    converged: only recipes whose every seed converged are eligible, cost = mean epochs run (see the docstring)."""
    summary = {}
    for label, data in recipes.items():
        best = {run["seed"]: run["best"][VARIANT] for run in data["runs"]}
        stops = [b.get("stopping") or {} for b in best.values()]
        summary[label] = {
            "patience": data["params"].get("patience", 0), "lr_schedule": data["params"].get("lr_schedule"),
            "converged_seeds": sum(bool(s.get("converged")) for s in stops),
            "mean_epochs_run": float(np.mean([s.get("epochs_run", data["params"]["epochs"]) for s in stops])),
            "epochs": data["params"]["epochs"], "learning_rate": data["params"]["learning_rate"],
            "init": data.get("init_images"), "images": data["images"],
            "val_auroc": {s: b["val_auroc"] for s, b in best.items()},
            "val_acc": {s: b["val_acc"] for s, b in best.items()},
            "median_val_auroc": float(np.median([b["val_auroc"] for b in best.values()])),
            "median_val_acc": float(np.median([b["val_acc"] for b in best.values()])),
        }
    seeds = [sorted(s["val_auroc"]) for s in summary.values()]
    if any(s != seeds[0] for s in seeds):
        raise SystemExit(f"recipe_choice: the runs cover different seeds: {seeds}")
    pool, cost, eligible = list(summary), "epochs", list(summary)
    if converged:
        eligible = [label for label, s in summary.items() if s["converged_seeds"] == len(seeds[0])]
        most = max(s["converged_seeds"] for s in summary.values())
        pool = eligible or [label for label, s in summary.items() if s["converged_seeds"] == most]
        cost = "mean_epochs_run"
    top = max(summary[label]["median_val_auroc"] for label in pool)
    near = [label for label in pool if summary[label]["median_val_auroc"] >= top - TOLERANCE]
    chosen = min(near, key=lambda label: (summary[label][cost], -summary[label]["median_val_auroc"]))
    criterion = (f"highest median over seeds of the kept epoch's val AUROC ({VARIANT} BN); fewer epochs when within "
                 f"{TOLERANCE} of it")
    if converged:
        criterion = (f"every seed converged (early stopping before the maximum); then {criterion} (epochs: the mean "
                     f"run)")
    return {"criterion": criterion, "tolerance": TOLERANCE, "seeds": seeds[0], "recipes": summary, "chosen": chosen,
            "eligible": eligible}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", nargs=2, action="append", metavar=("LABEL", "JSON"), required=True,
                        help="a recipe's name and its classifier_recipe.py JSON (repeat)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/bicubic_recipe.json"))
    parser.add_argument("--converged", action="store_true", help="only recipes whose every seed converged")
    args = parser.parse_args()
    recipes = {label: read_json(Path(path)) for label, path in args.label}
    result = choose(recipes, converged=args.converged)
    result["sources"] = {label: path for label, path in args.label}
    result["machine"] = next(iter(recipes.values())).get("machine")
    print(f"{'seed':>4} " + " ".join(f"{label:>22}" for label in recipes))
    for seed in result["seeds"]:
        print(f"{seed:>4} " + " ".join(f"{s['val_auroc'][seed]:>13.3f} / {s['val_acc'][seed]:.3f}"
                                       for s in result["recipes"].values()))
    print("median " + " ".join(f"{s['median_val_auroc']:>11.3f} / {s['median_val_acc']:.3f}"
                               for s in result["recipes"].values()))
    print(f"chosen: {result['chosen']} ({result['criterion']})")
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
