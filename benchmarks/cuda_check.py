"""The CUDA path in one command (about 5 minutes on one H200): the smoke pipeline on the device, thesis-size
training under bf16 and fp16 autocast (fp16 with GradScaler) run twice and resumed, sampling throughput at thesis
size (128 x 128, the U-Net of configs/thesis.yaml) with FLOP counts and the device's own bf16 matmul rate, and,
given a finished run, the bf16-vs-fp32 sampling quality on its val images.

    python benchmarks/cuda_check.py                       # on cuda; writes results/benchmarks/cuda_check.json
    python benchmarks/cuda_check.py --run RUN_DIR         # also the val quality check of generate.precision bf16
    python benchmarks/cuda_check.py --device cpu --tiny   # the same logic at tiny sizes (tests/test_cuda_check.py)

Parts (--parts, comma-separated):
  pipeline  the smoke DAG (configs/smoke.yaml) by Snakemake in a scratch copy of the project, MEDSR_DEVICE set;
            with --tiny a dry run (-n) only
  train     train-sr's loop (`medsr.stages.train_sr.train`) on synthetic 128 x 128 images per autocast dtype
            ($MEDSR_AMP: bf16, fp16; on CPU fp32 only) under train-sr's deterministic mode: N steps straight twice
            (determinism: "same run twice" must be bitwise equal), then N/2 + resume to N from the checkpoint
            (state completeness: "resume" must equal the straight run bitwise). Warnings raised meanwhile (a
            non-deterministic op names itself) are recorded.
  sample    images/s of seed-style ancestral (1 image, T = 500, fp32), DDIM 20, ResShift K = 4 and the one-step
            student (generate.sampler student: one call of the same U-Net) per batch size and
            generate.precision (fp32; bf16 on CUDA), with TFLOP/s from a FLOP count of one network call and their
            share of the bf16 matmul rate measured here; fresh weights
  quality   with --run DIR (a finished run: models/sr.safetensors, data/hr, data/lr, the first HR resnet18
            classifier, params.yaml [+ --run-config overlays]): the val images super-resolved at fp32 and at the
            candidate precision (bf16 on CUDA; fp32 on the CPU, where bf16 is refused): PSNR within 0.05 dB, SSIM
            within 0.002, the same HR-classifier decision on >= 99 % of images. Without --run: skipped, said so.
  compile   (only when named in --parts) ResShift K = 4 at the largest batch, eager, eager with cudnn.benchmark,
            and through torch.compile (bf16 on CUDA), with the compile time; a compile failure is reported, not
            fatal (speed only)
--append adds the parts run to an existing --out report (e.g. quality once a run has finished).
Every part reports its seconds; parts that would start past --max-seconds are skipped (and fail the check).
Exits non-zero when a check fails (a non-finite loss, a non-bitwise rerun or resume, a failed pipeline, a
precision outside the val tolerance).
"""

from __future__ import annotations

import argparse
import contextlib
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
import warnings
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS: set before CUDA starts

import torch  # noqa: E402

from medsr.core import io
from medsr.stages import train_sr
from medsr.core import training  # noqa: E402
from medsr.core.config import load_params  # noqa: E402
from medsr.core.parameters import CLASSES, SyntheticSource  # noqa: E402
from medsr.data.synthetic import generate as synthetic_images  # noqa: E402
from medsr.stages.degrade import degrade_image  # noqa: E402
from medsr.core.device import deterministic_mode, resolve_device  # noqa: E402
from medsr.diffusion.unet import count_parameters  # noqa: E402
from medsr.data.pixels import bicubic_upsample  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sample, compile and quality parts beside it
from cuda_sampling import Size, check_compile, check_quality, check_sampling, synchronize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("pipeline", "train", "sample", "quality", "compile")
DEFAULT_PARTS = ("pipeline", "train", "sample", "quality")
BUDGET_S = 300  # the acceptance target for the whole check on one H200 (reported, not enforced)

THESIS = Size(128, ("configs/thesis.yaml",), 40, 64, (1, 8, 32, 64), 64, 8192)
TINY = Size(32, ("configs/smoke.yaml",), 4, 8, (1, 2), 2, 256)


