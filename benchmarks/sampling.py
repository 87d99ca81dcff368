"""Sampling speed and quality: the seed's way (ancestral, all T steps, one image at a time) against
our samplers at several step counts and batch sizes, on one trained checkpoint and the same val images.

Every row super-resolves the same `--images` val images (never test: benchmark-driven defaults are choices) (the first ones by id, both classes) with
the same model and sampling seed; images/s is wall time over the whole row (model calls, noise,
scheduler), after one warm-up batch. PSNR / SSIM are against HR, mean over the images. Bicubic is
the reference row the SR rows have to beat.

    .venv/bin/python benchmarks/sampling.py [--model models/sr.safetensors] [--images 16]

Prints a table and writes results/benchmarks/sampling.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medsr import io
from medsr.config import NULL_CLASS
from medsr.device import resolve_device
from medsr.diffusion.model_file import load_unet
from medsr.diffusion.samplers import Sampler, SamplerSpec, image_generators
from medsr.evaluation.quality import psnr, ssim

# (label, sampler, K, batch): the first row is the seed code's sampling
ROWS = [
    ("seed-style", "ancestral", 0, 1),
    ("ancestral batched", "ancestral", 0, 16),
    ("ddim", "ddim", 50, 16),
    ("ddim", "ddim", 20, 16),
    ("ddim", "ddim", 10, 16),
    ("ddim", "ddim", 20, 32),
    ("dpmpp", "dpmpp", 20, 16),
    ("dpmpp", "dpmpp", 10, 16),
]


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


def run_row(loaded, lr_root: Path, records, spec: SamplerSpec, batch: int, seed: int) -> tuple[np.ndarray, float]:
    sampler = Sampler(loaded.model, loaded.schedule, loaded.target, spec)
    labels = torch.full((len(records),), NULL_CLASS)
    warm = records[: min(batch, 2)]  # warm-up: allocator, kernels (not timed)
    Sampler(loaded.model, loaded.schedule, loaded.target, SamplerSpec("ddim", 2)).sample(
        loaded.bicubic_input(lr_root, warm), labels[: len(warm)], image_generators(seed, [r.id for r in warm]))
    out = []
    start = time.perf_counter()
    for first in range(0, len(records), batch):
        chunk = records[first:first + batch]
        sr = sampler.sample(loaded.bicubic_input(lr_root, chunk), labels[first:first + len(chunk)],
                            image_generators(seed, [r.id for r in chunk]))
        out.append(sr[:, 0].float().cpu().numpy())
    return np.concatenate(out), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/sr.safetensors"))
    parser.add_argument("--hr", type=Path, default=Path("data/hr"))
    parser.add_argument("--lr", type=Path, default=Path("data/lr"))
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/sampling.json"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    loaded = load_unet(args.model, "sr_diffusion", device)
    records, _, hr = val_images(args.hr, args.lr, args.images)
    bicubic = loaded.bicubic_input(args.lr, records)[:, 0].cpu().numpy()
    bicubic_psnr, bicubic_ssim = quality(bicubic, hr)
    timesteps = loaded.schedule.timesteps
    results = []
    for label, name, steps, batch in ROWS:
        spec = SamplerSpec(name, steps)
        images, seconds = run_row(loaded, args.lr, records, spec, batch, args.seed)
        row_psnr, row_ssim = quality(images, hr)
        results.append({"row": label, "sampler": name, "steps": spec.evaluations(timesteps), "batch": batch,
                        "images": len(records), "seconds": round(seconds, 2),
                        "images_per_s": len(records) / seconds, "psnr": row_psnr, "ssim": row_ssim})
        print(f"  {label:18s} {name:9s} K={spec.evaluations(timesteps):4d} batch {batch:3d}: "
              f"{len(records) / seconds:8.3f} images/s  PSNR {row_psnr:.2f}  SSIM {row_ssim:.4f}", file=sys.stderr)
    base = results[0]
    for row in results:
        row["speedup"] = row["images_per_s"] / base["images_per_s"]
        row["psnr_minus_seed_style"] = row["psnr"] - base["psnr"]

    print(f"\nSampling on {device} ({torch.get_num_threads()} threads), {len(records)} val images, "
          f"model {args.model} (T = {timesteps}, target {loaded.target})")
    header = f"| {'sampler':18s} | {'K':>4s} | {'batch':>5s} | {'images/s':>8s} | {'x seed-style':>12s} | " \
             f"{'PSNR dB':>7s} | {'dPSNR':>6s} | {'SSIM':>6s} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        print(f"| {r['row']:18s} | {r['steps']:4d} | {r['batch']:5d} | {r['images_per_s']:8.3f} | "
              f"{r['speedup']:12.1f} | {r['psnr']:7.2f} | {r['psnr_minus_seed_style']:+6.2f} | {r['ssim']:6.4f} |")
    print(f"| {'bicubic':18s} | {'':>4s} | {'':>5s} | {'':>8s} | {'':>12s} | {bicubic_psnr:7.2f} | "
          f"{bicubic_psnr - base['psnr']:+6.2f} | {bicubic_ssim:6.4f} |")
    report = {"device": str(device), "threads": torch.get_num_threads(), "machine": platform.machine(),
              "processor": platform.processor(), "torch": torch.__version__, "model": str(args.model),
              "model_sha256": loaded.sha256, "timesteps": timesteps, "target": loaded.target,
              "images": len(records), "seed": args.seed,
              "bicubic": {"psnr": bicubic_psnr, "ssim": bicubic_ssim}, "rows": results}
    io.write_json(args.out, report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
