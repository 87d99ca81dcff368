"""Reverse-process samplers with classifier-free guidance, batched over images: one class per sampler.

- `ancestral`: the thesis's Algorithm 2 (all T steps, sigma_t^2 = beta_t), written out here.
- `ddim`: DDIM with K steps (Song et al. 2021), diffusers' `DDIMScheduler`.
- `dpmpp`: DPM-Solver++ (2M) with K steps (Lu et al. 2022), diffusers' `DPMSolverMultistepScheduler`.
- `resshift`: the ResShift chain bicubic -> HR with K <= T steps (Yue et al. 2023; `medsr.diffusion.resshift`),
  for models trained with `diffusion.process: resshift` (the network predicts x_0, not eps).
- `student`: one call of a one-step student distilled from a resshift teacher (SinSR; `medsr.diffusion.distill`).

A sampler is declared once, by its class: its `name` (what generate.sampler accepts), the `diffusion_process` whose
models it samples, whether it samples a `distilled` student, its number of network evaluations and whether it draws
noise. Defining the class registers it in `SAMPLER_CLASSES`; `medsr.core.parameters` reads the literal attributes off
this file for the params file's enum (`SAMPLER_PROCESS`), which config validation checks before any model exists.

All share `guided_prediction` (classifier-free guidance, out = out(null) + w (out(c) - out(null)), on whatever the
network predicts: eps, or x_0 for resshift) and the process's x0 clipping (the predicted image kept in the data
range, per pixel for the residual target). Randomness is drawn per image from a generator seeded by (sampling seed,
image id), on the CPU, so an image's result depends neither on its batch, its shard, nor the device's RNG.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from medsr.core.config import sampler_mismatch
from medsr.core.parameters import NULL_CLASS, SAMPLERS
from medsr.core.device import check_precision, inference_autocast
from medsr.diffusion.process import Bounds, Process
from medsr.diffusion.schedule import DiffusionSchedule, decode_target, encode_target, target_bounds, to_model_range
from medsr.core.randomness import torch_generator


def image_generators(seed: int, ids: Sequence[str]) -> list[torch.Generator]:
    """One CPU generator per image, seeded by (sampling seed, image id)."""
    return [torch_generator(seed, f"sample:{image_id}") for image_id in ids]


def per_image_normal(generators: Sequence[torch.Generator], shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """[N, *shape] standard normal noise, image i drawn from generators[i]."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators]).to(device)


def guided_prediction(model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, lr_cond: torch.Tensor,
                      labels: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) of the network's output, whatever it predicts (eps, or x_0):
    out = out(null) + w (out(c) - out(null))."""
    null = torch.full_like(labels, NULL_CLASS)
    if scale == 0 or bool((labels == NULL_CLASS).all()):
        return model(x_t, t, class_labels=null, lr_upsampled=lr_cond)
    if scale == 1:  # w = 1 is the conditional model alone: one network call
        return model(x_t, t, class_labels=labels, lr_upsampled=lr_cond)
    both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), class_labels=torch.cat([null, labels]),
                 lr_upsampled=torch.cat([lr_cond, lr_cond]))
    out_null, out_cond = both.float().chunk(2)
    return out_null + scale * (out_cond - out_null)


# the registry: each sampler class under its name, filled by defining the class (Sampler.__init_subclass__)
SAMPLER_CLASSES: dict[str, type["Sampler"]] = {}


@dataclass(frozen=True)
class SamplerSpec:
    """Which sampler, how many network evaluations (K; ancestral always takes T) and DDIM's eta."""

    name: str
    steps: int
    eta: float = 0.0

    @property
    def sampler_class(self) -> type["Sampler"]:
        if self.name not in SAMPLER_CLASSES:
            raise ValueError(f"sampler {self.name!r} is not one of {', '.join(SAMPLERS)}")
        return SAMPLER_CLASSES[self.name]

    def evaluations(self, timesteps: int) -> int:
        return self.sampler_class.evaluations(self.steps, timesteps)

    @property
    def stochastic(self) -> bool:
        return self.sampler_class.stochastic(self.eta)


@dataclass(frozen=True)
class Conditioning:
    """What every network call of one batch sees besides x_t and t."""

    lr_cond: torch.Tensor  # the bicubic image in [-1, 1]
    labels: torch.Tensor  # class per image (NULL_CLASS: none)
    bounds: Bounds  # x0 clipping range
    generators: Sequence[torch.Generator]  # one per image: the noise of every step


