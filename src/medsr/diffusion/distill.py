"""A one-step SR student distilled from a ResShift teacher: SinSR (Wang et al., CVPR 2024, arXiv 2311.14760),
written from the paper's equations.

Deterministic teacher (SinSR Sec. 3.2). ResShift's marginal (Yue et al. 2023, Eq. 3) is
x_t = x_0 + eta_t e_0 + kappa sqrt(eta_t) eps with e_0 = y_0 - x_0. Keeping the eps that x_t implies for the
teacher's x_0 prediction instead of drawing a new one gives, between any two steps eta_s < eta_t,

    x_s = k x0_hat + m x_t + j y_0,   m = sqrt(eta_s / eta_t),   j = eta_s - sqrt(eta_s eta_t),
                                      k = 1 - eta_s + sqrt(eta_s eta_t) - sqrt(eta_s / eta_t)

(the DDIM-style, eta = 0 sampler of ResShift; at eta_s = 0 it is x0_hat itself). From x_T = y_0 + kappa sqrt(eta_T)
eps, K teacher calls map each (LR image, eps) to one HR estimate: F_theta(x_T, y_0), a deterministic function of
x_T that the student can learn.

Student f_hat: the teacher's U-Net, initialised from its weights, called at the last step t = T (0-indexed T-1)
for x_T -> x_0 and at the first step t = 1 (0-indexed 0) for the inverse map x_0 -> x_T. Losses (SinSR Sec. 3.3-3.4):

    L_distill = || f_hat(x_T, y_0, T) - F_theta(x_T, y_0) ||^2                      (distillation)
    L_inverse = || f_hat(F_theta(x_T, y_0), y_0, 1) - x_T ||^2                     (the learned inverse)
    L_gt      = || f_hat(sg[f_hat(x_gt, y_0, 1)], y_0, T) - x_gt ||^2              (consistency preserving: a real
                                                                                 HR image through the inverse and back)
    L = L_distill + w_inverse L_inverse + lambda_gt L_gt

(sg: stop gradient.) L_gt lets the student see the HR data, so it is not bound to the teacher's outputs.
All tensors live in the encoded space of `diffusion.target` (medsr.diffusion.schedule), as in ResShift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medsr.diffusion.process import clamp_x0
from medsr.diffusion.resshift import ResShiftSchedule
from medsr.diffusion.schedule import encode_target, target_bounds, to_model_range


def deterministic_coefficients(eta_t: float, eta_s: float) -> tuple[float, float, float]:
    """(k, m, j) of x_s = k x0 + m x_t + j y_0: SinSR's deterministic ResShift step from eta_t to eta_s < eta_t."""
    m = math.sqrt(eta_s / eta_t)
    j = eta_s - math.sqrt(eta_s * eta_t)
    k = 1 - eta_s + math.sqrt(eta_s * eta_t) - m
    return k, m, j


def _call(model: nn.Module, x: torch.Tensor, step: int, labels: torch.Tensor, lr_cond: torch.Tensor) -> torch.Tensor:
    t = torch.full((len(x),), int(step), dtype=torch.long, device=x.device)
    return model(x, t, class_labels=labels, lr_upsampled=lr_cond).float()


@torch.no_grad()
def teacher_trajectory(teacher: nn.Module, schedule: ResShiftSchedule, x_T: torch.Tensor, y0: torch.Tensor,
                       labels: torch.Tensor, lr_cond: torch.Tensor, bounds, steps: int) -> torch.Tensor:
    """F_theta(x_T, y_0): the teacher's deterministic sampler over `steps` of its T steps (x_0 clamped per step)."""
    indices = schedule.step_indices(steps)  # T-1 .. 0, then -1 (eta_0 = 0)
    etas = [float(e) for e in schedule.eta(torch.tensor(indices))]
    x = x_T
    for (t, s), (eta_t, eta_s) in zip(zip(indices[:-1], indices[1:]), zip(etas[:-1], etas[1:])):
        x0 = clamp_x0(_call(teacher, x, t, labels, lr_cond), bounds)
        if s < 0:
            return x0
        k, m, j = deterministic_coefficients(eta_t, eta_s)
        x = k * x0 + m * x + j * y0
    return x


@dataclass(frozen=True)
class StudentBatch:
    """One training batch in the diffused space: HR x_gt, y_0, the LR conditioning, labels, x_T and F_theta(x_T)."""

    x_gt: torch.Tensor
    y0: torch.Tensor
    lr_cond: torch.Tensor
    labels: torch.Tensor
    x_T: torch.Tensor
    teacher_x0: torch.Tensor


def make_batch(teacher: nn.Module, schedule: ResShiftSchedule, target: str, hr: torch.Tensor, bicubic: torch.Tensor,
               labels: torch.Tensor, noise: torch.Tensor, teacher_steps: int) -> StudentBatch:
    """x_T = y_0 + kappa sqrt(eta_T) eps and the teacher's deterministic x_0 for it."""
    x_gt = encode_target(hr, bicubic, target)
    y0 = encode_target(bicubic, bicubic, target)
    lr_cond = to_model_range(bicubic)
    x_T = schedule.prior_sample(y0, noise)
    teacher_x0 = teacher_trajectory(teacher, schedule, x_T, y0, labels, lr_cond, target_bounds(bicubic, target),
                                    teacher_steps)
    return StudentBatch(x_gt, y0, lr_cond, labels, x_T, teacher_x0)


def sinsr_losses(student: nn.Module, schedule: ResShiftSchedule, batch: StudentBatch, inverse_weight: float,
                 gt_weight: float) -> dict[str, torch.Tensor]:
    """SinSR's L_distill, L_inverse, L_gt and their weighted sum "loss" (module docstring)."""
    last, first = schedule.timesteps - 1, 0
    out = {"distill": F.mse_loss(_call(student, batch.x_T, last, batch.labels, batch.lr_cond), batch.teacher_x0)}
    loss = out["distill"]
    if inverse_weight > 0:
        predicted_x_T = _call(student, batch.teacher_x0, first, batch.labels, batch.lr_cond)
        out["inverse"] = F.mse_loss(predicted_x_T, batch.x_T)
        loss = loss + inverse_weight * out["inverse"]
    if gt_weight > 0:
        with torch.no_grad():  # sg[f_hat(x_gt, y_0, 1)]
            x_T_of_gt = _call(student, batch.x_gt, first, batch.labels, batch.lr_cond)
        out["gt"] = F.mse_loss(_call(student, x_T_of_gt, last, batch.labels, batch.lr_cond), batch.x_gt)
        loss = loss + gt_weight * out["gt"]
    out["loss"] = loss
    return out