def project_copy(dest: Path) -> Path:
    """The workflow files, sources and params of this project in `dest` (a scratch project)."""
    dest.mkdir(parents=True)
    for name in ("Snakefile", "dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in ("workflow", "configs", "src"):
        shutil.copytree(ROOT / folder, dest / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def gpu_resources(device: torch.device) -> list[str]:
    """Snakemake --resources for a local run: on CUDA, GPU jobs share the device by their gpu_mem_mb estimates
    (`gpu_mem_mb` in the stage table, medsr.stages) within 85 % of its free memory; on the CPU, one `gpu` job at a
    time as before."""
    if device.type != "cuda":
        return ["--resources", "gpu=1"]
    free, _ = torch.cuda.mem_get_info(device)
    return ["--max-threads", "2", "--resources", f"gpu_mem_mb={int(free / 2**20 * 0.85)}"]


def check_pipeline(device: torch.device, dry_run: bool, cores: int) -> dict:
    """The smoke DAG by Snakemake with MEDSR_DEVICE = device, in a scratch copy; dry_run: plan only."""
    with tempfile.TemporaryDirectory(prefix="medsr-cuda-check-") as tmp:
        project = project_copy(Path(tmp) / "project")
        env = dict(os.environ, MEDSR_DEVICE=str(device), PYTHONPATH=str(project / "src"),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        command = [sys.executable, "-m", "snakemake", "--cores", str(cores), *gpu_resources(device),
                   "--configfile", "configs/smoke.yaml", *(["-n"] if dry_run else [])]
        start = time.perf_counter()
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        outputs = {name: (project / "results" / name).exists() for name in ("metrics.json", "evaluation.json")}
    ok = result.returncode == 0 and (dry_run or all(outputs.values()))
    return {"ok": ok, "dry_run": dry_run, "returncode": result.returncode, "seconds": round(seconds, 1),
            "command": " ".join(command[1:]), "outputs": outputs,
            "log_tail": (result.stdout + result.stderr)[-2000:] if not ok else ""}


# --- train: the same run twice (determinism), and a resume (state completeness) ----------------------

def synthetic_pairs(size: Size, scale: int) -> training.PairedImages:
    """`size.train_images` synthetic MRI-like train images (both classes), degraded by Eq. 1.1 (no noise)."""
    source = SyntheticSource(train_per_class=size.train_images // 2, test_per_class=1, seed=0)
    images = [im for im in synthetic_images(source, size.image_size) if im.split == "train"]
    hr = torch.stack([torch.from_numpy(im.image).float() for im in images])[:, None]
    lr = degrade_image(hr, scale, 0.5, 0.0)
    labels = torch.tensor([CLASSES.index(im.label) for im in images])
    return training.PairedImages([im.id for im in images], hr, lr, bicubic_upsample(lr, scale), labels, scale)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory allocated by torch on a CUDA device since the last reset (None on the CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa if sa[k].is_floating_point())


@contextlib.contextmanager
def deterministic(device: torch.device):
    """train-sr's deterministic mode (medsr.core.device.deterministic_mode) for the duration, then the previous one."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    deterministic_mode(device)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


@contextlib.contextmanager
def amp_setting(amp: str):
    previous = os.environ.get("MEDSR_AMP")
    os.environ["MEDSR_AMP"] = amp
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MEDSR_AMP", None)
        else:
            os.environ["MEDSR_AMP"] = previous


def recorded_warnings(caught: list) -> list[dict]:
    """The distinct warnings (category, message, where): a non-deterministic op under warn_only names itself."""
    seen, out = set(), []
    for w in caught:
        key = (w.category.__name__, str(w.message)[:500])
        if key not in seen:
            seen.add(key)
            out.append({"category": key[0], "message": key[1], "where": f"{Path(w.filename).name}:{w.lineno}"})
    return out


def check_training(device: torch.device, size: Size, params, amp: str, workdir: Path) -> dict:
    """N steps straight, twice; N/2 steps then a resume to N: finite losses and bitwise the same weights."""
    with amp_setting(amp), deterministic(device), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = _train_runs(device, size, params, amp, workdir)
    row["warnings"] = recorded_warnings(caught)
    row["nondeterminism_warnings"] = [w for w in row["warnings"] if "determinis" in w["message"].lower()]
    return row


def _train_runs(device: torch.device, size: Size, params, amp: str, workdir: Path) -> dict:
    ctx = training.Distributed(0, 1, device)
    data = synthetic_pairs(size, params.degrade.scale)
    steps = size.train_steps - size.train_steps % 2
    train = dataclasses.replace(params.train_sr, steps=steps, checkpoint_every=steps // 2, log_every=1)
    half = dataclasses.replace(train, steps=steps // 2)
    folder = workdir / f"train_{amp}"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    first, first_ema, first_loss = train_sr.train(params.sr_model, params.diffusion, train, data, ctx=ctx,
                                                  log=folder / "first.csv", checkpoints=None)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = peak_memory_mb(device)  # what the stage table's gpu_mem_mb of train_sr estimates
    second, second_ema, second_loss = train_sr.train(params.sr_model, params.diffusion, train, data, ctx=ctx,
                                                     log=folder / "second.csv", checkpoints=None)
    train_sr.train(params.sr_model, params.diffusion, half, data, ctx=ctx, log=folder / "resumed.csv",
                   checkpoints=folder / "checkpoints")
    resumed, resumed_ema, resumed_loss = train_sr.train(params.sr_model, params.diffusion, train, data, ctx=ctx,
                                                        log=folder / "resumed.csv",
                                                        checkpoints=folder / "checkpoints")
    losses = [float(r["loss"]) for r in io.read_csv(folder / "first.csv")]
    twice = max(_max_difference(first, second), _max_difference(first_ema.shadow, second_ema.shadow))
    resume = max(_max_difference(first, resumed), _max_difference(first_ema.shadow, resumed_ema.shadow))
    finite = all(math.isfinite(x) for x in losses)
    return {
        "amp": amp if device.type == "cuda" else "fp32 (autocast is CUDA only)",
        "steps": steps,
        "batch_size": train.batch_size,
        "crop": train.crop,
        "parameters": count_parameters(first),
        "seconds_per_step": seconds / steps,
        "peak_memory_mb": peak,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "losses_finite": finite,
        "same_run_twice_max_abs_difference": twice,
        "same_run_twice_exact": twice == 0.0,
        "same_run_twice_final_loss_equal": second_loss == first_loss,
        "resume_max_abs_difference": resume,
        "resume_exact": resume == 0.0,
        "resumed_final_loss_equal": resumed_loss == first_loss,
        "ok": finite and twice == 0.0 and resume == 0.0,
    }


# --- main -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU test)")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS))
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="Snakemake --cores for the smoke pipeline (default: all)")
    parser.add_argument("--append", action="store_true", help="add the parts to the report already at --out")
    parser.add_argument("--run", type=Path, default=None, help="a finished run folder for the quality part")
    parser.add_argument("--run-config", action="append", default=[],
                        help="params overlay of that run, relative to it (repeatable)")
    parser.add_argument("--quality-images", type=int, default=None, help="at most this many val images")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="parts that would start after this many seconds are skipped (the check fails)")
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
    report: dict = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "torch": torch.__version__, "cuda": torch.version.cuda, "machine": platform.machine(),
                    "tiny": args.tiny, "parts": {}, "part_seconds": {}}
    if args.append and args.out.is_file():
        earlier = json.loads(args.out.read_text())
        report["parts"], report["part_seconds"] = earlier.get("parts", {}), earlier.get("part_seconds", {})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medsr-cuda-check-train-") as tmp:
        jobs = {
            "pipeline": lambda: check_pipeline(device, dry_run=args.tiny, cores=args.cores),
            "train": lambda: [check_training(device, size, params, amp, Path(tmp))
                              for amp in (("bf16", "fp16") if device.type == "cuda" else ("off",))],
            "sample": lambda: check_sampling(device, size, params),
            "compile": lambda: check_compile(device, size, params),
            "quality": lambda: check_quality(device, args.run, args.run_config, args.quality_images),
        }
        for part in (p for p in PARTS if p in parts):
            if time.perf_counter() - started > args.max_seconds:
                report["parts"][part] = {"ok": False, "skipped": f"past --max-seconds {args.max_seconds:g}"}
                continue
            part_start = time.perf_counter()
            report["parts"][part] = jobs[part]()
            report["part_seconds"][part] = round(time.perf_counter() - part_start, 1)
            print(f"{part} ({report['part_seconds'][part]} s): {json.dumps(report['parts'][part])[:3000]}",
                  file=sys.stderr)
            io.write_json(args.out, report)  # a killed run still leaves the parts it finished
    report["seconds"] = round(sum(report["part_seconds"].values()), 1)
    report["within_budget"] = {"budget_s": BUDGET_S, "ok": report["seconds"] <= BUDGET_S}
    checks = [c for value in report["parts"].values() for c in (value if isinstance(value, list) else [value])]
    report["ok"] = all(c["ok"] for c in checks)
    io.write_json(args.out, report)
    print(json.dumps({"ok": report["ok"], "seconds": report["seconds"], "out": str(args.out)}))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
