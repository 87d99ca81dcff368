"""A/A calibration of the deployed classifier's image-level test (medsr.evaluation.deployed.image_test) on a
Q1-shaped null: one classifier, two exchangeable image sets. Val images only (the test split is never read).

The classifier: a run's HR-trained classifier of one train seed (`--architecture`, `--seed`) standing in for a
user's deployed one, or the deployed classifier itself (`--deployed`: classify-deployed's CSV). The two sets: each
Q1 comparison's (`--first`, default every regression / SR set of the run, vs bicubic), through that classifier.
Each replicate r (of `--replicates`):
  1. the per-image swap null: for every val image a fair coin decides whether arm A gets the first set's version
     and arm B the second's, or the other way round; A and B are exchangeable by construction and exactly as
     discordant, image by image, as the real comparison;
  2. each arm's threshold is chosen on the healthy val images at evaluate.val_specificity (as
     `operating_point.val_threshold`), and every unhealthy val image is a pseudo-test image (a miss: score <= its
     arm's threshold): the design of a real run, whose thresholds come from the healthy val images and whose FNR
     from other (unhealthy test) images;
  3. the test of the verdict: `image_test` (evaluate.bootstrap swaps and resamples) at alpha = 1 - evaluate.confidence:
     its p (the per-image randomization test) and, beside it, the p of the bootstrap's z test.
Calibrated: the rejection rate's 95% Clopper-Pearson interval contains alpha. Also the p-value deciles (uniform
under a calibrated test: 0.1, ..., 0.9).

    .venv/bin/python benchmarks/deployed_calibration.py RUN [--replicates 1000] [--seed 0]

RUN: a finished run folder (results/predictions.csv and its params.yaml; `--config` adds overlays). Prints a
markdown table and writes results/benchmarks/deployed_calibration.json.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest

from medsr.core.config import load_params
from medsr.evaluation.deployed import image_test
from medsr.data.image_sets import build
from medsr.core.io import write_json
from medsr.classifier.predictions import read_deployed, read_predictions

OUT = Path("results/benchmarks/deployed_calibration.json")


def val_scores(run: Path, params, args) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """set name -> (labels, scores) of the val images through the stand-in classifier, and what it is."""
    sets = build(hr=run / "data/hr", bicubic=run / "data/bicubic", regression=run / "results/regression",
                 sr=run / "results/sr/eval", guidance=params.generate.guidance,
                 sampling_seeds=params.evaluate.sampling_seeds, external={})
    if args.deployed:
        scores = read_deployed(args.deployed, sets)
        return ({s.name: (scores[(s.name, "val")].labels, scores[(s.name, "val")].scores) for s in sets},
                f"deployed classifier ({args.deployed})")
    arms = [(s.name, "hr") for s in sets]
    by_arch = read_predictions(run / "results/predictions.csv", architectures=params.train_classifier.architectures,
                               arms=arms, train_seeds=params.evaluate.train_seeds, splits=("val",))
    table = by_arch[args.architecture]
    return ({s.name: (table[("hr", args.seed, s.name, "val")].labels, table[("hr", args.seed, s.name, "val")].scores)
             for s in sets}, f"HR-trained {args.architecture}, train seed {args.seed} (a stand-in deployed classifier)")


def swap_null(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], params,
              replicates: int, rng: np.random.Generator) -> dict[str, Any]:
    """The rejection rate and p deciles of `image_test` over `replicates` per-image swap nulls (and the rate of the
    bootstrap's z test beside it)."""
    labels, a, b = first[0], first[1], second[1]
    if not np.array_equal(labels, second[0]):
        raise ValueError("the two sets' val images differ")
    healthy, unhealthy = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    alpha = 1 - params.evaluate.confidence
    pvalues, z_pvalues, discordant = np.empty(replicates), np.empty(replicates), np.empty(replicates)
    for r in range(replicates):
        swap = rng.random(labels.size) < 0.5
        arm_a, arm_b = np.where(swap, b, a), np.where(swap, a, b)
        test = image_test((arm_a[healthy], arm_b[healthy]), (arm_a[unhealthy], arm_b[unhealthy]),
                               params.evaluate.val_specificity, params.evaluate.confidence, params.evaluate.bootstrap,
                               seed=int(rng.integers(2**31)))
        pvalues[r], z_pvalues[r] = test["pvalue"], test["pvalue_bootstrap_z"]
        k = int(np.ceil(params.evaluate.val_specificity * healthy.size - 1e-9))
        ta, tb = np.sort(arm_a[healthy])[k - 1], np.sort(arm_b[healthy])[k - 1]
        discordant[r] = np.mean((arm_a[unhealthy] <= ta) != (arm_b[unhealthy] <= tb))
    rejected, rejected_z = int(np.sum(pvalues < alpha)), int(np.sum(z_pvalues < alpha))
    ci = binomtest(rejected, replicates).proportion_ci(0.95, method="exact")
    ci_z = binomtest(rejected_z, replicates).proportion_ci(0.95, method="exact")
    return {"replicates": replicates, "alpha": alpha, "rejected": rejected, "rate": rejected / replicates,
            "rate_low": float(ci.low), "rate_high": float(ci.high),
            "calibrated": bool(ci.low <= alpha <= ci.high),
            "rate_bootstrap_z": rejected_z / replicates, "rate_bootstrap_z_low": float(ci_z.low),
            "rate_bootstrap_z_high": float(ci_z.high),
            "p_deciles": [float(q) for q in np.quantile(pvalues, np.arange(1, 10) / 10)],
            "discordant_misses": float(discordant.mean()),
            "healthy_threshold_images": int(healthy.size), "unhealthy_images": int(unhealthy.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--config", type=Path, action="append", default=[])
    parser.add_argument("--architecture", default="resnet18")
    parser.add_argument("--seed", type=int, default=0, help="train seed of the stand-in classifier")
    parser.add_argument("--deployed", type=Path, help="classify-deployed's CSV: calibrate on the deployed classifier")
    parser.add_argument("--first", action="append", help="first set of a Q1 comparison (default: regression, SR)")
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    params = load_params([args.run / "params.yaml", *args.config])
    scores, classifier = val_scores(args.run, params, args)
    firsts = args.first or [n for n in scores if n == "regression" or n.startswith("sr_null")]
    rng = np.random.default_rng(args.random_seed)
    rows, start = [], time.perf_counter()
    for name in firsts:
        rows.append({"comparison": f"{name} vs bicubic", **swap_null(scores[name], scores["bicubic"], params,
                                                                     args.replicates, rng)})
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    data = {"classifier": classifier, "test": "image_test (per-image randomization p)",
            "bootstrap": params.evaluate.bootstrap, "val_specificity": params.evaluate.val_specificity, "rows": rows,
            "seconds": round(time.perf_counter() - start, 1), "commit": commit,
            "machine": {"processor": platform.processor() or platform.machine(), "platform": platform.platform(),
                        "torch": torch.__version__}}
    write_json(args.out, data)
    from medsr.report.benchmark_tables import deployed_calibration_markdown
    print(deployed_calibration_markdown(data))


if __name__ == "__main__":
    main()
