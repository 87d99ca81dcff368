"""The sampling side of benchmarks/cuda_check.py: its `sample` part (images/s, TFLOP/s from a FLOP count of one
network call, and their share of the device's own matmul rate), its `compile` part (ResShift K = 4 eager and through
torch.compile) and its `quality` part (a sampling precision against fp32 on a finished run's val images), with the
sizes they run at (`Size`). benchmarks/cuda_check.py is the command: it sets up the device (CUBLAS_WORKSPACE_CONFIG
before torch starts CUDA), runs the pipeline and train parts itself and these through this module, and writes the
report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from medsr.core import io
from medsr.core.config import load_params
from medsr.diffusion.unet import build_unet
from medsr.diffusion.samplers import DDIMSampler, SamplerSpec, image_generators, make_sampler
from medsr.diffusion.schedule import process_schedule
from medsr.diffusion.unet import count_parameters
from medsr.core.parameters import NULL_CLASS
from medsr.data.pixels import quantize
from medsr.stages import CLASSIFIER_MODEL

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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    from medsr.diffusion.unet import load_unet
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
