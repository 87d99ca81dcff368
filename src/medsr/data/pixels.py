"""Pixel operations shared by degradation, training, sampling and model loading.

`bicubic_upsample` is the one map from the LR grid to the HR grid: the bicubic baseline, the SR model's LR
conditioning and its residual base all use it. `quantize` is what an image becomes once stored as 8-bit PNG.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bicubic_upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """[N, 1, h, w] -> [N, 1, h*s, w*s]: bicubic (align_corners=False, LR pixel i centred on HR pixels
    s*i .. s*i+s-1), clamped to [0, 1]."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """What an image becomes once written as 8-bit PNG (so bicubic uses the LR as stored)."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0) / 255.0
