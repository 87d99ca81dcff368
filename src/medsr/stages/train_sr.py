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

from medsr.core import training
from medsr.core.model_files import load_training_state, save_model, save_training_state
from medsr.core.config import to_jsonable
from medsr.core.parameters import NULL_CLASS, DiffusionParams, TrainSRParams, UNetParams
from medsr.core.device import autocast, deterministic_mode, needs_grad_scaler
from medsr.core.randomness import derived_seed
from medsr.diffusion.ema import EMA
from medsr.diffusion.process import Process
from medsr.diffusion.schedule import encode_target, process_schedule, to_model_range
from medsr.diffusion.unet import build_unet
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


class SRTraining:
    """One training run's state (what a checkpoint holds) and its steps: resume, one optimizer step, log, save."""

    def __init__(self, model_params: UNetParams, diffusion_params: DiffusionParams, train_params: TrainSRParams,
                 data: training.PairedImages, ctx: training.Distributed, checkpoints: Path | None):
        self.params, self.ctx, self.data, self.checkpoints = train_params, ctx, data, checkpoints
        torch.manual_seed(train_params.seed)  # identical initial weights on every rank
        self.model = build_model(model_params).to(ctx.device, memory_format=torch.channels_last)
        training.check_crop(train_params.crop, data, self.model.size_multiple, "train_sr.crop")
        per_rank = training.per_rank_batch(train_params.batch_size, ctx, "train_sr.batch_size")
        if ctx.is_main:
            print(f"train-sr: U-Net with {count_parameters(self.model):,} parameters; {len(data.ids)} train images "
                  f"{data.hr_size} (scale {data.scale}); {ctx.world_size} process(es) x batch {per_rank}",
                  file=sys.stderr)
        self.process = process_schedule(diffusion_params)
        self.target = diffusion_params.target
        self.ema = EMA(self.model, train_params.ema_decay)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_params.learning_rate)
        self.scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(ctx.device))
        self.generator = torch.Generator().manual_seed(train_params.seed)
        self.config = resume_config(model_params, diffusion_params, train_params, data)
        self.step, self.rows, self.window = 0, [], []  # window: losses since the last log row
        self.saved_step = None  # the step of the last checkpoint of this run on disk (resumed or written)
        self.state_path = checkpoints / STATE_FILE if checkpoints else None

    def resume(self) -> None:
        """Continue from the checkpoint when it was written under this run's key, at or before train_sr.steps."""
        if self.state_path is None or not self.state_path.is_file():
            return
        state = load_training_state(self.state_path, device="cpu")
        if state.get("config") != self.config or state["step"] > self.params.steps:
            if self.ctx.is_main:
                print(f"train-sr: {self.state_path} was written {_mismatch(state, self.config, self.params.steps)}; "
                      f"starting anew", file=sys.stderr)
            return
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        restore_rng(state)
        if state.get("scaler"):  # fp16 loss scale (empty when the scaler was off)
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.rows = int(state["step"]), list(state["log"])
        self.saved_step = self.step
        self.window = list(state.get("window", []))  # so the next log row covers the same steps as without a stop
        if self.ctx.is_main:
            print(f"train-sr: resuming from {self.state_path} at step {self.step}", file=sys.stderr)

    def diverged(self, what: str, at_step: int) -> training.Diverged:
        if self.state_path is None:
            kept = "no checkpoints folder"
        elif self.saved_step is None:
            kept = f"no checkpoint of this run in {self.checkpoints}"
        else:
            kept = f"last good checkpoint (step {self.saved_step}) kept in {self.checkpoints}"
        return training.Diverged(f"train-sr: {what} at step {at_step} (train_sr.learning_rate "
                                 f"{self.params.learning_rate:g}): training diverged; no model written; {kept}")

    def save_state(self) -> None:
        if self.state_path is None:
            return
        if not training.all_finite(self.model, self.ema.shadow):  # identical on every rank: all raise or none
            raise self.diverged("non-finite weights", self.step)
        window_means = [self.ctx.mean(loss) for loss in self.window]  # every rank: the same window on resume
        if self.ctx.is_main:
            save_training_state(self.state_path, {
                "config": self.config, "step": self.step, "model": self.model.state_dict(),
                "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "generator": self.generator.get_state(),
                **rng_states(), "log": self.rows, "window": window_means})
        self.saved_step = self.step

    def loss(self, net: torch.nn.Module) -> torch.Tensor:
        """The loss of the next global batch (this rank's slice); the generator draws the whole batch."""
        batch = draw_batch(self.data, self.params, self.process.timesteps, self.generator)
        batch = _to({k: self.ctx.shard(v) for k, v in batch.items()}, self.ctx.device)
        # dropout masks differ per rank and step, and a resumed run draws those of an uninterrupted one on every device
        torch.manual_seed(derived_seed(self.params.seed, self.ctx.rank, self.step))
        with autocast(self.ctx.device):
            return diffusion_loss(net, self.process, self.target, batch)

    def update(self, loss: torch.Tensor) -> None:
        """One optimizer step (gradient clipping, fp16 loss scaling) and the EMA after it."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.params.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.params.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)

    def log_row(self, log: Path | None) -> float:
        """A loss-log row: the mean loss of the window since the last row, over all ranks."""
        mean_loss = self.ctx.mean(sum(self.window) / len(self.window))
        if self.step % self.params.log_every == 0:  # a last, partial row keeps its window for a resume with more steps
            self.window = []
        self.rows.append({"step": self.step, "loss": mean_loss, "learning_rate": self.optimizer.param_groups[0]["lr"]})
        if self.ctx.is_main and log is not None:
            training.write_log(log, self.rows)
        return mean_loss


def train(model_params: UNetParams, diffusion_params: DiffusionParams, train_params: TrainSRParams,
          data: training.PairedImages, *, ctx: training.Distributed, log: Path | None,
          checkpoints: Path | None) -> tuple[UNet, EMA, float]:
    """The training loop; returns (model, ema, final logged loss). Only rank 0 writes files."""
    run = SRTraining(model_params, diffusion_params, train_params, data, ctx, checkpoints)
    run.resume()
    net = training.wrap(run.model, ctx)
    net.train()
    progress = tqdm(total=train_params.steps, initial=run.step, disable=not ctx.is_main, desc="train-sr",
                    dynamic_ncols=True, mininterval=2.0)
    while run.step < train_params.steps:
        loss = run.loss(net)
        global_loss = ctx.mean(loss.item())  # non-finite on every rank when on any: all stop together
        if not math.isfinite(global_loss):  # before any update: the weights (and a checkpoint of them) stay finite
            progress.close()
            raise run.diverged(f"loss is {global_loss}", run.step + 1)
        run.update(loss)
        run.step += 1
        run.window.append(loss.item())
        progress.update(1)
        if run.step % train_params.log_every == 0 or run.step == train_params.steps:
            progress.set_postfix(loss=f"{run.log_row(log):.4f}")
        if run.step % train_params.checkpoint_every == 0 or run.step == train_params.steps:
            run.save_state()
    progress.close()
    if not training.all_finite(run.model, run.ema.shadow):
        raise run.diverged("non-finite weights", run.step)
    if ctx.is_main and log is not None:
        training.write_log(log, run.rows)
    final_loss = run.rows[-1]["loss"] if run.rows else float("nan")
    return run.model, run.ema, final_loss


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
