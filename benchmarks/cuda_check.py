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
  train     train-sr's loop (`medsr.train_sr.train`) on synthetic 128 x 128 images per autocast dtype
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from medsr import io, train_sr, training  # noqa: E402
from medsr.config import load_params
from medsr.parameters import CLASSES, NULL_CLASS, SyntheticSource  # noqa: E402
from medsr.data.synthetic import generate as synthetic_images  # noqa: E402
from medsr.degrade import degrade_image  # noqa: E402
from medsr.device import deterministic_mode, resolve_device  # noqa: E402
from medsr.diffusion.model_file import build_unet  # noqa: E402
from medsr.diffusion.samplers import DDIMSampler, SamplerSpec, image_generators, make_sampler  # noqa: E402
from medsr.diffusion.schedule import process_schedule  # noqa: E402
from medsr.diffusion.unet import count_parameters  # noqa: E402
from medsr.pixels import bicubic_upsample, quantize  # noqa: E402
from medsr.stages import CLASSIFIER_MODEL  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("pipeline", "train", "sample", "quality", "compile")
DEFAULT_PARTS = ("pipeline", "train", "sample", "quality")
BUDGET_S = 300  # the acceptance target for the whole check on one H200 (reported, not enforced)
# the val tolerance of a sampling precision against fp32 (generate.precision)
PSNR_TOLERANCE_DB, SSIM_TOLERANCE, DECISION_AGREEMENT = 0.05, 0.002, 0.99


@dataclasses.dataclass(frozen=True)
class Size:
    """What a check runs at: the thesis's sizes, or tiny ones for the CPU test."""

    image_size: int
    overlays: tuple[str, ...]  # params overlays on params.yaml for sr_model / diffusion / train_sr
    train_steps: int  # bitwise (in)equality shows within a few dozen steps
    train_images: int
    batch_sizes: tuple[int, ...]
    sample_images: int  # images timed per row (at most 8 batches)
    matmul_side: int  # the square matmul that measures the device's matrix rate


THESIS = Size(128, ("configs/thesis.yaml",), 40, 64, (1, 8, 32, 64), 64, 8192)
TINY = Size(32, ("configs/smoke.yaml",), 4, 8, (1, 2), 2, 256)


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


def gpu_resources(device: torch.device) -> list[str]:
    """Snakemake --resources for a local run: on CUDA, GPU jobs share the device by their gpu_mem_mb estimates
    (workflow/rules/common.smk) within 85 % of its free memory; on the CPU, one `gpu` job at a time as before."""
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
    """train-sr's deterministic mode (medsr.device.deterministic_mode) for the duration, then the previous one."""
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
    peak = peak_memory_mb(device)  # what workflow/rules/common.smk's gpu_mem_mb of train_sr estimates
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


# --- sample: images/s, TFLOP/s and the share of the device's matmul rate ------------------------------

