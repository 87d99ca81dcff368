"""The ResShift process (Yue et al. 2023) against its equations: schedule, forward marginals, posterior, sampler."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from medsr.core.config import load_params, load_raw, params_from_dict
from medsr.core.parameters import NULL_CLASS, ResShiftParams
from medsr.diffusion.resshift import ResShiftSchedule, eta_schedule
from medsr.diffusion.samplers import SamplerSpec, image_generators, make_sampler
from medsr.diffusion.schedule import DiffusionSchedule, encode_target, process_schedule
from medsr.core.errors import MedsrError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ResShiftParams(timesteps=15, kappa=2.0, p=0.3, eta_1=1e-3, eta_T=0.998)
SCHEDULE = ResShiftSchedule.from_params(PARAMS)


def test_eta_schedule_is_eq_10():
    """sqrt(eta_t) = sqrt(eta_1) b0^beta_t: the ends are eta_1 and eta_T, log sqrt(eta) is linear in beta_t with
    slope log b0, and eta rises with t."""
    etas = eta_schedule(15, 1e-3, 0.998, 0.3)
    assert etas.dtype == torch.float64 and len(etas) == 15
    assert etas[0].item() == pytest.approx(1e-3, rel=1e-12) and etas[-1].item() == pytest.approx(0.998, rel=1e-12)
    t = torch.arange(1, 16, dtype=torch.float64)
    beta = ((t - 1) / 14) ** 0.3 * 14
    log_b0 = math.log(0.998 / 1e-3) / 28
    torch.testing.assert_close(0.5 * etas.log(), 0.5 * math.log(1e-3) + beta * log_b0, rtol=1e-12, atol=1e-12)
    assert bool((etas[1:] > etas[:-1]).all())
    assert eta_schedule(1, 1e-3, 0.998, 0.3).tolist() == [0.998]


def _chain(x0: torch.Tensor, y0: torch.Tensor, schedule: ResShiftSchedule, upto: int,
           generator: torch.Generator) -> torch.Tensor:
    """x_t by the transitions q(x_t | x_{t-1}) = N(x_{t-1} + alpha_t e_0, kappa^2 alpha_t I) from x_0 (Eq. 2)."""
    x, eta_prev = x0.clone(), 0.0
    for eta in schedule.etas[: upto + 1].tolist():
        alpha = eta - eta_prev
        x = x + alpha * (y0 - x0) + schedule.kappa * math.sqrt(alpha) * torch.randn(x.shape, generator=generator,
                                                                                 dtype=x.dtype)
        eta_prev = eta
    return x


def _within(sample: torch.Tensor, mean: float, var: float) -> None:
    """Sample mean and variance against the expected ones, 5 standard errors (a 1e-6 chance per check)."""
    n = len(sample)
    assert abs(sample.mean().item() - mean) < 5 * math.sqrt(var / n), (sample.mean().item(), mean)
    assert abs(sample.var().item() - var) < 5 * var * math.sqrt(2 / (n - 1)), (sample.var().item(), var)


@pytest.mark.parametrize("t", [0, 6, 14])
def test_forward_marginal_matches_the_chained_transitions(t):
    """Monte Carlo: x_t drawn step by step through the transitions has the marginal of Eq. 3,
    N(x_0 + eta_t e_0, kappa^2 eta_t), the one q_sample draws from."""
    n = 200_000
    generator = torch.Generator().manual_seed(t)
    x0, y0 = torch.full((n,), 0.3, dtype=torch.float64), torch.full((n,), -0.5, dtype=torch.float64)
    chained = _chain(x0, y0, SCHEDULE, t, generator)
    eta = SCHEDULE.etas[t].item()
    _within(chained, 0.3 + eta * (-0.8), SCHEDULE.kappa ** 2 * eta)
    direct = SCHEDULE.q_sample(x0.float(), y0.float(), torch.full((n,), t), torch.randn(n, generator=generator))
    _within(direct.double(), 0.3 + eta * (-0.8), SCHEDULE.kappa ** 2 * eta)


@pytest.mark.parametrize("t, s", [(14, 13), (14, 3), (5, 0), (3, -1)])
def test_posterior_is_the_gaussian_conditional(t, s):
    """q(x_s | x_t, x_0) by conditioning the joint Gaussian (x_s, x_t) given x_0: mean
    mu_s + Cov(x_s, x_t) / Var(x_t) (x_t - mu_t), variance Var(x_s) - Cov^2 / Var(x_t), Cov = Var(x_s)."""
    g = torch.Generator().manual_seed(0)
    x0, y0, x_t = (torch.randn(4, 1, 3, 3, generator=g) for _ in range(3))
    eta_t = SCHEDULE.etas[t].item()
    eta_s = SCHEDULE.etas[s].item() if s >= 0 else 0.0
    k2 = SCHEDULE.kappa ** 2
    mu_s, mu_t = x0 + eta_s * (y0 - x0), x0 + eta_t * (y0 - x0)
    var_s, var_t = k2 * eta_s, k2 * eta_t
    mean, variance = SCHEDULE.posterior_mean_variance(x_t, x0, torch.full((4,), t), torch.full((4,), s))
    torch.testing.assert_close(mean, mu_s + var_s / var_t * (x_t - mu_t), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(variance.expand_as(mean), torch.full_like(mean, var_s - var_s ** 2 / var_t),
                               rtol=1e-5, atol=1e-7)
    # Eq. 6 itself: eta_{t-1}/eta_t x_t + alpha_t/eta_t x_0 and kappa^2 eta_{t-1}/eta_t alpha_t
    alpha = eta_t - eta_s
    torch.testing.assert_close(mean, eta_s / eta_t * x_t + alpha / eta_t * x0, rtol=1e-5, atol=1e-6)
    assert variance.flatten()[0].item() == pytest.approx(k2 * eta_s / eta_t * alpha, rel=1e-6)


def test_posterior_step_keeps_the_forward_marginal():
    """Monte Carlo: x_t ~ q(x_t | x_0), then x_s ~ q(x_s | x_t, x_0): x_s has the marginal q(x_s | x_0)."""
    n, t, s = 200_000, 12, 4
    g = torch.Generator().manual_seed(1)
    x0, y0 = torch.full((n, 1, 1, 1), 0.2), torch.full((n, 1, 1, 1), 0.9)
    x_t = SCHEDULE.q_sample(x0, y0, torch.full((n,), t), torch.randn(x0.shape, generator=g))
    mean, std = SCHEDULE.reverse_step(x_t, x0, t, s)  # the sampler's step: Eq. 6
    x_s = (mean + std * torch.randn(x0.shape, generator=g)).flatten().double()
    eta = SCHEDULE.etas[s].item()
    _within(x_s, 0.2 + eta * 0.7, SCHEDULE.kappa ** 2 * eta)


def test_the_last_reverse_step_is_the_x0_prediction_itself():
    g = torch.Generator().manual_seed(2)
    x_t, x0 = torch.randn(2, 1, 3, 3, generator=g), torch.randn(2, 1, 3, 3, generator=g)
    mean, std = SCHEDULE.reverse_step(x_t, x0, 3, -1)
    assert std is None and torch.equal(mean, x0)


def test_step_indices_start_at_T_and_end_at_x0():
    assert SCHEDULE.step_indices(15) == list(range(14, -2, -1))
    assert SCHEDULE.step_indices(1) == [14, -1]
    assert SCHEDULE.step_indices(2) == [14, 0, -1]
    for k in range(1, 16):
        steps = SCHEDULE.step_indices(k)
        assert steps[0] == 14 and steps[-1] == -1 and len(steps) == k + 1
        assert steps == sorted(set(steps), reverse=True)
    assert SCHEDULE.step_indices(40) == SCHEDULE.step_indices(15)  # at most T


class PerfectX0(nn.Module):
    """Knows x_0 for every image and returns it (an x_0 predictor, as ResShift's network)."""

    def __init__(self, x0: torch.Tensor):
        super().__init__()
        self.x0 = x0
        self.anchor = nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[int, torch.Tensor]] = []

    def forward(self, x_t, t, *, class_labels, lr_upsampled):
        self.calls.append((int(t[0]), x_t.clone()))
        return self.x0.repeat(len(x_t) // len(self.x0), 1, 1, 1)


@pytest.mark.parametrize("steps", [1, 3, 15])
@pytest.mark.parametrize("target", ["image", "residual"])
def test_a_perfect_x0_predictor_returns_hr_exactly(steps, target):
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 1, 8, 8, generator=g)
    bicubic = (hr + 0.1 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    model = PerfectX0(encode_target(hr, bicubic, target))
    sampler = make_sampler(model, SCHEDULE, target, SamplerSpec("resshift", steps))
    sr = sampler.sample(bicubic, torch.full((3,), NULL_CLASS), image_generators(0, ["a", "b", "c"]))
    torch.testing.assert_close(sr, hr, atol=1e-6, rtol=0)
    assert [t for t, _ in model.calls] == SCHEDULE.step_indices(steps)[:-1]  # one call per step, from T down
    # the chain starts at x_T = y_0 + kappa sqrt(eta_T) eps, eps from the image's own generator
    eps = torch.stack([torch.randn((1, 8, 8), generator=gen) for gen in image_generators(0, ["a", "b", "c"])])
    y0 = encode_target(bicubic, bicubic, target)
    torch.testing.assert_close(model.calls[0][1], y0 + SCHEDULE.kappa * math.sqrt(SCHEDULE.etas[-1].item()) * eps)


def test_resshift_samples_depend_on_seed_and_image_id_only():
    g = torch.Generator().manual_seed(2)
    hr = torch.rand(4, 1, 8, 8, generator=g)

    class Shrink(nn.Module):  # an imperfect x_0 predictor: the outputs depend on the noise drawn
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.zeros(1))  # the sampler finds the device through it

        def forward(self, x_t, t, *, class_labels, lr_upsampled):
            return 0.5 * x_t

    sampler = make_sampler(Shrink(), SCHEDULE, "residual", SamplerSpec("resshift", 4))
    labels = torch.full((4,), NULL_CLASS)
    whole = sampler.sample(hr, labels, image_generators(0, list("abcd")))
    parts = torch.cat([sampler.sample(hr[:1], labels[:1], image_generators(0, ["a"])),
                       sampler.sample(hr[1:], labels[1:], image_generators(0, list("bcd")))])
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=0)
    assert not torch.allclose(sampler.sample(hr, labels, image_generators(1, list("abcd"))), whole)


