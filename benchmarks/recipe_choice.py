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
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medsr.io import read_json, write_json

TOLERANCE = 0.02  # median val AUROC a cheaper recipe may give up
VARIANT = "precise"  # train_classifier.precise_bn: true


def choose(recipes: dict[str, dict]) -> dict:
    """Per recipe: epochs, init, per-seed val AUROC and accuracy, their medians; and the chosen recipe's label."""
    summary = {}
    for label, data in recipes.items():
        best = {run["seed"]: run["best"][VARIANT] for run in data["runs"]}
        summary[label] = {
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
    top = max(s["median_val_auroc"] for s in summary.values())
    near = [label for label, s in summary.items() if s["median_val_auroc"] >= top - TOLERANCE]
    chosen = min(near, key=lambda label: (summary[label]["epochs"], -summary[label]["median_val_auroc"]))
    return {"criterion": f"highest median over seeds of the kept epoch's val AUROC ({VARIANT} BN); fewer epochs "
                         f"when within {TOLERANCE} of it", "tolerance": TOLERANCE, "seeds": seeds[0],
            "recipes": summary, "chosen": chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", nargs=2, action="append", metavar=("LABEL", "JSON"), required=True,
                        help="a recipe's name and its classifier_recipe.py JSON (repeat)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/bicubic_recipe.json"))
    args = parser.parse_args()
    recipes = {label: read_json(Path(path)) for label, path in args.label}
    result = choose(recipes)
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
