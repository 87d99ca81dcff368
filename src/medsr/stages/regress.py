"""`medsr regress`: the one-pass regression SR baseline on every val and test LR image.

SR = bicubic(LR) + f(bicubic(LR)): the diffusion model's U-Net, without time or class, trained
with L1 to predict the residual HR - bicubic(LR) (`medsr train-regression`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from medsr.core import io
from medsr.core.parameters import EVAL_SPLITS, GenerateParams
from medsr.core.device import autocast
from medsr.diffusion.unet import load_unet
from medsr.diffusion.schedule import decode_target, to_model_range


@torch.inference_mode()
def super_resolve(model: torch.nn.Module, bicubic: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] bicubic in [0, 1] -> SR in [0, 1]: bicubic plus the predicted residual."""
    cond = to_model_range(bicubic).contiguous(memory_format=torch.channels_last)
    with autocast(bicubic.device):
        residual = model(cond, lr_upsampled=cond).float()
    return decode_target(residual, bicubic, "residual")


def run(params: GenerateParams, *, model: Path, lr: Path, out: Path, device: torch.device | None = None) -> None:
    device = device or torch.device("cpu")
    loaded = load_unet(model, "sr_regression", device)
    records = sorted(io.read_manifest(lr, split=EVAL_SPLITS), key=lambda r: r.id)  # val (operating points) and test
    outputs = []
    for first in range(0, len(records), params.batch_size):
        batch = records[first:first + params.batch_size]
        outputs.append(super_resolve(loaded.model, loaded.bicubic_input(lr, batch))[:, 0].cpu().numpy())
    images = np.concatenate(outputs)
    with io.atomic_dir(out) as tmp:
        io.write_manifest(tmp, io.write_generated(tmp, records, images, [str(io.image_path(lr, r)) for r in records]))
        io.write_json(tmp / "metadata.json", {"set": "regression", "model_sha256": loaded.sha256,
                                              "method": "bicubic(LR) + U-Net residual, one pass, L1-trained"})
    print(f"regress: {len(records)} val and test images into {out}", file=sys.stderr)
