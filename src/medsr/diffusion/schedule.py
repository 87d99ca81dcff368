"""The forward (noising) process: betas, alphas_cumprod and the closed forms built on them.

Timesteps are 0-indexed as in diffusers: index t = 0..T-1 here is the thesis's step t + 1.
All tensors live on the schedule's device in float32 (float64 while computing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from medsr.core.parameters import DiffusionParams
from medsr.diffusion.process import Bounds, Process, clamp_x0
from medsr.diffusion.resshift import ResShiftSchedule


def linear_betas(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    # Eq. 3.1: beta_t = beta_start + (beta_end - beta_start) t / T, with t/T read as (t-1)/(T-1) for
    # t = 1..T so that beta_1 = beta_start and beta_T = beta_end exactly (DDPM's linspace, the seed code's)
    t = torch.arange(1, timesteps + 1, dtype=torch.float64)
    return beta_start + (beta_end - beta_start) * (t - 1) / (timesteps - 1)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    # Eq. 3.2-3.3: abar_t = f(t) / f(0), f(t) = cos(((t/T + s) / (1 + s)) pi/2)^2; beta_t = 1 - abar_t / abar_{t-1}
    t = torch.arange(0, timesteps + 1, dtype=torch.float64)
    f = torch.cos(((t / timesteps + s) / (1 + s)) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)  # Nichol & Dhariwal 2021: clip beta_T below 1


def _gather(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] shaped to broadcast over a batch of `ndim`-dimensional tensors."""
    out = values.to(t.device)[t.long()]
    return out.reshape(-1, *([1] * (ndim - 1)))


@dataclass(frozen=True)
class DiffusionSchedule(Process):
    """betas and everything derived from them (Ho et al. 2020, Section 2; thesis Section 1.3): the ddpm process,
    from pure noise (y_0 plays no part) to x_0, with a network that predicts eps."""

    name: ClassVar[str] = "ddpm"
    betas: torch.Tensor

    @classmethod
    def from_params(cls, params: DiffusionParams) -> "DiffusionSchedule":
        if params.schedule == "linear":
            betas = linear_betas(params.timesteps, params.beta_start, params.beta_end)
        else:
            betas = cosine_betas(params.timesteps, params.cosine_s)
        return cls(betas)

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)  # abar_t = prod_{s<=t} alpha_s

    def q_sample(self, x0: torch.Tensor, y0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # Eq. 1.9 / 1.12: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
        abar = self.alphas_cumprod  # coefficients in float64, then float32: 1 - abar_t is ~1e-4 at t = 0
        return _gather(abar.sqrt().float(), t, x0.ndim) * x0 + _gather((1 - abar).sqrt().float(), t, x0.ndim) * noise

    def predict_x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        # Eq. 1.12 solved for x0: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
        abar = self.alphas_cumprod
        return (x_t - _gather((1 - abar).sqrt().float(), t, x_t.ndim) * eps) / _gather(abar.sqrt().float(), t, x_t.ndim)

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        # Eq. 1.12 solved for eps
        abar = self.alphas_cumprod
        return (x_t - _gather(abar.sqrt().float(), t, x_t.ndim) * x0) / _gather((1 - abar).sqrt().float(), t, x_t.ndim)

    def ancestral_mean(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        # Algorithm 2: mu = 1/sqrt(alpha_t) (x_t - (1 - alpha_t) / sqrt(1 - abar_t) eps_hat)
        coef_eps = _gather((self.betas / (1 - self.alphas_cumprod).sqrt()).float(), t, x_t.ndim)  # 1 - alpha_t = beta_t
        return (x_t - coef_eps * eps) / _gather(self.alphas.sqrt().float(), t, x_t.ndim)

    def regression_target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise  # Eq. 1.13: L = E || eps - eps_theta(x_t, t) ||^2

    def prior_sample(self, y0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise  # x_T ~ N(0, I)

    def clip_prediction(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """eps recomputed from the x0 it implies (Eq. 1.12 solved for x0), clamped to the valid range."""
        return self.predict_eps_from_x0(x_t, t, clamp_x0(self.predict_x0_from_eps(x_t, t, eps), bounds))

    def reverse_step(self, x_t: torch.Tensor, eps: torch.Tensor, t: int,
                     s: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Algorithm 2, lines 4 and 7: x_{t-1} = mu + sigma_t z with sigma_t^2 = beta_t; no noise at the last step."""
        if s != t - 1:
            raise ValueError(f"the ddpm reverse step goes from t to t - 1, not from {t} to {s}")
        mean = self.ancestral_mean(x_t, torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device), eps)
        return mean, (self.betas.float()[t].sqrt().to(x_t.device) if t > 0 else None)


def process_schedule(params: DiffusionParams) -> "DiffusionSchedule | ResShiftSchedule":
    """The schedule of `diffusion.process`: DDPM's betas or ResShift's etas."""
    if params.process == ResShiftSchedule.name:
        return ResShiftSchedule.from_params(params.resshift)
    return DiffusionSchedule.from_params(params)


# --- the diffused variable x0 (diffusion.target), in the model's [-1, 1] intensity scale ---------

def to_model_range(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] intensities -> [-1, 1] (the range the U-Net and the schedule work in)."""
    return image * 2 - 1


def encode_target(hr: torch.Tensor, bicubic: torch.Tensor, target: str) -> torch.Tensor:
    """x0 to diffuse: the HR image (`image`, the thesis) or HR - bicubic(LR) (`residual`, SRDiff, Li et al. 2022)."""
    if target == "image":
        return to_model_range(hr)
    return to_model_range(hr) - to_model_range(bicubic)


def decode_target(x0: torch.Tensor, bicubic: torch.Tensor, target: str) -> torch.Tensor:
    """Inverse of `encode_target`: the SR image in [0, 1] (clamped)."""
    image = x0 if target == "image" else x0 + to_model_range(bicubic)
    return ((image + 1) / 2).clamp(0, 1)


def target_bounds(bicubic: torch.Tensor, target: str) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """Per-pixel range of a valid x0 (the image must stay in [-1, 1]): x0 clipping bounds."""
    if target == "image":
        return -1.0, 1.0
    base = to_model_range(bicubic)
    return -1.0 - base, 1.0 - base
