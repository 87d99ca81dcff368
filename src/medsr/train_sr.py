"""Train the class-guided diffusion SR model (`medsr train-sr`).

Noise-prediction MSE (Eq. 1.13) for `diffusion.process: ddpm`, x_0-prediction MSE for `resshift`
(Yue et al. 2023, `medsr.diffusion.resshift`), on aligned random crops, classifier-free null-class dropout
(Section 3.1.7), Adam, gradient clipping, EMA; resumable checkpoints; DDP under torchrun.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from medsr import training
from medsr.checkpoint import load_training_state, save_model, save_training_state
from medsr.config import NULL_CLASS, DiffusionParams, TrainSRParams, UNetParams, to_jsonable
from medsr.device import autocast, deterministic_mode, needs_grad_scaler
from medsr.randomness import derived_seed
from medsr.diffusion.ema import EMA
from medsr.diffusion.process import Process
from medsr.diffusion.schedule import encode_target, process_schedule, to_model_range
from medsr.diffusion.model_file import build_unet
from medsr.diffusion.unet import UNet, count_parameters

STATE_FILE = "train_sr_state.pt"
# Parameters that change neither the model nor the trajectory: a checkpoint written under other values
# of these still resumes (so `steps` can be raised to train further).
RESUME_INDEPENDENT = ("steps", "checkpoint_every", "log_every")


KIND = "sr_diffusion"


def build_model(model_params: UNetParams) -> UNet:
    return build_unet(model_params, KIND)


def resume_config(model_params: UNetParams, diffusion_params: DiffusionParams, train_params: TrainSRParams,
                  data: training.PairedImages) -> dict:
    train = {k: v for k, v in to_jsonable(train_params).items() if k not in RESUME_INDEPENDENT}
    return {"sr_model": to_jsonable(model_params), "diffusion": to_jsonable(diffusion_params), "train_sr": train,
            "data": {"images": len(data.ids), "hr_size": list(data.hr_size), "scale": data.scale,
                     "sha256": data.content_sha256()}}  # the content: re-degraded LR images are other data


def _mismatch(state: dict, config: dict, steps: int) -> str:
    """Why a checkpoint is not resumed, for the message: which part of its key differs."""
    old = state.get("config")
    if not isinstance(old, dict):
        return "by another version (no resume key)"
    if old.get("data") != config["data"]:
        return "for other training data (the HR or LR images, or their ids or labels, differ)"
    differing = [section for section in config if old.get(section) != config[section]]
    if differing:
        return f"under other {', '.join(differing)} parameters"
    return f"at step {state.get('step')}, past train_sr.steps {steps}"


def draw_batch(data: training.PairedImages, train_params: TrainSRParams, timesteps: int,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One global batch: crops, timesteps, noise and the null-class dropout, all from `generator`."""
    hr, bicubic, labels = training.random_crops(data, train_params.batch_size, train_params.crop,
                                                train_params.hflip, generator)
    t = torch.randint(timesteps, (len(hr),), generator=generator)
    noise = torch.randn(hr.shape, generator=generator)
    drop = torch.rand(len(hr), generator=generator) < train_params.null_class_prob
    labels = torch.where(drop, torch.full_like(labels, NULL_CLASS), labels)  # Section 3.1.7: null class
    return {"hr": hr, "bicubic": bicubic, "labels": labels, "t": t, "noise": noise}


