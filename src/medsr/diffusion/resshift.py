"""ResShift: a diffusion chain from the upsampled LR image to the HR image by shifting their residual.

Yue et al. 2023, "ResShift: Efficient Diffusion Model for Image Super-resolution by Residual Shifting",
written from the paper's equations (Section 3 / Eq. 1-8). With x_0 the HR target, y_0 the bicubic-upsampled LR
image and e_0 = y_0 - x_0:

    forward marginal   q(x_t | x_0, y_0) = N(x_0 + eta_t e_0, kappa^2 eta_t I)                    (Eq. 3)
    posterior          q(x_{t-1} | x_t, x_0) = N(eta_{t-1}/eta_t x_t + alpha_t/eta_t x_0,
                                                 kappa^2 eta_{t-1}/eta_t alpha_t I),
                       alpha_t = eta_t - eta_{t-1}                                                     (Eq. 6)
    prior              x_T = y_0 + kappa sqrt(eta_T) eps  (eta_T ~ 1)
    schedule           sqrt(eta_t) = sqrt(eta_1) b0^beta_t, beta_t = ((t-1)/(T-1))^p (T-1),
                       b0 = exp(log(eta_T / eta_1) / (2 (T-1)))                                     (Eq. 10)

The network predicts x_0 (trained with || f(x_t, y_0, t) - x_0 ||^2). The transitions
q(x_t | x_s) = N(x_s + (eta_t - eta_s) e_0, kappa^2 (eta_t - eta_s) I) compose for any s < t, so the posterior
above holds between any two steps s < t with alpha = eta_t - eta_s: a model trained on T steps samples with any
K <= T of them (`step_indices`), ending at eta_0 = 0, where the posterior mean is the x_0 prediction itself.

Timesteps are 0-indexed as in `medsr.diffusion.schedule`: index i = 0..T-1 is the paper's t = i + 1, and the
network is conditioned on i. Both x_0 and y_0 are in the encoded space of `diffusion.target` (image: [-1, 1]
images; residual: HR - bicubic, where y_0 = 0), so x0 clipping and decoding are shared with the DDPM process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from medsr.core.parameters import ResShiftParams
from medsr.diffusion.process import Bounds, Process, clamp_x0


def eta_schedule(timesteps: int, eta_1: float, eta_T: float, p: float) -> torch.Tensor:
    """eta_1..eta_T (float64): Eq. 10, sqrt(eta_t) = sqrt(eta_1) b0^beta_t."""
    if timesteps == 1:
        return torch.tensor([eta_T], dtype=torch.float64)
    t = torch.arange(1, timesteps + 1, dtype=torch.float64)
    beta = ((t - 1) / (timesteps - 1)) ** p * (timesteps - 1)
    b0 = math.exp(math.log(eta_T / eta_1) / (2 * (timesteps - 1)))
    return (math.sqrt(eta_1) * b0 ** beta) ** 2


def _per_sample(values: torch.Tensor, ndim: int, device: torch.device) -> torch.Tensor:
    return values.float().to(device).reshape(-1, *([1] * (ndim - 1)))


@dataclass(frozen=True)
class ResShiftSchedule(Process):
    """The eta_t of Eq. 10 and the kappa of ResShift, with the forward marginal and the posterior: the resshift
    process, from y_0 to x_0, with a network that predicts x_0."""

    name: ClassVar[str] = "resshift"
    etas: torch.Tensor  # eta_1..eta_T, float64
    kappa: float

    @classmethod
    def from_params(cls, params: ResShiftParams) -> "ResShiftSchedule":
        return cls(eta_schedule(params.timesteps, params.eta_1, params.eta_T, params.p), params.kappa)

    @property
    def timesteps(self) -> int:
        return len(self.etas)

    def eta(self, t: torch.Tensor) -> torch.Tensor:
        """eta at 0-indexed steps t; index -1 stands for t = 0, where eta_0 = 0."""
        padded = torch.cat([self.etas, torch.zeros(1, dtype=self.etas.dtype)])  # padded[-1] = eta_0 = 0
        return padded[t.long().cpu()]

    def q_sample(self, x0: torch.Tensor, y0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # Eq. 3: x_t = x_0 + eta_t (y_0 - x_0) + kappa sqrt(eta_t) eps
        eta = self.eta(t)
        return (x0 + _per_sample(eta, x0.ndim, x0.device) * (y0 - x0)
                + _per_sample(self.kappa * eta.sqrt(), x0.ndim, x0.device) * noise)

    def regression_target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x0  # ResShift's loss: || f_theta(x_t, y_0, t) - x_0 ||^2

    def prior_sample(self, y0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # the start of sampling: x_T = y_0 + kappa sqrt(eta_T) eps
        return y0 + self.kappa * math.sqrt(float(self.etas[-1])) * noise

    def clip_prediction(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        return clamp_x0(x0, bounds)  # the prediction is x_0 itself

    def posterior_mean_variance(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
                                s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x_s | x_t, x_0) for s < t (s = -1: x_0): Eq. 6 with alpha = eta_t - eta_s (float64 coefficients)."""
        eta_t, eta_s = self.eta(t), self.eta(s)
        alpha = eta_t - eta_s
        mean = (_per_sample(eta_s / eta_t, x_t.ndim, x_t.device) * x_t
                + _per_sample(alpha / eta_t, x_t.ndim, x_t.device) * x0)
        variance = _per_sample(self.kappa ** 2 * eta_s / eta_t * alpha, x_t.ndim, x_t.device)
        return mean, variance

    def reverse_step(self, x_t: torch.Tensor, x0: torch.Tensor, t: int,
                     s: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eq. 6 between steps s < t; at s = -1 (eta_0 = 0) the posterior is the point x_0."""
        if s < 0:
            return x0, None
        mean, variance = self.posterior_mean_variance(x_t, x0, torch.full((len(x_t),), t), torch.full((len(x_t),), s))
        return mean, variance.sqrt()

    def step_indices(self, steps: int) -> list[int]:
        """The K = `steps` 0-indexed steps sampled, from T-1 down to 0 as evenly as possible, then -1 (x_0)."""
        steps = min(steps, self.timesteps)
        if steps == 1:
            chosen = [self.timesteps - 1]
        else:
            chosen = sorted({round(i * (self.timesteps - 1) / (steps - 1)) for i in range(steps)}, reverse=True)
        return chosen + [-1]
