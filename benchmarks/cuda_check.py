"""The CUDA path in one command (under 10 minutes on one GPU): the smoke pipeline on the device, a few hundred
thesis-size training steps under bf16 and fp16 autocast (fp16 with GradScaler) with finite losses and an exact
resume, and sampling throughput at thesis size (128 x 128, the U-Net of configs/thesis.yaml) at several batch sizes.

    python benchmarks/cuda_check.py                       # on cuda; writes results/benchmarks/cuda_check.json
    python benchmarks/cuda_check.py --device cpu --tiny   # the same logic at tiny sizes (tests/test_cuda_check.py)

Parts (--parts, comma-separated):
  pipeline  the smoke DAG (configs/smoke.yaml) by Snakemake in a scratch copy of the project, MEDSR_DEVICE set;
            with --tiny a dry run (-n) only
  train     train-sr's loop (`medsr.train_sr.train`) on synthetic 128 x 128 images per autocast dtype
            ($MEDSR_AMP: bf16, fp16; on CPU fp32 only): N steps straight, then N/2 + resume to N from the
            checkpoint; the weights must match (max |difference| reported; CUDA runs with deterministic algorithms)
  sample    images/s of seed-style ancestral (batch 1, T = 500), DDIM 20 and ResShift K = 4 per batch size, with
            the network weights of a fresh thesis-size U-Net (speed only)
Exits non-zero when a check fails (a non-finite loss, an inexact resume, a failed pipeline).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS: set before CUDA starts

import torch  # noqa: E402

from medsr import io, train_sr, training  # noqa: E402
from medsr.config import CLASSES, NULL_CLASS, SyntheticSource, load_params  # noqa: E402
from medsr.data.synthetic import generate as synthetic_images  # noqa: E402
from medsr.degrade import degrade_image  # noqa: E402
from medsr.device import resolve_device  # noqa: E402
from medsr.diffusion.model_file import build_unet  # noqa: E402
from medsr.diffusion.samplers import Sampler, SamplerSpec, image_generators  # noqa: E402
from medsr.diffusion.schedule import process_schedule  # noqa: E402
from medsr.diffusion.unet import count_parameters  # noqa: E402
from medsr.pixels import bicubic_upsample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("pipeline", "train", "sample")


@dataclasses.dataclass(frozen=True)
class Size:
    """What a check runs at: the thesis's sizes, or tiny ones for the CPU test."""

    image_size: int
    overlays: tuple[str, ...]  # params overlays on params.yaml for sr_model / diffusion / train_sr
    train_steps: int
    train_images: int
    batch_sizes: tuple[int, ...]
    sample_images: int


