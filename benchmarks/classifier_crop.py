"""Cheaper classifier epochs from training crops (`train_classifier.crop`), measured on val, never test.

Each candidate crop side trains, for every seed, what a default run trains: the HR classifier from scratch on the
HR train split, then the bicubic classifier fine-tuned from it on the bicubic train split, both with `medsr
train-classifier`'s own loop and params.yaml's recipe and stopping rule (only `crop` differs). Recorded per
classifier: epochs run, kept epoch, its val AUROC (precise BN, whole val images), whether it converged, and its
seconds (one thread, `--workers` seeds at once). The baseline is params.yaml's recipe on whole images for the same
seeds: the classifiers of a finished run (`--baseline RUN`, whose histories and Snakemake log give epochs, val
AUROC and seconds) or trained here (`--crops 0 ...`).

Criterion, fixed before the runs: a crop is eligible when (1) every one of its classifiers converged; (2) in each
domain the mean over seeds of the kept val AUROC is within 0.02 of the baseline's; (3) its classifiers' seconds are
at most 50 % of the baseline's (what the 15-minute budget needs on the 2-core machine of
results/benchmarks/run_time.json: ~800 of the classifiers' 1612 core-seconds). Of the eligible crops the largest
(the least change) is chosen; with none eligible, whole images stay. Crops meeting (1) and (2) but not (3) are
reported as such: cheaper, not enough alone.

    .venv/bin/python benchmarks/classifier_crop.py --hr data/hr --bicubic data/bicubic --crops 48 40 \
        --seeds 5 6 7 8 9 --baseline RUN [--workers 2] [--models /tmp/classifier_crop]

Prints a table and writes results/benchmarks/classifier_crop.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from medsr.stages.train_classifier import run as train_classifier
from medsr.core.config import load_params
from medsr.core.io import write_json
from medsr.core.provenance import cpu_model
from medsr.stages import CLASSIFIER_LOG
from medsr.classifier.stopping import training_record

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_time import newest_log, parse_log  # noqa: E402

DOMAINS = ("hr", "bicubic")
AUROC_TOLERANCE = 0.02
COST_FRACTION = 0.5
ARCHITECTURE = "resnet18"


def history_row(log: Path) -> dict:
    """What a train-classifier history says about its run (medsr.classifier.stopping.training_record): epochs, kept
    epoch, its val AUROC, converged."""
    record = training_record(log)
    if record is None:
        raise SystemExit(f"classifier_crop: {log} has no run record (an unfinished or old history)")
    return {"epochs": record["epochs_run"], "kept_epoch": record["best_epoch"], "val_auroc": record["val_auroc"],
            "converged": record["converged"]}


def train_pair(params_file: str, crop: int, seed: int, hr: Path, bicubic: Path, models: Path) -> list[dict]:
    """The seed's HR classifier, then the bicubic one fine-tuned from it, with `crop`: one row each."""
    torch.set_num_threads(1)
    params = dataclasses.replace(load_params([params_file]).train_classifier, crop=crop)
    rows, init = [], None
    for domain, images in zip(DOMAINS, (hr, bicubic)):
        stem = models / f"crop{crop}" / CLASSIFIER_LOG.format(arch=ARCHITECTURE, domain=domain, seed=seed)
        start = time.perf_counter()
        train_classifier(params, images=images, model=stem.with_suffix(".safetensors"), log=stem,
                         architecture=ARCHITECTURE, domain=domain, seed=seed, init=init)
        rows.append({"crop": crop, "domain": domain, "seed": seed, "s": time.perf_counter() - start,
                     **history_row(stem)})
        init = stem.with_suffix(".safetensors")
    return rows