def network_flops(model: torch.nn.Module, image_size: int, device: torch.device) -> int:
    """FLOPs of one network call at batch 1 (torch's FlopCounterMode: matmuls, convolutions, attention)."""
    x = torch.zeros(1, 1, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
    t = torch.zeros(1, dtype=torch.long, device=device)
    labels = torch.full((1,), NULL_CLASS, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x, t, class_labels=labels, lr_upsampled=x)
    return int(counter.get_total_flops())


def matmul_tflops(device: torch.device, side: int, repeats: int = 20) -> dict:
    """The device's own dense matrix rate in this run: a side^3 matmul, bf16 on CUDA (fp32 on the CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(side, side, generator=generator).to(device, dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"dtype": str(dtype).removeprefix("torch."), "side": side, "tflops": 2 * side**3 * repeats / seconds / 1e12}


def time_sampler(model, schedule, spec: SamplerSpec, batch: int, size: int, device: torch.device,
                 images: int, precision: str = "fp32") -> tuple[float, float]:
    """(images/s of `spec` at `batch` over about `images` images (at most 8 batches), seconds of the untimed
    warm-up batch: with torch.compile, the compile time)."""
    sampler = make_sampler(model, schedule, "image", spec, precision=precision)
    bicubic = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.full((batch,), NULL_CLASS)
    ids = [f"i{i}" for i in range(batch)]
    # warm-up: one step of the same sampler; ancestral (all T steps) warms up with one DDIM step
    warm = (SamplerSpec(spec.name, 1) if spec.sampler_class.takes_steps
            else spec if spec.sampler_class.evaluations(spec.steps, schedule.timesteps) == 1
            else SamplerSpec(DDIMSampler.name, 1))
    synchronize(device)
    start = time.perf_counter()
    make_sampler(model, schedule, "image", warm, precision=precision).sample(bicubic, labels, image_generators(0, ids))
    synchronize(device)
    warm_up = time.perf_counter() - start
    rounds = max(1, min(math.ceil(images / batch), 8))
    start = time.perf_counter()
    for _ in range(rounds):
        sampler.sample(bicubic, labels, image_generators(0, ids))
    synchronize(device)
    return rounds * batch / (time.perf_counter() - start), warm_up


def sampling_setup(device: torch.device, size: Size, params):
    """A fresh thesis-size U-Net (channels_last, eval), both schedules, the FLOPs of one call, the matmul rate."""
    torch.manual_seed(0)
    model = build_unet(params.sr_model, "sr_diffusion").to(device, memory_format=torch.channels_last).eval()
    ddpm = process_schedule(dataclasses.replace(params.diffusion, process="ddpm"))
    resshift = process_schedule(dataclasses.replace(params.diffusion, process="resshift"))
    return model, ddpm, resshift, network_flops(model, size.image_size, device), matmul_tflops(device, size.matmul_side)


def sample_row(network, schedule, label: str, spec: SamplerSpec, batch: int, precision: str, compiled: bool,
               size: Size, device: torch.device, flops_per_call: int, matmul: dict) -> dict:
    rate, warm_up = time_sampler(network, schedule, spec, batch, size.image_size, device, size.sample_images,
                                 precision)
    tflops = rate * spec.evaluations(schedule.timesteps) * flops_per_call / 1e12
    return {"sampler": label, "batch": batch, "precision": precision, "compiled": compiled,
            "images_per_s": rate, "tflops": tflops, "share_of_matmul_rate": tflops / matmul["tflops"],
            "warm_up_s": round(warm_up, 2)}


def check_sampling(device: torch.device, size: Size, params) -> dict:
    model, ddpm, resshift, flops_per_call, matmul = sampling_setup(device, size, params)
    seed_style, _ = time_sampler(model, ddpm, SamplerSpec("ancestral", 0), 1, size.image_size, device, 1)
    precisions = ("fp32", "bf16") if device.type == "cuda" else ("fp32",)
    samplers = (("ddim 20", ddpm, SamplerSpec("ddim", 20)), ("resshift 4", resshift, SamplerSpec("resshift", 4)),
                ("student", resshift, SamplerSpec("student", 1)))  # the one-step student: one call of the same U-Net
    rows = [sample_row(model, schedule, label, spec, batch, precision, False, size, device, flops_per_call, matmul)
            for batch in size.batch_sizes for precision in precisions for label, schedule, spec in samplers]
    for row in rows:
        row["x_seed_style"] = row["images_per_s"] / seed_style
    return {"image_size": size.image_size, "parameters": count_parameters(model), "timesteps": ddpm.timesteps,
            "gflop_per_call_batch1": flops_per_call / 1e9, "matmul": matmul,
            "seed_style_images_per_s": seed_style, "rows": rows, "weights": "fresh (speed only)", "ok": True}


def check_compile(device: torch.device, size: Size, params) -> dict:
    """ResShift K = 4 at the largest batch: eager, eager with cuDNN autotuning (cudnn.benchmark: fastest kernels
    per shape, not bitwise reproducible across runs), then through torch.compile (warm_up_s: the compile time)."""
    model, _, resshift, flops_per_call, matmul = sampling_setup(device, size, params)
    precision = "bf16" if device.type == "cuda" else "fp32"
    spec, batch = SamplerSpec("resshift", 4), size.batch_sizes[-1]

    def row(network, compiled: bool, benchmark: bool) -> dict:
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = benchmark
        try:
            return {**sample_row(network, resshift, "resshift 4", spec, batch, precision, compiled, size, device,
                                 flops_per_call, matmul), "cudnn_benchmark": benchmark}
        finally:
            torch.backends.cudnn.benchmark = before

    rows = [row(model, False, False), row(model, False, True)]
    try:
        rows.append(row(torch.compile(model, dynamic=False), True, True))
    except Exception as err:  # noqa: BLE001 - inductor/triton raise many types; the message is what matters
        rows.append({"sampler": "resshift 4", "batch": batch, "precision": precision, "compiled": True,
                     "cudnn_benchmark": True, "error": f"{type(err).__name__}: {str(err)[:1000]}"})
    return {"rows": rows, "matmul": matmul, "gflop_per_call_batch1": flops_per_call / 1e9, "ok": True}


# --- quality: a sampling precision against fp32 on a finished run's val images ----------------------

def run_files(run: Path, params) -> dict[str, Path]:
    classifier = CLASSIFIER_MODEL.format(arch="resnet18", domain="hr", seed=params.evaluate.train_seeds[0])
    return {"model": run / "models" / "sr.safetensors", "hr": run / "data" / "hr", "lr": run / "data" / "lr",
            "classifier": run / "models" / "classifiers" / classifier}


def check_quality(device: torch.device, run: Path | None, run_config: list[str], limit: int | None) -> dict:
    """The val images of `run` super-resolved at fp32 and at the candidate precision, as generate does (its
    sampler, steps, batch size, null guidance, the first sampling seed), 8-bit quantised as written."""
    if run is None:
        return {"ok": True, "skipped": "no --run DIR given (a finished run: models/sr.safetensors, data/, a "
                                       "classifier): the bf16-vs-fp32 val quality is unmeasured"}
    params = load_params([run / "params.yaml", *(run / c for c in run_config)])
    files = run_files(run, params)
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        return {"ok": False, "run": str(run), "skipped": f"the run lacks {', '.join(missing)}"}
    from medsr.classifier.model import load_classifier, predict_proba
    from medsr.diffusion.model_file import load_unet
    from medsr.evaluation.quality import psnr, ssim

    candidate = "bf16" if device.type == "cuda" else "fp32"  # bf16 is refused on the CPU
    loaded = load_unet(files["model"], "sr_diffusion", device)
    records = sorted(io.read_manifest(files["lr"], "val"), key=lambda r: r.id)[:limit]
    hr_by_id = {r.id: r for r in io.read_manifest(files["hr"], "val")}
    hr = io.load_images(files["hr"], [hr_by_id[r.id] for r in records])
    spec = SamplerSpec(params.generate.sampler, params.generate.steps, params.generate.eta)
    seed, batch = params.evaluate.sampling_seeds[0], params.generate.batch_size
    sr, seconds = {}, {}
    for precision in ("fp32", candidate) if candidate != "fp32" else ("fp32",):
        sampler = make_sampler(loaded.model, loaded.schedule, loaded.target, spec, precision=precision)
        labels = torch.full((len(records),), NULL_CLASS)
        start = time.perf_counter()
        parts = [quantize(sampler.sample(loaded.bicubic_input(files["lr"], records[i:i + batch]), labels[i:i + batch],
                                         image_generators(seed, [r.id for r in records[i:i + batch]])))
                 for i in range(0, len(records), batch)]
        seconds[precision] = time.perf_counter() - start
        sr[precision] = torch.cat(parts)[:, 0].float().cpu().numpy()
    sr.setdefault(candidate, sr["fp32"])
    classifier = load_classifier(files["classifier"], device)
    decisions = {p: predict_proba(classifier, torch.from_numpy(sr[p])[:, None]).argmax(1).numpy() for p in sr}
    quality = {p: {"psnr": float(np.mean([psnr(a, b) for a, b in zip(sr[p], hr)])),
                   "ssim": float(np.mean([ssim(a, b) for a, b in zip(sr[p], hr)]))} for p in sr}
    d_psnr = quality[candidate]["psnr"] - quality["fp32"]["psnr"]
    d_ssim = quality[candidate]["ssim"] - quality["fp32"]["ssim"]
    agreement = float(np.mean(decisions[candidate] == decisions["fp32"]))
    ok = abs(d_psnr) <= PSNR_TOLERANCE_DB and abs(d_ssim) <= SSIM_TOLERANCE and agreement >= DECISION_AGREEMENT
    return {"ok": ok, "run": str(run), "candidate": candidate, "images": len(records), "sampler": spec.name,
            "steps": spec.steps, "seed": seed, "fp32": quality["fp32"], "candidate_quality": quality[candidate],
            "psnr_difference_db": d_psnr, "ssim_difference": d_ssim, "decision_agreement": agreement,
            "max_abs_pixel_difference": float(np.abs(sr[candidate] - sr["fp32"]).max()),
            "seconds": {p: round(s, 2) for p, s in seconds.items()},
            "tolerance": {"psnr_db": PSNR_TOLERANCE_DB, "ssim": SSIM_TOLERANCE, "agreement": DECISION_AGREEMENT}}


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