class Sampler(ABC):
    """Draws SR images for a batch of LR images: `sample(bicubic, labels, generators)`. A subclass is one sampler:
    its `name`, its `diffusion_process` (literals: `medsr.core.parameters` reads them off this file), its step count and
    stochasticity, and `_denoise`, the chain from x_T to x_0 in the diffused space. Subclassing with a `name`
    registers the sampler."""

    name: ClassVar[str]
    diffusion_process: ClassVar[str]  # the diffusion.process of the models it samples
    takes_steps: ClassVar[bool] = True  # False: generate.steps is ignored (ancestral runs all T steps)
    distilled: ClassVar[bool] = False  # True: it samples a distilled student's model file (train-student), only it

    def __init_subclass__(cls, **options):
        super().__init_subclass__(**options)
        if "name" in vars(cls):
            SAMPLER_CLASSES[cls.name] = cls

    def __init__(self, model: nn.Module, process: Process, target: str, spec: SamplerSpec,
                 guidance_scale: float = 1.0, clip_x0: bool = True, precision: str = "fp32"):
        mismatch = sampler_mismatch(self.name, process.name)
        if mismatch:
            raise ValueError(f"sampler {mismatch}")
        self.model = model.eval()
        self.process, self.target, self.spec = process, target, spec
        self.guidance_scale, self.clip_x0 = guidance_scale, clip_x0
        check_precision(self.device, precision)  # bf16: CUDA only (generate.precision)
        self.precision = precision

    @classmethod
    @abstractmethod
    def evaluations(cls, steps: int, timesteps: int) -> int:
        """Network evaluations per image (per guidance branch) for `steps` = K on a T-step model."""

    @classmethod
    @abstractmethod
    def stochastic(cls, eta: float) -> bool:
        """Whether it draws fresh noise after x_T (posterior samples need a stochastic sampler)."""

    @classmethod
    def posterior_spec(cls, steps: int, sample_eta: float) -> SamplerSpec:
        """The stochastic sampler of the posterior samples when this one is configured: itself where it draws noise
        at every step, else DDIM with eta = generate.sample_eta (a deterministic sampler of another process
        overrides this with a stochastic sampler of its own process)."""
        if cls.stochastic(0.0):
            return SamplerSpec(cls.name, steps, 0.0)
        return SamplerSpec(DDIMSampler.name, steps, sample_eta)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, x_t: torch.Tensor, t: int, cond: Conditioning) -> torch.Tensor:
        """The guided network output at step t (eps or x_0, as the process predicts), x0-clipped if configured."""
        t_batch = torch.full((len(x_t),), int(t), dtype=torch.long, device=x_t.device)
        with inference_autocast(x_t.device, self.precision):
            out = guided_prediction(self.model, x_t, t_batch, cond.lr_cond, cond.labels, self.guidance_scale).float()
        return self.process.clip_prediction(x_t, t_batch, out, cond.bounds) if self.clip_x0 else out

    @torch.inference_mode()
    def sample(self, bicubic: torch.Tensor, labels: torch.Tensor,
               generators: Sequence[torch.Generator]) -> torch.Tensor:
        """SR images [N, 1, H, W] in [0, 1] from bicubic-upsampled LR [N, 1, H, W] in [0, 1]."""
        if len(generators) != len(bicubic) or len(labels) != len(bicubic):
            raise ValueError("one label and one generator per image")
        device = self.device
        bicubic = bicubic.to(device, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
        cond = Conditioning(to_model_range(bicubic), labels.to(device), target_bounds(bicubic, self.target),
                            generators)
        noise = per_image_normal(generators, bicubic.shape[1:], device)
        y0 = encode_target(bicubic, bicubic, self.target)  # the bicubic image in the diffused space
        x = self._denoise(self.process.prior_sample(y0, noise), cond)  # x_T: noise (ddpm) or y_0 + noise (resshift)
        return decode_target(x, bicubic, self.target)

    @abstractmethod
    def _denoise(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """x_T -> x_0 (in the diffused space)."""


class ChainSampler(Sampler):
    """The process's own reverse steps along a chain of steps t -> s ending at -1 (x_0)."""

    @abstractmethod
    def chain(self) -> list[int]:
        """The steps visited, from the first (x_T's) down to -1."""

    def _denoise(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        steps = self.chain()
        for t, s in zip(steps[:-1], steps[1:]):
            mean, std = self.process.reverse_step(x, self.predict(x, t, cond), t, s)
            if std is None:  # the chain's end: the mean is x_0
                return mean
            x = mean + std * per_image_normal(cond.generators, x.shape[1:], x.device)
        return x


class AncestralSampler(ChainSampler):
    """Algorithm 2: all T steps t -> t - 1, x_{t-1} = mu + sqrt(beta_t) z."""

    name = "ancestral"
    diffusion_process = "ddpm"
    takes_steps = False

    @classmethod
    def evaluations(cls, steps: int, timesteps: int) -> int:
        return timesteps

    @classmethod
    def stochastic(cls, eta: float) -> bool:
        return True

    def chain(self) -> list[int]:
        return list(range(self.process.timesteps - 1, -2, -1))  # t = T .. 1 (0-indexed here), then x_0


class ResShiftSampler(ChainSampler):
    """ResShift's posterior (Eq. 6) along K <= T of the T steps (`ResShiftSchedule.step_indices`)."""

    name = "resshift"
    diffusion_process = "resshift"

    @classmethod
    def evaluations(cls, steps: int, timesteps: int) -> int:
        return min(steps, timesteps)

    @classmethod
    def stochastic(cls, eta: float) -> bool:
        return True

    def chain(self) -> list[int]:
        return self.process.step_indices(self.spec.steps)


class StudentSampler(Sampler):
    """One network call of a one-step student distilled from a ResShift teacher (SinSR, Wang et al. 2024;
    `medsr.diffusion.distill`, `medsr train-student`): x_0 = f_hat(x_T, y_0, T) with x_T = y_0 + kappa sqrt(eta_T)
    eps, eps from each image's generator (the x_T the resshift sampler starts from)."""

    name = "student"
    diffusion_process = "resshift"  # distilled from a resshift teacher
    takes_steps = False
    distilled = True

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        if self.guidance_scale != 1:
            raise ValueError("the student sampler has no classifier-free guidance scale (it was distilled at w = 1)")

    @classmethod
    def evaluations(cls, steps: int, timesteps: int) -> int:
        return 1

    @classmethod
    def stochastic(cls, eta: float) -> bool:
        return False  # deterministic given x_T

    @classmethod
    def posterior_spec(cls, steps: int, sample_eta: float) -> SamplerSpec:
        return SamplerSpec(cls.name, steps, 0.0)  # another x_T per draw (DDIM cannot sample a resshift model)

    def _denoise(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.predict(x, self.process.timesteps - 1, cond)


class ScheduledSampler(Sampler):
    """A diffusers scheduler over our betas (epsilon prediction, no clipping of its own), K steps."""

    diffusion_process = "ddpm"

    @classmethod
    def evaluations(cls, steps: int, timesteps: int) -> int:
        return steps

    @classmethod
    @abstractmethod
    def scheduler(cls, schedule: DiffusionSchedule):
        """The diffusers scheduler of this sampler over `schedule`'s betas."""

    @staticmethod
    def scheduler_config(schedule: DiffusionSchedule) -> dict:
        return dict(num_train_timesteps=schedule.timesteps, trained_betas=schedule.betas.numpy(),
                    prediction_type="epsilon", timestep_spacing="trailing")  # trailing: the first step is t = T

    def step_arguments(self, x: torch.Tensor, cond: Conditioning) -> dict:
        """Extra arguments of `scheduler.step` (drawn after the step's network call)."""
        return {}

    def _denoise(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        scheduler = self.scheduler(self.process)
        scheduler.set_timesteps(self.spec.steps, device=x.device)
        for t in scheduler.timesteps:
            eps = self.predict(x, int(t), cond)
            x = scheduler.step(eps, t, x, **self.step_arguments(x, cond)).prev_sample
        return x


class DDIMSampler(ScheduledSampler):
    """DDIM (Song et al. 2021); eta > 0 adds per-image noise at each step."""

    name = "ddim"

    @classmethod
    def stochastic(cls, eta: float) -> bool:
        return eta > 0

    @classmethod
    def scheduler(cls, schedule: DiffusionSchedule):
        from diffusers import DDIMScheduler

        return DDIMScheduler(**cls.scheduler_config(schedule), clip_sample=False, set_alpha_to_one=True)

    def step_arguments(self, x: torch.Tensor, cond: Conditioning) -> dict:
        if not self.stochastic(self.spec.eta):
            return {"eta": 0.0}
        return {"eta": self.spec.eta, "variance_noise": per_image_normal(cond.generators, x.shape[1:], x.device)}


class DPMSolverSampler(ScheduledSampler):
    """DPM-Solver++ (2M) (Lu et al. 2022), deterministic."""

    name = "dpmpp"

    @classmethod
    def stochastic(cls, eta: float) -> bool:
        return False

    @classmethod
    def scheduler(cls, schedule: DiffusionSchedule):
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(**cls.scheduler_config(schedule), algorithm_type="dpmsolver++",
                                           solver_order=2, lower_order_final=True, final_sigmas_type="zero")


def make_sampler(model: nn.Module, process: Process, target: str, spec: SamplerSpec, **options) -> Sampler:
    """The sampler `spec.name` over `model` (options: guidance_scale, clip_x0, precision)."""
    return spec.sampler_class(model, process, target, spec, **options)
