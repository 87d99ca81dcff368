"""Sampling speed and quality: the seed's way (ancestral, all T steps, one image at a time) against
our samplers at several step counts and batch sizes, and the few-step ResShift process (Yue et al. 2023), on the
same val images.

Every row super-resolves the same `--images` val images (never test: benchmark-driven defaults are choices)
(the first ones by id, half of each class) with its model and the same sampling seed; images/s is wall time
over the whole row (model calls, noise, scheduler), after one warm-up batch. SR images are quantized to 8 bits
(what generate writes) before PSNR / SSIM against HR (mean over the images) and before the HR classifier
(`--classifier`, argmax) gives the FNR on them, with a percentile bootstrap interval over the positive images
(the same resamples for every row). Bicubic and HR are reference rows. The network's FLOPs per image per call
come from torch.utils.flop_counter.FlopCounterMode; "of matmul" is the achieved FLOP rate of a row over an fp32
1024^3 matmul's on the same threads.

The ResShift rows sample `--resshift-model`; without it, one is trained first with train-sr's code on the
`--params` parameters with diffusion.process resshift (the time it took is reported), written to
`--resshift-out`. The student row samples `--student-model`, a one-step student distilled from that teacher by
`medsr train-student` (SinSR; medsr.diffusion.distill): one network call from x_T = y_0 + kappa sqrt(eta_T) eps.

FNR is given twice, each with its percentile bootstrap interval over the positive val images: at argmax (P > 0.5)
and at the val operating point (evaluate.val_specificity's rule, medsr.evaluation.operating_point: the threshold
reaching that specificity on the row's own healthy val images, as evaluate sets it per image set).

Choice of a sampler (printed and in the JSON under "choice"): by what it does to the classifier first, by pixels
second. Among the sampler rows with FNR measured, take the lowest FNR at the val operating point; every row whose
FNR at the val operating point is within that row's interval (<= its upper bound) is a candidate; the candidate
with the highest PSNR is chosen (SSIM breaks a tie).

Acceptance of the student (fixed before its measuring run; one run, val images only): with seed-style and
ResShift K=4 (batch 16) rows in the same run, the student row must have
  - images/s >= 500 x the seed-style row's,
  - HR-classifier FNR on its val SR images no higher than ResShift K=4's upper interval bound, both at argmax
    and at the val operating point,
  - PSNR no more than 0.3 dB below ResShift K=4's.

    .venv/bin/python benchmarks/sampling.py [--model models/sr.safetensors] [--images 16] [--resshift-model F]
        [--student-model models/student.safetensors]

Prints a table and writes results/benchmarks/sampling.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from medsr.core import io
from medsr.stages import train_sr
from medsr.classifier.model import load_classifier, predict_proba
from medsr.core.config import load_params
from medsr.core.parameters import CLASSES, NULL_CLASS
from medsr.core.device import resolve_device
from medsr.diffusion.unet import STUDENT_KEY, load_unet
from medsr.diffusion.samplers import DDIMSampler, SamplerSpec, image_generators, make_sampler
from medsr.evaluation.operating_point import val_threshold
from medsr.evaluation.quality import psnr, ssim
from medsr.data.pixels import quantize
from medsr.core.randomness import numpy_rng

# (label, model, sampler, K, batch): the first row is the seed code's sampling; "ddim K=20 b16" the reference
ROWS = [
    ("seed-style", "ddpm", "ancestral", 0, 1),
    ("ancestral batched", "ddpm", "ancestral", 0, 16),
    ("ddim", "ddpm", "ddim", 50, 16),
    ("ddim", "ddpm", "ddim", 20, 16),
    ("ddim", "ddpm", "ddim", 10, 16),
    ("ddim", "ddpm", "ddim", 20, 32),
    ("dpmpp", "ddpm", "dpmpp", 20, 16),
    ("dpmpp", "ddpm", "dpmpp", 10, 16),
    ("dpmpp", "ddpm", "dpmpp", 5, 16),
    ("dpmpp", "ddpm", "dpmpp", 3, 16),
    ("resshift", "resshift", "resshift", 15, 16),
    ("resshift", "resshift", "resshift", 8, 16),
    ("resshift", "resshift", "resshift", 4, 16),
    ("resshift", "resshift", "resshift", 3, 16),
    ("resshift", "resshift", "resshift", 2, 16),
    ("resshift", "resshift", "resshift", 1, 16),
    ("resshift", "resshift", "resshift", 1, 32),
    ("student", "student", "student", 1, 16),
]
REFERENCE = ("ddim", 20, 16)  # (sampler, K, batch) the acceptance compares with
TARGET_SPEEDUP, PSNR_DROP, SSIM_DROP = 200.0, 0.3, 0.01  # issue 12's bar: x seed-style, dB, SSIM
# the student's acceptance (module docstring): x seed-style, the ResShift row it is held against, dB below it
STUDENT_SPEEDUP, STUDENT_REFERENCE, STUDENT_PSNR_DROP = 500.0, ("resshift", 4, 16), 0.3


def val_images(hr_root: Path, lr_root: Path, count: int) -> tuple[list[io.Record], list[io.Record], np.ndarray]:
    """The first count/2 val images of each class (by id): LR records, HR records, HR pixels."""
    lr = sorted(io.read_manifest(lr_root, "val"), key=lambda r: r.id)
    chosen = []
    for label in ("healthy", "unhealthy"):
        chosen += [r for r in lr if r.label == label][: count // 2]
    chosen.sort(key=lambda r: r.id)
    hr_by_id = {r.id: r for r in io.read_manifest(hr_root, "val")}
    hr = [hr_by_id[r.id] for r in chosen]
    return chosen, hr, io.load_images(hr_root, hr)


def quality(images: np.ndarray, hr: np.ndarray) -> tuple[float, float]:
    return (float(np.mean([psnr(x, y) for x, y in zip(images, hr)])),
            float(np.mean([ssim(x, y) for x, y in zip(images, hr)])))


def as_stored(images: np.ndarray) -> np.ndarray:
    """[N, H, W] in [0, 1] as generate writes them: 8-bit."""
    return quantize(torch.from_numpy(images)).numpy()


class FNR:
    """The HR classifier's false-negative rate (argmax) on a set of images, with a percentile bootstrap interval
    over the positive images; the resamples are drawn once, so every row is resampled alike (paired)."""

    def __init__(self, classifier_path: Path, labels: np.ndarray, resamples: int, seed: int, confidence: float = 0.95,
                 specificity: float = 0.95):
        self.model = load_classifier(classifier_path, "cpu")
        self.labels, self.specificity = labels, specificity
        self.positives = np.flatnonzero(labels == CLASSES.index("unhealthy"))
        rng = numpy_rng("benchmark-sampling-bootstrap", seed)
        self.draws = rng.integers(0, len(self.positives), size=(resamples, len(self.positives)))
        self.confidence = confidence

    def __call__(self, images: np.ndarray) -> dict[str, float]:
        proba = predict_proba(self.model, torch.from_numpy(images)[:, None].float())[:, 1].numpy()
        missed = (proba[self.positives] < 0.5).astype(np.float64)  # argmax of two classes
        point = val_threshold(self.labels == CLASSES.index("unhealthy"), proba, self.specificity, "benchmark")
        missed_op = (proba[self.positives] <= point.threshold).astype(np.float64)  # unhealthy iff P > threshold
        return {**self._rate(missed, "fnr"), **self._rate(missed_op, "fnr_op"), "op_threshold": point.threshold,
                "op_val_specificity": point.val_specificity, "positives": int(len(self.positives))}

    def _rate(self, missed: np.ndarray, key: str) -> dict[str, float]:
        boot = missed[self.draws].mean(axis=1)
        tail = (1 - self.confidence) / 2 * 100
        return {key: float(missed.mean()), f"{key}_low": float(np.percentile(boot, tail)),
                f"{key}_high": float(np.percentile(boot, 100 - tail))}


def fnr_text(row: dict, key: str = "fnr") -> str:
    if row.get(key) is None:
        return "-"
    return f"{row[key]:5.3f} [{row[f'{key}_low']:.3f}, {row[f'{key}_high']:.3f}]"


def choose(rows: list[dict]) -> dict:
    """The module docstring's rule: lowest FNR at the val operating point, its interval's candidates, highest PSNR."""
    measured = [r for r in rows if r.get("fnr_op") is not None]
    if not measured:
        return {"rule": CHOICE_RULE, "chosen": None, "candidates": []}
    lowest = min(measured, key=lambda r: r["fnr_op"])
    candidates = [r for r in measured if r["fnr_op"] <= lowest["fnr_op_high"]]
    chosen = max(candidates, key=lambda r: (r["psnr"], r["ssim"]))
    def label(r: dict) -> str:
        return f"{r['row']} K={r['steps']} batch {r['batch']}"
    return {"rule": CHOICE_RULE, "lowest_fnr_op": label(lowest), "candidates": [label(r) for r in candidates],
            "chosen": label(chosen)}


CHOICE_RULE = ("lowest FNR at the val operating point; candidates: FNR at the val operating point <= that row's "
               "upper interval bound; chosen: the candidate with the highest PSNR (then SSIM)")


def student_acceptance(rows: list[dict]) -> dict | None:
    """The module docstring's acceptance of the student row against seed-style and ResShift K=4 of the same run."""
    student = next((r for r in rows if r["sampler"] == "student"), None)
    reference = next((r for r in rows if (r["sampler"], r["steps"], r["batch"]) == STUDENT_REFERENCE), None)
    if student is None or reference is None or student.get("speedup") is None or reference.get("fnr") is None:
        return None
    checks = {
        "speedup": bool(student["speedup"] >= STUDENT_SPEEDUP),
        "fnr_argmax": bool(student["fnr"] <= reference["fnr_high"]),
        "fnr_val_operating_point": bool(student["fnr_op"] <= reference["fnr_op_high"]),
        "psnr": bool(student["psnr"] >= reference["psnr"] - STUDENT_PSNR_DROP)}
    return {"reference": dict(zip(("sampler", "steps", "batch"), STUDENT_REFERENCE)), "speedup": STUDENT_SPEEDUP,
            "psnr_drop": STUDENT_PSNR_DROP, "checks": checks, "holds": all(checks.values())}