def diffusion_loss(model: torch.nn.Module, process: Process, target: str,
                   batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The process's training loss on one batch, in the encoded space of `diffusion.target`."""
    x0 = encode_target(batch["hr"], batch["bicubic"], target)
    y0 = encode_target(batch["bicubic"], batch["bicubic"], target)  # the bicubic image (resshift's start)
    return process.training_loss(model, x0, y0, batch["t"], batch["noise"], batch["labels"],
                                 to_model_range(batch["bicubic"]))


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        value = value.to(device, non_blocking=True)
        out[key] = value.contiguous(memory_format=torch.channels_last) if value.ndim == 4 else value
    return out


def rng_states() -> dict[str, object]:
    """The global CPU and CUDA (every device) generators. Each step reseeds them (`derived_seed`), so a resume does
    not depend on them today; they are kept so that one that did would still resume exactly."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"cpu_rng": torch.get_rng_state(), "cuda_rng": cuda}


def restore_rng(state: dict) -> None:
    if "cpu_rng" in state:
        torch.set_rng_state(state["cpu_rng"].to("cpu"))
    cuda = state.get("cuda_rng") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to("cpu") for s in cuda])


def train(model_params: UNetParams, diffusion_params: DiffusionParams, train_params: TrainSRParams,
          data: training.PairedImages, *, ctx: training.Distributed, log: Path | None,
          checkpoints: Path | None) -> tuple[UNet, EMA, float]:
    """The training loop; returns (model, ema, final logged loss). Only rank 0 writes files."""
    device = ctx.device
    torch.manual_seed(train_params.seed)  # identical initial weights on every rank
    model = build_model(model_params).to(device, memory_format=torch.channels_last)
    training.check_crop(train_params.crop, data, model.size_multiple, "train_sr.crop")
    per_rank = training.per_rank_batch(train_params.batch_size, ctx, "train_sr.batch_size")
    if ctx.is_main:
        print(f"train-sr: U-Net with {count_parameters(model):,} parameters; {len(data.ids)} train images "
              f"{data.hr_size} (scale {data.scale}); {ctx.world_size} process(es) x batch {per_rank}",
              file=sys.stderr)
    schedule = process_schedule(diffusion_params)
    ema = EMA(model, train_params.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_params.learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(device))
    generator = torch.Generator().manual_seed(train_params.seed)
    config = resume_config(model_params, diffusion_params, train_params, data)
    step, rows, window = 0, [], []  # window: losses since the last log row
    saved_step = None  # the step of the last checkpoint of this run on disk (resumed or written)

    state_path = checkpoints / STATE_FILE if checkpoints else None
    if state_path is not None and state_path.is_file():
        state = load_training_state(state_path, device="cpu")
        if state.get("config") == config and state["step"] <= train_params.steps:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            restore_rng(state)
            if state.get("scaler"):  # fp16 loss scale (empty when the scaler was off)
                scaler.load_state_dict(state["scaler"])
            step, rows = int(state["step"]), list(state["log"])
            saved_step = step
            window = list(state.get("window", []))  # so the next log row covers the same steps as without a stop
            if ctx.is_main:
                print(f"train-sr: resuming from {state_path} at step {step}", file=sys.stderr)
        elif ctx.is_main:
            print(f"train-sr: {state_path} was written {_mismatch(state, config, train_params.steps)}; "
                  f"starting anew", file=sys.stderr)

    def diverged(what: str, at_step: int) -> training.Diverged:
        if state_path is None:
            kept = "no checkpoints folder"
        elif saved_step is None:
            kept = f"no checkpoint of this run in {checkpoints}"
        else:
            kept = f"last good checkpoint (step {saved_step}) kept in {checkpoints}"
        return training.Diverged(f"train-sr: {what} at step {at_step} (train_sr.learning_rate "
                                 f"{train_params.learning_rate:g}): training diverged; no model written; {kept}")

    def save_state() -> None:
        nonlocal saved_step
        if state_path is None:
            return
        if not training.all_finite(model, ema.shadow):  # identical on every rank: all raise or none
            raise diverged("non-finite weights", step)
        window_means = [ctx.mean(loss) for loss in window]  # every rank takes part: the same window on resume
        if not ctx.is_main:
            saved_step = step
            return
        save_training_state(state_path, {
            "config": config, "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "generator": generator.get_state(),
            **rng_states(), "log": rows, "window": window_means})
        saved_step = step

    net = training.wrap(model, ctx)
    net.train()
    progress = tqdm(total=train_params.steps, initial=step, disable=not ctx.is_main, desc="train-sr",
                    dynamic_ncols=True, mininterval=2.0)
    while step < train_params.steps:
        batch = draw_batch(data, train_params, schedule.timesteps, generator)
        batch = _to({k: ctx.shard(v) for k, v in batch.items()}, device)
        # dropout masks differ per rank and step, and a resumed run draws those of an uninterrupted one on every device
        torch.manual_seed(derived_seed(train_params.seed, ctx.rank, step))
        with autocast(device):
            loss = diffusion_loss(net, schedule, diffusion_params.target, batch)
        global_loss = ctx.mean(loss.item())  # non-finite on every rank when on any: all stop together
        if not math.isfinite(global_loss):  # before any update: the weights (and a checkpoint of them) stay finite
            progress.close()
            raise diverged(f"loss is {global_loss}", step + 1)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if train_params.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_params.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        ema.update(model)
        step += 1
        window.append(loss.item())
        progress.update(1)
        if step % train_params.log_every == 0 or step == train_params.steps:
            mean_loss = ctx.mean(sum(window) / len(window))
            if step % train_params.log_every == 0:  # a last, partial row keeps its window for a resume with more steps
                window = []
            rows.append({"step": step, "loss": mean_loss, "learning_rate": optimizer.param_groups[0]["lr"]})
            progress.set_postfix(loss=f"{mean_loss:.4f}")
            if ctx.is_main and log is not None:
                training.write_log(log, rows)
        if step % train_params.checkpoint_every == 0 or step == train_params.steps:
            save_state()
    progress.close()
    if not training.all_finite(model, ema.shadow):
        raise diverged("non-finite weights", step)
    if ctx.is_main and log is not None:
        training.write_log(log, rows)
    final_loss = rows[-1]["loss"] if rows else float("nan")
    return model, ema, final_loss


def run(model_params: UNetParams, diffusion_params: DiffusionParams, train_params: TrainSRParams, *,
        hr: Path, lr: Path, model: Path, log: Path, checkpoints: Path, device: torch.device | None) -> None:
    training.set_threads()
    ctx = training.init_distributed(device)
    deterministic_mode(ctx.device)  # CUDA: a resumed run equals a straight one bitwise
    data = training.load_pairs(hr, lr, "train")
    trained, ema, final_loss = train(model_params, diffusion_params, train_params, data, ctx=ctx, log=log,
                                     checkpoints=checkpoints)
    if ctx.is_main:
        metadata = {
            "kind": KIND, "sr_model": to_jsonable(model_params), "diffusion": to_jsonable(diffusion_params),
            "train_sr": to_jsonable(train_params),
            **data.geometry(), "training_steps": train_params.steps, "final_loss": final_loss, "weights": "ema"}
        save_model(model, ema.shadow.state_dict(), metadata)  # the EMA weights are the ones sampled
        print(f"train-sr: wrote {model} (EMA weights, final loss {final_loss:.4f})", file=sys.stderr)
    training.barrier(ctx)
