"""What both diffusion processes offer training and sampling, whatever they diffuse between.

`diffusion.process` picks one (`medsr.diffusion.schedule.process_schedule`):
  ddpm      noise -> HR (Ho et al. 2020; `medsr.diffusion.schedule.DiffusionSchedule`); the network predicts eps
  resshift  bicubic -> HR (Yue et al. 2023; `medsr.diffusion.resshift.ResShiftSchedule`); the network predicts x_0

Both are written over the same variables, in the encoded space of `diffusion.target`: x_0 the HR target, y_0 the
bicubic image, t a 0-indexed step (index -1: the end of the chain, x_0). A process provides
  q_sample(x0, y0, t, noise)                 a draw of x_t from the forward marginal
  regression_target(x0, noise)               what the network is trained to output (the training loss below)
  prior_sample(y0, noise)                    x_T, where sampling starts
  clip_prediction(x_t, t, prediction, b)     the network's output with the x_0 it implies clamped to bounds b
  reverse_step(x_t, prediction, t, s)        the Gaussian step x_t -> x_s of the sampler's chain: (mean, std),
                                             std None where the chain ends (the mean is then the result)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

Bounds = tuple[torch.Tensor | float, torch.Tensor | float]


def clamp_x0(x0: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """x_0 clipping: the predicted target kept in its valid range (a scalar range, or one per pixel)."""
    low, high = bounds
    return torch.clamp(x0, low, high) if isinstance(low, float) else torch.minimum(torch.maximum(x0, low), high)


class Process(ABC):
    """The interface above; subclasses are the two schedules (frozen dataclasses)."""

    name: ClassVar[str]  # the diffusion.process value

    @property
    @abstractmethod
    def timesteps(self) -> int:
        ...

    @abstractmethod
    def q_sample(self, x0: torch.Tensor, y0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ...

    @abstractmethod
    def regression_target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ...

    @abstractmethod
    def prior_sample(self, y0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ...

    @abstractmethod
    def clip_prediction(self, x_t: torch.Tensor, t: torch.Tensor, prediction: torch.Tensor,
                        bounds: Bounds) -> torch.Tensor:
        ...

    @abstractmethod
    def reverse_step(self, x_t: torch.Tensor, prediction: torch.Tensor, t: int,
                     s: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        ...

    def training_loss(self, model: nn.Module, x0: torch.Tensor, y0: torch.Tensor, t: torch.Tensor,
                      noise: torch.Tensor, labels: torch.Tensor, lr_cond: torch.Tensor) -> torch.Tensor:
        """|| f_theta(x_t, t, c, LR) - target ||^2 with x_t ~ q(x_t | x_0, y_0): Eq. 1.13 for eps (DDPM),
        ResShift's x_0 loss for x_0."""
        x_t = self.q_sample(x0, y0, t, noise)
        prediction = model(x_t, t, class_labels=labels, lr_upsampled=lr_cond)
        return F.mse_loss(prediction.float(), self.regression_target(x0, noise))