THESIS = Size(128, ("configs/thesis.yaml",), 200, 64, (1, 8, 32, 64), 64)
TINY = Size(32, ("configs/smoke.yaml",), 4, 8, (1, 2), 2)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def project_copy(dest: Path) -> Path:
    """The workflow files, sources and params of this project in `dest` (a scratch project)."""
    dest.mkdir(parents=True)
    for name in ("Snakefile", "dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in ("workflow", "configs", "src"):
        shutil.copytree(ROOT / folder, dest / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def check_pipeline(device: torch.device, dry_run: bool, cores: int) -> dict:
    """The smoke DAG by Snakemake with MEDSR_DEVICE = device, in a scratch copy; dry_run: plan only."""
    with tempfile.TemporaryDirectory(prefix="medsr-cuda-check-") as tmp:
        project = project_copy(Path(tmp) / "project")
        env = dict(os.environ, MEDSR_DEVICE=str(device), PYTHONPATH=str(project / "src"),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--resources", "gpu=1",
                   "--configfile", "configs/smoke.yaml", *(["-n"] if dry_run else [])]
        start = time.perf_counter()
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        outputs = {name: (project / "results" / name).exists() for name in ("metrics.json", "evaluation.json")}
    ok = result.returncode == 0 and (dry_run or all(outputs.values()))
    return {"ok": ok, "dry_run": dry_run, "returncode": result.returncode, "seconds": round(seconds, 1),
            "outputs": outputs, "log_tail": (result.stdout + result.stderr)[-2000:] if not ok else ""}


def synthetic_pairs(size: Size, scale: int) -> training.PairedImages:
    """`size.train_images` synthetic MRI-like train images (both classes), degraded by Eq. 1.1 (no noise)."""
    source = SyntheticSource(train_per_class=size.train_images // 2, test_per_class=1, seed=0)
    images = [im for im in synthetic_images(source, size.image_size) if im.split == "train"]
    hr = torch.stack([torch.from_numpy(im.image).float() for im in images])[:, None]
    lr = degrade_image(hr, scale, 0.5, 0.0)
    labels = torch.tensor([CLASSES.index(im.label) for im in images])
    return training.PairedImages([im.id for im in images], hr, lr, bicubic_upsample(lr, scale), labels, scale)


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa if sa[k].is_floating_point())


def check_training(device: torch.device, size: Size, params, amp: str, workdir: Path) -> dict:
    """N steps straight; N/2 steps then a resume to N: finite losses and the same weights."""
    previous = os.environ.get("MEDSR_AMP")
    os.environ["MEDSR_AMP"] = amp
    try:
        return _train_twice(device, size, params, amp, workdir)
    finally:
        if previous is None:
            os.environ.pop("MEDSR_AMP", None)
        else:
            os.environ["MEDSR_AMP"] = previous


def _train_twice(device: torch.device, size: Size, params, amp: str, workdir: Path) -> dict:
    ctx = training.Distributed(0, 1, device)
    data = synthetic_pairs(size, params.degrade.scale)
    steps = size.train_steps - size.train_steps % 2
    train = dataclasses.replace(params.train_sr, steps=steps, checkpoint_every=steps // 2, log_every=1)
    half = dataclasses.replace(train, steps=steps // 2)
    folder = workdir / f"train_{amp}"
    synchronize(device)
    start = time.perf_counter()
    whole, whole_ema, whole_loss = train_sr.train(params.sr_model, params.diffusion, train, data, ctx=ctx,
                                                  log=folder / "whole.csv", checkpoints=None)
    synchronize(device)
    seconds = time.perf_counter() - start
    train_sr.train(params.sr_model, params.diffusion, half, data, ctx=ctx, log=folder / "resumed.csv",
                   checkpoints=folder / "checkpoints")
    resumed, resumed_ema, resumed_loss = train_sr.train(params.sr_model, params.diffusion, train, data, ctx=ctx,
                                                        log=folder / "resumed.csv",
                                                        checkpoints=folder / "checkpoints")
    losses = [float(r["loss"]) for r in io.read_csv(folder / "whole.csv")]
    difference = max(_max_difference(whole, resumed), _max_difference(whole_ema.shadow, resumed_ema.shadow))
    finite = all(math.isfinite(x) for x in losses)
    return {"amp": amp if device.type == "cuda" else "fp32 (autocast is CUDA only)", "steps": steps,
            "batch_size": train.batch_size, "crop": train.crop, "parameters": count_parameters(whole),
            "seconds_per_step": seconds / steps, "first_loss": losses[0], "last_loss": losses[-1],
            "losses_finite": finite, "resume_max_abs_difference": difference, "resume_exact": difference == 0.0,
            "resumed_final_loss_equal": resumed_loss == whole_loss, "ok": finite and difference == 0.0}


def time_sampler(model, schedule, spec: SamplerSpec, batch: int, size: int, device: torch.device,
                 images: int) -> float:
    """images/s of `spec` at `batch`, over at least `images` images (one warm-up batch untimed)."""
    sampler = Sampler(model, schedule, "image", spec)
    bicubic = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.full((batch,), NULL_CLASS)
    ids = [f"i{i}" for i in range(batch)]
    warm = SamplerSpec(spec.name, 1) if spec.name != "ancestral" else SamplerSpec("ddim", 1)
    Sampler(model, schedule, "image", warm).sample(bicubic, labels, image_generators(0, ids))
    rounds = max(1, math.ceil(images / batch))
    synchronize(device)
    start = time.perf_counter()
    for _ in range(rounds):
        sampler.sample(bicubic, labels, image_generators(0, ids))
    synchronize(device)
    return rounds * batch / (time.perf_counter() - start)


def check_sampling(device: torch.device, size: Size, params) -> dict:
    torch.manual_seed(0)
    model = build_unet(params.sr_model, "sr_diffusion").to(device, memory_format=torch.channels_last).eval()
    ddpm = process_schedule(dataclasses.replace(params.diffusion, process="ddpm"))
    resshift = process_schedule(dataclasses.replace(params.diffusion, process="resshift"))
    seed_style = time_sampler(model, ddpm, SamplerSpec("ancestral", 0), 1, size.image_size, device, 1)
    rows = []
    for batch in size.batch_sizes:
        for label, schedule, spec in (("ddim 20", ddpm, SamplerSpec("ddim", 20)),
                                      ("resshift 4", resshift, SamplerSpec("resshift", 4))):
            rate = time_sampler(model, schedule, spec, batch, size.image_size, device, size.sample_images)
            rows.append({"sampler": label, "batch": batch, "images_per_s": rate, "x_seed_style": rate / seed_style})
    return {"image_size": size.image_size, "parameters": count_parameters(model), "timesteps": ddpm.timesteps,
            "seed_style_images_per_s": seed_style, "rows": rows, "weights": "fresh (speed only)", "ok": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU test)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--cores", type=int, default=4, help="Snakemake --cores for the smoke pipeline")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/cuda_check.json"))
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)} (known: {', '.join(PARTS)})")

    device = resolve_device(args.device)
    size = TINY if args.tiny else THESIS
    if args.train_steps:
        size = dataclasses.replace(size, train_steps=args.train_steps)
    params = load_params([ROOT / "params.yaml", *(ROOT / o for o in size.overlays)])
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, image_size=size.image_size))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)  # the exact-resume check needs reproducible steps
    report: dict = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "torch": torch.__version__, "machine": platform.machine(), "tiny": args.tiny, "parts": {}}
    started = time.perf_counter()
    if "pipeline" in parts:
        report["parts"]["pipeline"] = check_pipeline(device, dry_run=args.tiny, cores=args.cores)
        print(f"pipeline: {report['parts']['pipeline']}", file=sys.stderr)
    if "train" in parts:
        amps = ("bf16", "fp16") if device.type == "cuda" else ("off",)
        with tempfile.TemporaryDirectory(prefix="medsr-cuda-check-train-") as tmp:
            report["parts"]["train"] = [check_training(device, size, params, amp, Path(tmp)) for amp in amps]
        for row in report["parts"]["train"]:
            print(f"train: {row}", file=sys.stderr)
    if "sample" in parts:
        report["parts"]["sample"] = check_sampling(device, size, params)
        for row in report["parts"]["sample"]["rows"]:
            print(f"sample: {row}", file=sys.stderr)
    report["seconds"] = round(time.perf_counter() - started, 1)
    checks = [report["parts"].get("pipeline", {"ok": True}), *report["parts"].get("train", []),
              report["parts"].get("sample", {"ok": True})]
    report["ok"] = all(c["ok"] for c in checks)
    io.write_json(args.out, report)
    print(json.dumps({"ok": report["ok"], "seconds": report["seconds"], "out": str(args.out)}))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