def test_guidance_combines_the_x0_predictions():
    """Classifier-free guidance on the x_0 prediction: x0 = x0(null) + w (x0(c) - x0(null)), one step."""

    class ByClass(nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = nn.Parameter(torch.zeros(1))  # the sampler finds the device through it

        def forward(self, x_t, t, *, class_labels, lr_upsampled):
            return 0.1 * class_labels.float()[:, None, None, None].expand_as(x_t) - 0.5

    bicubic = torch.full((2, 1, 4, 4), 0.5)
    sampler = make_sampler(ByClass(), SCHEDULE, "residual", SamplerSpec("resshift", 1), guidance_scale=3.0)
    sr = sampler.sample(bicubic, torch.tensor([0, 1]), image_generators(0, ["a", "b"]))
    null = 0.1 * NULL_CLASS - 0.5
    x0 = torch.tensor([null + 3 * (-0.5 - null), null + 3 * (-0.4 - null)])  # residuals; y_0 = 0 here
    assert bool((x0.abs() < 1).all())  # inside the clipping range, so the guided value itself comes out
    torch.testing.assert_close(sr[:, 0], ((x0 + 1) / 2)[:, None, None].expand(2, 4, 4))


def test_sampler_and_process_must_match():
    ddpm = DiffusionSchedule(torch.linspace(1e-4, 0.02, 10, dtype=torch.float64))
    model = PerfectX0(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="resshift"):
        make_sampler(model, ddpm, "image", SamplerSpec("resshift", 4))
    with pytest.raises(ValueError, match="resshift"):
        make_sampler(model, SCHEDULE, "image", SamplerSpec("ddim", 4))


def test_params_choose_the_process():
    raw = load_raw([ROOT / "params.yaml"])
    default = params_from_dict(raw)  # the default: resshift, sampled by the resshift sampler
    assert (default.diffusion.process, default.generate.sampler) == ("resshift", "resshift")
    assert isinstance(process_schedule(default.diffusion), ResShiftSchedule)
    assert process_schedule(default.diffusion).timesteps == default.diffusion.resshift.timesteps
    raw["generate"]["sampler"] = "ddim"
    with pytest.raises(MedsrError, match="generate.sampler: ddim cannot sample a diffusion.process resshift"):
        params_from_dict(raw)
    raw["generate"]["sampler"] = "resshift"
    raw["generate"]["steps"] = default.diffusion.resshift.timesteps + 1
    with pytest.raises(MedsrError, match="generate.steps"):
        params_from_dict(raw)
    raw["diffusion"]["process"] = "ddpm"
    raw["generate"]["steps"] = 4
    with pytest.raises(MedsrError, match="generate.sampler: resshift cannot sample a diffusion.process ddpm"):
        params_from_dict(raw)
    raw["generate"]["sampler"] = "ddim"
    assert isinstance(process_schedule(params_from_dict(raw).diffusion), DiffusionSchedule)
    thesis = load_params([ROOT / "params.yaml", ROOT / "configs" / "thesis.yaml"])
    assert (thesis.diffusion.process, thesis.generate.sampler) == ("ddpm", "ancestral")
