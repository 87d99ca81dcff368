"""Train the one-pass regression SR baseline (`medsr train-regression`): does diffusion matter?

The diffusion model's U-Net (same `sr_model` params) without time or class conditioning maps
bicubic(LR) to the residual HR - bicubic(LR) in one pass, trained with L1 on aligned random crops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from medsr.core import training
from medsr.core.model_files import save_model
from medsr.core.config import to_jsonable
from medsr.core.parameters import TrainRegressionParams, UNetParams
from medsr.core.device import autocast, needs_grad_scaler
from medsr.diffusion.unet import build_unet
from medsr.diffusion.schedule import encode_target, to_model_range
from medsr.diffusion.unet import count_parameters

KIND = "sr_regression"
LOG_ROWS = 40  # loss log rows over a run


def regression_loss(model: torch.nn.Module, hr: torch.Tensor, bicubic: torch.Tensor) -> torch.Tensor:
    cond = to_model_range(bicubic)
    residual = model(cond, lr_upsampled=cond)
    return F.l1_loss(residual.float(), encode_target(hr, bicubic, "residual"))  # L1 on HR - bicubic(LR)


def train(model_params: UNetParams, params: TrainRegressionParams, data: training.PairedImages, *,
          ctx: training.Distributed, log: Path | None) -> torch.nn.Module:
    device = ctx.device
    torch.manual_seed(params.seed)
    model = build_unet(model_params, KIND).to(device, memory_format=torch.channels_last)
    training.check_crop(params.crop, data, model.size_multiple, "train_regression.crop")
    per_rank = training.per_rank_batch(params.batch_size, ctx, "train_regression.batch_size")
    if ctx.is_main:
        print(f"train-regression: U-Net with {count_parameters(model):,} parameters; {len(data.ids)} train images; "
              f"{ctx.world_size} process(es) x batch {per_rank}", file=sys.stderr)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
    # fp16 autocast (CUDA without bf16) needs loss scaling; a no-op elsewhere, as in train-sr
    scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(device))
    generator = torch.Generator().manual_seed(params.seed)
    net = training.wrap(model, ctx).train()
    log_every = max(1, params.steps // LOG_ROWS)
    rows, window = [], []
    for step in tqdm(range(1, params.steps + 1), disable=not ctx.is_main, desc="train-regression",
                     mininterval=2.0, dynamic_ncols=True):
        hr, bicubic, _ = training.random_crops(data, params.batch_size, params.crop, True, generator)
        hr, bicubic = (ctx.shard(x).to(device).contiguous(memory_format=torch.channels_last) for x in (hr, bicubic))
        with autocast(device):
            loss = regression_loss(net, hr, bicubic)
        # before the step; the mean over ranks is non-finite on all when on any, so every rank stops
        training.check_loss(ctx.mean(loss.item()), "train-regression", f"step {step}", "train_regression.learning_rate",
                            params.learning_rate)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        window.append(loss.item())
        if step % log_every == 0 or step == params.steps:
            rows.append({"step": step, "loss": ctx.mean(sum(window) / len(window)),
                         "learning_rate": params.learning_rate})
            window = []
    if not training.all_finite(model):
        raise training.Diverged(f"train-regression: non-finite weights after step {params.steps} "
                                f"(train_regression.learning_rate {params.learning_rate:g}): training diverged; "
                                f"no model written")
    if ctx.is_main and log is not None:
        training.write_log(log, rows)
    return model


def run(model_params: UNetParams, params: TrainRegressionParams, *, hr: Path, lr: Path, model: Path, log: Path,
        device: torch.device | None) -> None:
    training.set_threads()
    ctx = training.init_distributed(device)
    data = training.load_pairs(hr, lr, "train")
    trained = train(model_params, params, data, ctx=ctx, log=log)
    if ctx.is_main:
        metadata = {
            "kind": KIND,
            "sr_model": to_jsonable(model_params),
            "train_regression": to_jsonable(params),
            **data.geometry(),
            "target": "residual",
        }
        save_model(model, trained.state_dict(), metadata)
        print(f"train-regression: wrote {model}", file=sys.stderr)
    training.barrier(ctx)
