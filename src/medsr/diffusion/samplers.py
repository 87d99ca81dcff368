"""Reverse-process samplers with classifier-free guidance, batched over images.

- `ancestral`: the thesis's Algorithm 2 (all T steps, sigma_t^2 = beta_t), written out here.
- `ddim`: DDIM with K steps (Song et al. 2021), diffusers' `DDIMScheduler`.
- `dpmpp`: DPM-Solver++ (2M) with K steps (Lu et al. 2022), diffusers' `DPMSolverMultistepScheduler`.
- `resshift`: the ResShift chain bicubic -> HR with K <= T steps (Yue et al. 2023; `medsr.diffusion.resshift`),
  for models trained with `diffusion.process: resshift` (the network predicts x_0, not eps).

All share `guided_eps` (classifier-free guidance, out = out(null) + w (out(c) - out(null)), on eps or, for
resshift, on the x_0 prediction) and x0 clipping (the predicted image kept in the data range, per pixel for the
residual target).
Randomness is drawn per image from a generator seeded by (sampling seed, image id), on the CPU, so
an image's result depends neither on its batch, its shard, nor the device's RNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medsr.config import NULL_CLASS, RESSHIFT_SAMPLERS, SAMPLERS
from medsr.randomness import torch_generator
from medsr.device import check_precision, inference_autocast
from medsr.diffusion.resshift import ResShiftSchedule
from medsr.diffusion.schedule import (DiffusionSchedule, decode_target, encode_target, target_bounds,
                                      to_model_range)



@dataclass(frozen=True)
class SamplerSpec:
    """Which sampler, how many network evaluations (K; ancestral always takes T) and DDIM's eta."""

    name: str
    steps: int
    eta: float = 0.0

    def evaluations(self, timesteps: int) -> int:
        if self.name == "ancestral":
            return timesteps
        if self.name == "student":  # the one-step student (medsr.diffusion.distill)
            return 1
        return min(self.steps, timesteps) if self.name == "resshift" else self.steps


def image_generators(seed: int, ids: Sequence[str]) -> list[torch.Generator]:
    """One CPU generator per image, seeded by (sampling seed, image id)."""
    return [torch_generator(seed, f"sample:{image_id}") for image_id in ids]


def per_image_normal(generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """[N, *shape] standard normal noise, image i drawn from generators[i]."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators]).to(device)


def guided_eps(model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, lr_cond: torch.Tensor,
               labels: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): eps = eps(null) + w (eps(c) - eps(null)); the same
    combination of the network's outputs guides an x_0 prediction (resshift)."""
    null = torch.full_like(labels, NULL_CLASS)
    if scale == 0 or bool((labels == NULL_CLASS).all()):
        return model(x_t, t, class_labels=null, lr_upsampled=lr_cond)
    if scale == 1:  # w = 1 is the conditional model alone: one network call
        return model(x_t, t, class_labels=labels, lr_upsampled=lr_cond)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), class_labels=torch.cat([null, labels]),
                 lr_upsampled=torch.cat([lr_cond, lr_cond]))
    eps_null, eps_cond = both.float().chunk(2)
    return eps_null + scale * (eps_cond - eps_null)


def clip_eps(schedule: DiffusionSchedule, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
             bounds: tuple[torch.Tensor | float, torch.Tensor | float]) -> torch.Tensor:
    """eps recomputed from the x0 it implies (Eq. 1.12 solved for x0), clamped to the valid range."""
    x0 = schedule.predict_x0_from_eps(x_t, t, eps)
    low, high = bounds
    x0 = torch.clamp(x0, low, high) if isinstance(low, float) else torch.minimum(torch.maximum(x0, low), high)
    return schedule.predict_eps_from_x0(x_t, t, x0)


