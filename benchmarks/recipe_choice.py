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

`--replay DOMAIN JSON` (repeat, one classifier_recipe.py run per domain whose every seed trained every epoch to its
maximum, no early stopping in the run itself): the early-stopping rule, chosen on val by a criterion fixed here
before its runs (2026-12-05; the run that prompted it: the default run's bicubic fine-tune of seed 1 stopped after 3
epochs keeping epoch 1 at val AUROC 0.49, its val loss flat near chance while AUROC rises slowly on these images).
Candidates: every (monitor, patience, min_epochs) of `--monitors` x `--patience` x `--min-epochs`, each replayed
exactly on the recorded per-epoch val values of the precise-BN variant (the training stream does not depend on the
stop: `medsr.classifier.stopping.trained_epochs`). Criterion: (1) eligible: every seed of every domain converged; if
none is, those with the most converged runs; (2) per domain, the mean over seeds of the kept epoch's val AUROC (the
mean, not the median: a seed left at chance must cost); a candidate is near when that mean is within TOLERANCE of the
eligible best in every domain; (3) among the near, the fewest epochs run on average over every run (the cost),
ties to the earlier candidate in the order given (list today's rule first).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medsr.core.io import read_json, write_json
from medsr.classifier.stopping import HIGHER_IS_BETTER, stopping, trained_epochs

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


def replay(domains: dict[str, dict], monitors: list[str], patiences: list[int], min_epochs: list[int]) -> dict:
    """The early-stopping rule chosen on the recorded val curves of `domains` (label -> classifier_recipe.py JSON),
    by the `--replay` criterion of the module docstring."""
    candidates = {}
    for monitor in monitors:
        for patience in patiences:
            for least in min_epochs:
                label = f"{monitor}, patience {patience}, min_epochs {least}"
                per_domain = {}
                for domain, data in domains.items():
                    maximum = data["params"]["epochs"]
                    runs = {}
                    for run in data["runs"]:
                        if len(run["epochs"]) != maximum:
                            raise SystemExit(f"recipe_choice --replay: {domain} seed {run['seed']} has "
                                             f"{len(run['epochs'])} of {maximum} epochs")
                        values = [e[VARIANT][monitor] for e in run["epochs"]]
                        trained = trained_epochs(values, patience, least, monitor)
                        stop = stopping(trained, patience, maximum, monitor)
                        kept = run["epochs"][stop.best_epoch - 1][VARIANT]
                        runs[str(run["seed"])] = {**stop.as_dict(), "val_auroc": kept["val_auroc"],
                                                  "val_acc": kept["val_acc"], "val_loss": kept["val_loss"]}
                    per_domain[domain] = {
                        "max_epochs": maximum, "runs": runs,
                        "converged_seeds": sum(r["converged"] for r in runs.values()),
                        "mean_val_auroc": float(np.mean([r["val_auroc"] for r in runs.values()])),
                        "worst_val_auroc": float(min(r["val_auroc"] for r in runs.values())),
                        "mean_epochs_run": float(np.mean([r["epochs_run"] for r in runs.values()])),
                    }
                all_runs = [r for d in per_domain.values() for r in d["runs"].values()]
                candidates[label] = {"monitor": monitor, "patience": patience, "min_epochs": least,
                                     "domains": per_domain,
                                     "converged_runs": sum(r["converged"] for r in all_runs), "runs": len(all_runs),
                                     "mean_epochs_run": float(np.mean([r["epochs_run"] for r in all_runs]))}
    eligible = [label for label, c in candidates.items() if c["converged_runs"] == c["runs"]]
    most = max(c["converged_runs"] for c in candidates.values())
    pool = eligible or [label for label, c in candidates.items() if c["converged_runs"] == most]
    best = {d: max(candidates[label]["domains"][d]["mean_val_auroc"] for label in pool) for d in domains}
    near = [label for label in pool
            if all(candidates[label]["domains"][d]["mean_val_auroc"] >= best[d] - TOLERANCE for d in domains)]
    chosen = min(near, key=lambda label: candidates[label]["mean_epochs_run"])  # min keeps the first of ties
    return {"criterion": ("every run of every domain converged (else the most converged runs); then the mean over "
                          f"seeds of the kept epoch's val AUROC ({VARIANT} BN) within {TOLERANCE} of the best in "
                          "every domain; then the fewest epochs run on average, ties to the earlier candidate"),
            "tolerance": TOLERANCE, "candidates": candidates, "eligible": eligible, "best_mean_val_auroc": best,
            "near": near, "chosen": chosen}


def main_replay(args: argparse.Namespace) -> None:
    domains = {domain: read_json(Path(path)) for domain, path in args.replay}
    result = replay(domains, args.monitors, args.patience, args.min_epochs)
    result["sources"] = {domain: path for domain, path in args.replay}
    result["machine"] = next(iter(domains.values())).get("machine")
    header = " ".join(f"{d + ' AUROC mean/worst':>24} {d + ' epochs':>12}" for d in domains)
    print(f"{'candidate':<44} {'converged':>9} {header}")
    for label, c in result["candidates"].items():
        cells = " ".join(f"{c['domains'][d]['mean_val_auroc']:>15.3f} / {c['domains'][d]['worst_val_auroc']:.3f} "
                         f"{c['domains'][d]['mean_epochs_run']:>12.1f}" for d in domains)
        print(f"{label:<44} {c['converged_runs']:>4} / {c['runs']:<2} {cells}")
    print(f"chosen: {result['chosen']} ({result['criterion']})")
    write_json(args.out, result)
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", nargs=2, action="append", metavar=("LABEL", "JSON"),
                        help="a recipe's name and its classifier_recipe.py JSON (repeat)")
    parser.add_argument("--replay", nargs=2, action="append", metavar=("DOMAIN", "JSON"),
                        help="the early-stopping rule from full-length runs: a domain and its JSON (repeat)")
    parser.add_argument("--monitors", nargs="+", default=["val_loss", "val_auroc"], choices=list(HIGHER_IS_BETTER))
    parser.add_argument("--patience", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--min-epochs", nargs="+", type=int, default=[0, 6, 10])
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/bicubic_recipe.json"))
    parser.add_argument("--converged", action="store_true", help="only recipes whose every seed converged")
    args = parser.parse_args()
    if bool(args.label) == bool(args.replay):
        parser.error("give --label (recipes) or --replay (the early-stopping rule), one of them")
    if args.replay:
        main_replay(args)
        return
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