def baseline_rows(run: Path, seeds: list[int], log: Path | None = None) -> list[dict]:
    """The finished run's classifiers of `seeds` (whole images): histories, and seconds from its Snakemake log
    (`log`, default the newest: the one that trained them)."""
    jobs = {(j["wildcards"].get("domain"), int(j["wildcards"]["seed"])): (j["end"] - j["start"]).total_seconds()
            for j in parse_log((log or newest_log(run)).read_text())
            if j["rule"] in ("train_classifier", "finetune_classifier")}
    rows = []
    for seed in seeds:
        for domain in DOMAINS:
            log = run / "results" / "train" / CLASSIFIER_LOG.format(arch=ARCHITECTURE, domain=domain, seed=seed)
            rows.append({"crop": 0, "domain": domain, "seed": seed, "s": jobs[(domain, seed)], **history_row(log)})
    return rows


def choose(rows: list[dict]) -> dict:
    """The criterion of the module docstring over every crop's rows against crop 0's."""
    by_crop: dict[int, list[dict]] = {}
    for row in rows:
        by_crop.setdefault(row["crop"], []).append(row)
    base = by_crop[0]
    base_auroc = {d: float(np.mean([r["val_auroc"] for r in base if r["domain"] == d])) for d in DOMAINS}
    base_s = sum(r["s"] for r in base)
    candidates = []
    for crop, group in sorted(by_crop.items()):
        auroc = {d: float(np.mean([r["val_auroc"] for r in group if r["domain"] == d])) for d in DOMAINS}
        cost = sum(r["s"] for r in group) / base_s
        converged = all(r["converged"] for r in group)
        close = all(auroc[d] >= base_auroc[d] - AUROC_TOLERANCE for d in DOMAINS)
        candidates.append({"crop": crop, "mean_val_auroc": auroc, "epochs": sum(r["epochs"] for r in group),
                           "s": sum(r["s"] for r in group), "cost_vs_baseline": cost, "all_converged": converged,
                           "auroc_within_tolerance": close, "eligible": crop != 0 and converged and close
                           and cost <= COST_FRACTION})
    eligible = [c["crop"] for c in candidates if c["eligible"]]
    return {"candidates": candidates, "chosen_crop": max(eligible) if eligible else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--hr", type=Path, default=Path("data/hr"))
    parser.add_argument("--bicubic", type=Path, default=Path("data/bicubic"))
    parser.add_argument("--crops", type=int, nargs="+", default=[48, 40])
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7, 8, 9])
    parser.add_argument("--baseline", type=Path, help="a finished run of params.yaml's recipe with these seeds")
    parser.add_argument("--baseline-log", type=Path, help="the baseline run's Snakemake log that trained them")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", type=Path, default=Path("models/classifier_crop"))
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/classifier_crop.json"))
    args = parser.parse_args()
    if args.baseline is None and 0 not in args.crops:
        raise SystemExit("classifier_crop: give --baseline RUN or train the baseline with --crops 0 ...")
    tasks = [(args.params, crop, seed, args.hr, args.bicubic, args.models)
             for crop in args.crops for seed in args.seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [row for pair in pool.map(train_pair, *zip(*tasks)) for row in pair]
    if args.baseline is not None and 0 not in args.crops:
        rows = baseline_rows(args.baseline, args.seeds, args.baseline_log) + rows
    out = {"benchmark": "classifier_crop", "criterion": __doc__.split("Criterion, fixed before the runs: ")[1]
           .split("\n\n")[0].replace("\n", " "), "seeds": args.seeds, "baseline": str(args.baseline),
           "params": dataclasses.asdict(load_params([args.params]).train_classifier), "rows": rows, **choose(rows),
           "machine": {"platform": platform.platform(), "cpu": cpu_model(), "threads": 1, "workers": args.workers,
                       "torch": torch.__version__}}
    print(f"{'crop':>4} {'HR AUROC':>9} {'bic AUROC':>9} {'epochs':>7} {'s':>6} {'cost':>6} {'conv':>5} eligible")
    for c in out["candidates"]:
        print(f"{c['crop']:>4} {c['mean_val_auroc']['hr']:>9.3f} {c['mean_val_auroc']['bicubic']:>9.3f} "
              f"{c['epochs']:>7} {c['s']:>6.0f} {c['cost_vs_baseline']:>6.2f} {str(c['all_converged']):>5} "
              f"{c['eligible']}")
    print(f"chosen crop: {out['chosen_crop']} (0: whole images)")
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