def make_scheduler(name: str, schedule: DiffusionSchedule):
    """A diffusers scheduler over our betas (epsilon prediction, no clipping of its own)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    betas = schedule.betas.numpy()
    common = dict(num_train_timesteps=schedule.timesteps, trained_betas=betas, prediction_type="epsilon",
                  timestep_spacing="trailing")  # trailing: the first step is t = T, pure noise
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           lower_order_final=True, final_sigmas_type="zero")
    raise ValueError(f"no diffusers scheduler for sampler {name!r}")


class Sampler:
    """Draws SR images for a batch of LR images: `sample(bicubic, labels, generators)`."""

    def __init__(self, model: nn.Module, schedule: DiffusionSchedule | ResShiftSchedule, target: str,
                 spec: SamplerSpec, guidance_scale: float = 1.0, clip_x0: bool = True, precision: str = "fp32"):
        if spec.name not in SAMPLERS:
            raise ValueError(f"sampler {spec.name!r} is not one of {', '.join(SAMPLERS)}")
        if (spec.name in RESSHIFT_SAMPLERS) != isinstance(schedule, ResShiftSchedule):
            raise ValueError(f"sampler {spec.name!r} cannot sample a "
                             f"{'resshift' if isinstance(schedule, ResShiftSchedule) else 'ddpm'} model "
                             f"(the resshift sampler goes with the resshift process, and only with it)")
        self.model = model.eval()
        self.schedule, self.target, self.spec = schedule, target, spec
        self.guidance_scale, self.clip_x0 = guidance_scale, clip_x0
        check_precision(self.device, precision)  # bf16: CUDA only (generate.precision)
        self.precision = precision

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _eps(self, x_t: torch.Tensor, t: int, lr_cond: torch.Tensor, labels: torch.Tensor,
             bounds) -> torch.Tensor:
        t_batch = torch.full((len(x_t),), int(t), dtype=torch.long, device=x_t.device)
        with inference_autocast(x_t.device, self.precision):
            eps = guided_eps(self.model, x_t, t_batch, lr_cond, labels, self.guidance_scale).float()
        return clip_eps(self.schedule, x_t, t_batch, eps, bounds) if self.clip_x0 else eps

    @torch.inference_mode()
    def sample(self, bicubic: torch.Tensor, labels: torch.Tensor,
               generators: Sequence[torch.Generator]) -> torch.Tensor:
        """SR images [N, 1, H, W] in [0, 1] from bicubic-upsampled LR [N, 1, H, W] in [0, 1]."""
        if len(generators) != len(bicubic) or len(labels) != len(bicubic):
            raise ValueError("one label and one generator per image")
        if self.spec.name == "student":  # hook: the one-step student, kept in its own module
            return _student(self, bicubic, labels, generators)
        device = self.device
        bicubic = bicubic.to(device, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        lr_cond = to_model_range(bicubic)
        bounds = target_bounds(bicubic, self.target)
        x = per_image_normal(generators, bicubic.shape[1:], device)  # x_T ~ N(0, I)
        if self.spec.name == "resshift":
            x = self._resshift(x, bicubic, lr_cond, labels, bounds, generators)
        elif self.spec.name == "ancestral":
            x = self._ancestral(x, lr_cond, labels, bounds, generators)
        else:
            x = self._scheduled(x, lr_cond, labels, bounds, generators)
        return decode_target(x, bicubic, self.target)

    def _x0(self, x_t: torch.Tensor, t: int, lr_cond: torch.Tensor, labels: torch.Tensor, bounds) -> torch.Tensor:
        """The (guided) x_0 prediction of a resshift model, clamped per pixel to the valid range."""
        t_batch = torch.full((len(x_t),), int(t), dtype=torch.long, device=x_t.device)
        with inference_autocast(x_t.device, self.precision):
            x0 = guided_eps(self.model, x_t, t_batch, lr_cond, labels, self.guidance_scale).float()
        if not self.clip_x0:
            return x0
        low, high = bounds
        return torch.clamp(x0, low, high) if isinstance(low, float) else torch.minimum(torch.maximum(x0, low), high)

    def _resshift(self, noise, bicubic, lr_cond, labels, bounds, generators):
        y0 = encode_target(bicubic, bicubic, self.target)  # the bicubic image in the diffused space
        x = self.schedule.prior_sample(y0, noise)  # x_T = y_0 + kappa sqrt(eta_T) eps
        steps = self.schedule.step_indices(self.spec.steps)
        for t, s in zip(steps[:-1], steps[1:]):
            x0 = self._x0(x, t, lr_cond, labels, bounds)
            if s < 0:  # eta_0 = 0: the posterior is the point x_0
                return x0
            mean, variance = self.schedule.posterior_mean_variance(
                x, x0, torch.full((len(x),), t), torch.full((len(x),), s))  # Eq. 6 between steps s < t
            x = mean + variance.sqrt() * per_image_normal(generators, x.shape[1:], x.device)
        return x

    def _ancestral(self, x, lr_cond, labels, bounds, generators):
        betas = self.schedule.betas.float()
        for t in reversed(range(self.schedule.timesteps)):  # Algorithm 2: t = T .. 1 (0-indexed here)
            eps = self._eps(x, t, lr_cond, labels, bounds)
            t_batch = torch.full((len(x),), t, dtype=torch.long, device=x.device)
            mean = self.schedule.ancestral_mean(x, t_batch, eps)  # Algorithm 2, line 4
            if t > 0:  # Algorithm 2, line 7: x_{t-1} = mu + sqrt(beta_t) z
                x = mean + betas[t].sqrt().to(x.device) * per_image_normal(generators, x.shape[1:], x.device)
            else:
                x = mean
        return x

    def _scheduled(self, x, lr_cond, labels, bounds, generators):
        scheduler = make_scheduler(self.spec.name, self.schedule)
        scheduler.set_timesteps(self.spec.steps, device=x.device)
        stochastic = self.spec.name == "ddim" and self.spec.eta > 0
        for t in scheduler.timesteps:
            eps = self._eps(x, int(t), lr_cond, labels, bounds)
            if stochastic:
                noise = per_image_normal(generators, x.shape[1:], x.device)
                x = scheduler.step(eps, t, x, eta=self.spec.eta, variance_noise=noise).prev_sample
            elif self.spec.name == "ddim":
                x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            else:
                x = scheduler.step(eps, t, x).prev_sample
        return x


# --- hook: generate.sampler student (one call of a distilled one-step student; medsr.diffusion.distill) ---------

def _student(sampler: Sampler, bicubic: torch.Tensor, labels: torch.Tensor,
             generators: Sequence[torch.Generator]) -> torch.Tensor:
    from medsr.diffusion.distill import student_sample  # distill does not import this module
    if sampler.guidance_scale != 1:
        raise ValueError("the student sampler has no classifier-free guidance scale (it was distilled at w = 1)")
    return student_sample(sampler.model, bicubic, labels, generators, schedule=sampler.schedule, target=sampler.target,
                          clip_x0=sampler.clip_x0, precision=sampler.precision)