def flops_per_call(loaded) -> int:
    """FLOPs of one network call on one image (batch 1, the model's HR size, one class label)."""
    size = tuple(loaded.metadata["hr_size"])
    device = next(loaded.model.parameters()).device
    x = torch.zeros(1, 1, *size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        loaded.model(x, torch.zeros(1, dtype=torch.long, device=device),
                     class_labels=torch.full((1,), NULL_CLASS, device=device), lr_upsampled=x)
    return int(counter.get_total_flops())


def matmul_rate(device: torch.device, n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of an fp32 n x n matmul on this device and thread count (best of `repeats`)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def train_resshift(params_paths: list[Path], hr: Path, lr: Path, out: Path, device: torch.device) -> float:
    """A ResShift model by train-sr's code on `params_paths` (diffusion.process resshift): seconds taken."""
    params = load_params(params_paths)
    diffusion = dataclasses.replace(params.diffusion, process="resshift")
    start = time.perf_counter()
    train_sr.run(params.sr_model, diffusion, params.train_sr, hr=hr, lr=lr, model=out,
                 log=out.with_suffix(".csv"), checkpoints=out.parent / f"{out.stem}_checkpoints", device=device)
    return time.perf_counter() - start


def run_row(loaded, lr_root: Path, records, spec: SamplerSpec, batch: int, seed: int) -> tuple[np.ndarray, float]:
    sampler = make_sampler(loaded.model, loaded.schedule, loaded.target, spec)
    labels = torch.full((len(records),), NULL_CLASS)
    warm = records[: min(batch, 2)]  # warm-up: allocator, kernels (not timed); a short run of the same sampler
    warm_spec = SamplerSpec(spec.name, 2) if spec.sampler_class.takes_steps else SamplerSpec(DDIMSampler.name, 2)
    if not spec.sampler_class.takes_steps and not spec.sampler_class.stochastic(0.0):  # one call: itself
        warm_spec = spec
    make_sampler(loaded.model, loaded.schedule, loaded.target, warm_spec).sample(
        loaded.bicubic_input(lr_root, warm), labels[: len(warm)], image_generators(seed, [r.id for r in warm]))
    out = []
    start = time.perf_counter()
    for first in range(0, len(records), batch):
        chunk = records[first:first + batch]
        sr = sampler.sample(loaded.bicubic_input(lr_root, chunk), labels[first:first + len(chunk)],
                            image_generators(seed, [r.id for r in chunk]))
        out.append(sr[:, 0].float().cpu().numpy())
    if loaded.model.parameters().__next__().device.type == "cuda":
        torch.cuda.synchronize()
    return np.concatenate(out), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/sr.safetensors"))
    parser.add_argument("--resshift-model", type=Path, default=None,
                        help="a diffusion.process resshift model; absent: trained first (see --resshift-out)")
    parser.add_argument("--resshift-out", type=Path, default=Path("models/sr_resshift.safetensors"))
    parser.add_argument("--student-model", type=Path, default=None,
                        help="a one-step student from `medsr train-student` (the student row; absent: row skipped)")
    parser.add_argument("--specificity", type=float, default=0.95,
                        help="val specificity of the operating point (evaluate.val_specificity)")
    parser.add_argument("--params", type=Path, action="append", default=None, metavar="YAML",
                        help="parameters (params.yaml, then overlays; repeatable) for training the ResShift model")
    parser.add_argument(
        "--classifier", type=Path, default=Path("models/classifiers/classifier_resnet18_hr_seed0.safetensors")
    )
    parser.add_argument("--hr", type=Path, default=Path("data/hr"))
    parser.add_argument("--lr", type=Path, default=Path("data/lr"))
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seed-style-images", type=int, default=0,
                        help="time the seed-style row (batch 1, all T steps) on the first N images only (0: all); "
                             "its images/s is per image either way, its PSNR/SSIM are then over those N, no FNR")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--rows", default="", help="comma-separated row numbers to run (default: all)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/sampling.json"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    args.params = args.params or [Path("params.yaml")]
    training_seconds = None
    if args.resshift_model is None:
        print(
            f"training a ResShift model on {' + '.join(map(str, args.params))} (diffusion.process resshift) "
            f"-> {args.resshift_out}",
            file=sys.stderr,
        )
        training_seconds = train_resshift(args.params, args.hr, args.lr, args.resshift_out, device)
        args.resshift_model = args.resshift_out
    models = {"ddpm": load_unet(args.model, "sr_diffusion", device),
              "resshift": load_unet(args.resshift_model, "sr_diffusion", device)}
    if args.student_model is not None:
        models["student"] = load_unet(args.student_model, "sr_diffusion", device)
        if STUDENT_KEY not in models["student"].metadata:
            raise SystemExit(f"{args.student_model}: not a distilled student (medsr train-student)")
    for process, loaded in ((p, m) for p, m in models.items() if p != "student"):
        if loaded.process != process:
            raise SystemExit(f"{loaded.metadata.get('path', process)}: a {loaded.process} model where a {process} "
                             f"one is expected")
    records, hr_records, hr = val_images(args.hr, args.lr, args.images)
    labels = np.array([CLASSES.index(r.label) for r in hr_records])
    fnr = FNR(args.classifier, labels, args.bootstrap, args.seed, specificity=args.specificity)
    bicubic = as_stored(models["ddpm"].bicubic_input(args.lr, records)[:, 0].cpu().numpy())
    references = {"hr": {"psnr": None, "ssim": None, **fnr(hr)}}
    references["bicubic"] = dict(zip(("psnr", "ssim"), quality(bicubic, hr)), **fnr(bicubic))
    flops = {process: flops_per_call(loaded) for process, loaded in models.items()}
    rate = matmul_rate(device)
    chosen = [int(i) for i in args.rows.split(",")] if args.rows else range(len(ROWS))
    results = []
    for index in chosen:
        label, process, name, steps, batch = ROWS[index]
        if process not in models:
            print(f"  row {index} ({label}) skipped: no --student-model", file=sys.stderr)
            continue
        loaded = models[process]
        timesteps = loaded.schedule.timesteps
        spec = SamplerSpec(name, steps)
        count = args.seed_style_images if label == "seed-style" and 0 < args.seed_style_images < len(records) \
            else len(records)
        images, seconds = run_row(loaded, args.lr, records[:count], spec, batch, args.seed)
        images = as_stored(images)
        row_psnr, row_ssim = quality(images, hr[:count])
        calls = spec.evaluations(timesteps)
        rates = fnr(images) if count == len(records) else {"fnr": None, "fnr_low": None, "fnr_high": None,
                                                           "fnr_op": None, "fnr_op_low": None, "fnr_op_high": None}
        results.append({"row": label, "process": process, "sampler": name, "steps": calls, "batch": batch,
                        "images": count, "seconds": round(seconds, 2),
                        "images_per_s": count / seconds, "psnr": row_psnr, "ssim": row_ssim, **rates,
                        "flops_per_image_per_call": flops[process],
                        "of_matmul": flops[process] * calls * count / seconds / rate})
        r = results[-1]
        print(f"  {label:18s} {name:9s} K={calls:4d} batch {batch:3d}: {r['images_per_s']:8.3f} images/s  "
              f"PSNR {row_psnr:.2f}  SSIM {row_ssim:.4f}  FNR {fnr_text(r)}  at val op. {fnr_text(r, 'fnr_op')}  "
              f"{r['of_matmul']:.0%} of matmul",
              file=sys.stderr)
    base = next((r for r in results if r["row"] == "seed-style"), None)
    reference = next((r for r in results if (r["sampler"], r["steps"], r["batch"]) == REFERENCE), None)
    for row in results:
        row["speedup"] = row["images_per_s"] / base["images_per_s"] if base else None
        if reference is not None:
            row["meets_bar"] = bool(
                row["speedup"] is not None and row["speedup"] >= TARGET_SPEEDUP
                and row["psnr"] >= reference["psnr"] - PSNR_DROP and row["ssim"] >= reference["ssim"] - SSIM_DROP
                and row["fnr"] is not None and reference["fnr_low"] <= row["fnr"] <= reference["fnr_high"])

    print(f"\nSampling on {device} ({torch.get_num_threads()} threads), {len(records)} val images "
          f"({len(fnr.positives)} unhealthy), models {args.model} (ddpm, T = {models['ddpm'].schedule.timesteps}, "
          f"target {models['ddpm'].target}) and {args.resshift_model} (resshift, T = "
          f"{models['resshift'].schedule.timesteps}); fp32 matmul {rate / 1e9:.1f} GFLOP/s; network "
          f"{flops['ddpm'] / 1e9:.3f} GFLOP per image per call")
    header = (f"| {'sampler':18s} | {'K':>4s} | {'batch':>5s} | {'images/s':>8s} | {'x seed-style':>12s} | "
              f"{'PSNR dB':>7s} | {'SSIM':>6s} | {'FNR [95% bootstrap]':>21s} | {'FNR at val op. [95%]':>21s} | "
              f"{'of matmul':>9s} | {'bar':>3s} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        speedup = f"{r['speedup']:12.1f}" if r["speedup"] is not None else f"{'':>12s}"
        bar = ("yes" if r.get("meets_bar") else "no") if reference is not None else ""
        print(f"| {r['row']:18s} | {r['steps']:4d} | {r['batch']:5d} | {r['images_per_s']:8.3f} | {speedup} | "
              f"{r['psnr']:7.2f} | {r['ssim']:6.4f} | {fnr_text(r):>21s} | {fnr_text(r, 'fnr_op'):>21s} | "
              f"{r['of_matmul']:9.0%} | {bar:>3s} |")
    for name, ref in references.items():
        q = f"{ref['psnr']:7.2f} | {ref['ssim']:6.4f}" if ref["psnr"] is not None else f"{'':7s} | {'':6s}"
        print(f"| {name:18s} | {'':>4s} | {'':>5s} | {'':>8s} | {'':>12s} | {q} | "
              f"{fnr_text(ref):>21s} | {fnr_text(ref, 'fnr_op'):>21s} | {'':>9s} | {'':>3s} |")
    choice, acceptance = choose(results), student_acceptance(results)
    print(f"\nchosen sampler: {choice['chosen']} (rule: {choice['rule']}; lowest FNR at the val operating point: "
          f"{choice.get('lowest_fnr_op')}; candidates: {', '.join(choice['candidates'])})")
    if acceptance is not None:
        print(f"student acceptance (>= {STUDENT_SPEEDUP:g}x seed-style, FNR <= ResShift K=4's upper bound at argmax "
              f"and at the val operating point, PSNR >= K=4's - {STUDENT_PSNR_DROP} dB): "
              f"{'holds' if acceptance['holds'] else 'fails'} "
              f"({', '.join(k + (' yes' if v else ' no') for k, v in acceptance['checks'].items())})")
    report = {"device": str(device), "threads": torch.get_num_threads(), "machine": platform.machine(),
              "processor": platform.processor(), "torch": torch.__version__,
              "models": {p: {"path": str({"ddpm": args.model, "resshift": args.resshift_model,
                                          "student": args.student_model}[p]), "sha256": m.sha256,
                             "timesteps": m.schedule.timesteps, "target": m.target,
                             "diffusion": m.metadata["diffusion"], "training_steps": m.metadata["training_steps"],
                             "student": m.metadata.get("student")}
                         for p, m in models.items()},
              "resshift_training_seconds": training_seconds,
              "resshift_training_params": [str(p) for p in args.params] if training_seconds is not None else None,
               "classifier": str(args.classifier),
              "images": len(records), "positives": int(len(fnr.positives)), "seed": args.seed,
              "bootstrap": args.bootstrap, "matmul_flops_per_s": rate, "flops_per_image_per_call": flops,
              "bar": {"reference": dict(zip(("sampler", "steps", "batch"), REFERENCE)),
                      "speedup": TARGET_SPEEDUP, "psnr_drop": PSNR_DROP, "ssim_drop": SSIM_DROP},
              "references": references, "rows": results, "choice": choice, "student_acceptance": acceptance}
    io.write_json(args.out, report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
