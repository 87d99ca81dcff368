"""The forward process against the thesis's equations, computed independently (numpy, float64) and by diffusers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsr.core.parameters import DiffusionParams, ResShiftParams
from medsr.diffusion.schedule import (DiffusionSchedule, cosine_betas, decode_target, encode_target, linear_betas,
                                      target_bounds, to_model_range)

T = 500


def _params(**overrides) -> DiffusionParams:
    values = dict(
        process="ddpm",
        resshift=ResShiftParams(15, 2.0, 0.3, 1e-3, 0.998),
        schedule="linear",
        timesteps=T,
        beta_start=1e-4,
        beta_end=0.02,
        cosine_s=0.008,
        target="image",
    )
    values.update(overrides)
    return DiffusionParams(**values)


@pytest.fixture(scope="module", params=["linear", "cosine"])
def schedule(request) -> DiffusionSchedule:
    return DiffusionSchedule.from_params(_params(schedule=request.param))


# --- betas and alphas_cumprod ------------------------------------------------------------------

def test_linear_betas_follow_eq_3_1():
    betas = DiffusionSchedule.from_params(_params()).betas.numpy()
    assert betas.shape == (T,)
    assert betas[0] == pytest.approx(1e-4, abs=1e-15) and betas[-1] == pytest.approx(0.02, abs=1e-15)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / (T - 1), rtol=1e-9)  # evenly spaced
    np.testing.assert_allclose(betas, np.linspace(1e-4, 0.02, T), rtol=1e-12)


def _cosine_alphas_cumprod_numpy(timesteps: int, s: float) -> np.ndarray:
    """Eq. 3.2-3.3 written out: abar_t = f(t) / f(0), f(t) = cos(((t/T + s) / (1 + s)) pi/2)^2, t = 1..T."""
    t = np.arange(timesteps + 1, dtype=np.float64)
    f = np.cos(((t / timesteps + s) / (1 + s)) * np.pi / 2) ** 2
    return (f / f[0])[1:]


@pytest.mark.parametrize("timesteps, s", [(50, 0.008), (500, 0.008), (1000, 0.02)])
def test_cosine_schedule_follows_eq_3_2_3_3(timesteps, s):
    ours = DiffusionSchedule.from_params(_params(schedule="cosine", timesteps=timesteps, cosine_s=s))
    expected = _cosine_alphas_cumprod_numpy(timesteps, s)
    # every step but the last, whose beta is clipped to 0.999 (f(T) = 0 would make beta_T = 1)
    np.testing.assert_allclose(ours.alphas_cumprod.numpy()[:-1], expected[:-1], rtol=1e-10, atol=1e-14)
    assert ours.betas[-1].item() == pytest.approx(0.999)
    betas = 1 - expected[1:] / expected[:-1]  # beta_t = 1 - abar_t / abar_{t-1}
    np.testing.assert_allclose(ours.betas.numpy()[1:-1], betas[:-1], rtol=1e-9)
    assert ours.betas[0].item() == pytest.approx(1 - expected[0], rel=1e-9)


def test_alphas_cumprod_is_the_cumulative_product(schedule):
    alphas = 1 - schedule.betas.numpy()
    np.testing.assert_allclose(schedule.alphas.numpy(), alphas, rtol=1e-15)
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(), np.cumprod(alphas), rtol=1e-12)
    assert np.all(np.diff(schedule.alphas_cumprod.numpy()) < 0)  # strictly decreasing: noise only grows


def test_alphas_cumprod_matches_diffusers():
    from diffusers import DDPMScheduler

    for params, name in ((_params(), "linear"), (_params(schedule="cosine"), "squaredcos_cap_v2")):
        ours = DiffusionSchedule.from_params(params)
        from_betas = DDPMScheduler(num_train_timesteps=T, trained_betas=ours.betas.numpy())
        np.testing.assert_allclose(from_betas.alphas_cumprod.numpy(), ours.alphas_cumprod.numpy(),
                                   rtol=1e-5, atol=1e-10)
        # diffusers' own construction of the same schedule (its float32 linspace / betas_for_alpha_bar)
        native = DDPMScheduler(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule=name)
        np.testing.assert_allclose(native.betas.numpy(), ours.betas.numpy(), rtol=1e-5)
        np.testing.assert_allclose(native.alphas_cumprod.numpy(), ours.alphas_cumprod.numpy(), rtol=1e-4, atol=1e-10)


# --- closed forms --------------------------------------------------------------------------------

def test_q_sample_is_eq_1_9(schedule):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 5, 6, generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([0, 7, T // 2, T - 1])
    x_t = schedule.q_sample(x0, x0, t, noise)
    abar = schedule.alphas_cumprod.numpy()
    for i, step in enumerate(t.tolist()):
        expected = math.sqrt(abar[step]) * x0[i].double() + math.sqrt(1 - abar[step]) * noise[i].double()
        torch.testing.assert_close(x_t[i].double(), expected, rtol=1e-5, atol=1e-6)


def test_q_sample_moments_over_many_draws():
    schedule = DiffusionSchedule.from_params(_params())
    n = 200_000
    x0 = torch.full((n, 1), 0.7)
    generator = torch.Generator().manual_seed(1)
    for step in (10, 150, T - 1):
        t = torch.full((n,), step)
        x_t = schedule.q_sample(x0, x0, t, torch.randn(x0.shape, generator=generator)).double()
        abar = schedule.alphas_cumprod[step].item()
        mean_sd = math.sqrt((1 - abar) / n)
        assert abs(x_t.mean().item() - math.sqrt(abar) * 0.7) < 5 * mean_sd
        var_sd = (1 - abar) * math.sqrt(2 / (n - 1))  # sd of a Gaussian sample variance
        assert abs(x_t.var().item() - (1 - abar)) < 5 * var_sd


def test_predict_x0_and_eps_invert_q_sample(schedule):
    generator = torch.Generator().manual_seed(2)
    x0 = torch.rand(6, 1, 4, 4, generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([0, 1, 50, 200, 400, 450])  # up to where sqrt(abar) is still well away from 0 in float32
    x_t = schedule.q_sample(x0, x0, t, noise)
    torch.testing.assert_close(schedule.predict_x0_from_eps(x_t, t, noise), x0, rtol=1e-4, atol=2e-4)
    torch.testing.assert_close(schedule.predict_eps_from_x0(x_t, t, x0), noise, rtol=1e-4, atol=2e-4)


def _gaussian_posterior(x0: float, x_t: float, beta: float, abar_prev: float) -> tuple[float, float]:
    """q(x_{t-1} | x_t, x0) by completing the square of q(x_t | x_{t-1}) q(x_{t-1} | x0), in float64:
    N(x_t; sqrt(1 - beta) x_{t-1}, beta) N(x_{t-1}; sqrt(abar_prev) x0, 1 - abar_prev)."""
    alpha = 1 - beta
    if abar_prev == 1.0:  # t = 1: x_{t-1} = x0 exactly
        return x0, 0.0
    precision = alpha / beta + 1 / (1 - abar_prev)
    mean = (math.sqrt(alpha) * x_t / beta + math.sqrt(abar_prev) * x0 / (1 - abar_prev)) / precision
    return mean, 1 / precision


def test_ancestral_mean_from_true_eps_is_the_gaussian_posterior_mean_by_hand(schedule):
    """Algorithm 2's mean with the true noise equals mu~(x_t, x0) of q(x_{t-1} | x_t, x0) (Ho et al. 2020 Eq. 7),
    here completed by hand: the same quantity written two ways."""
    betas = schedule.betas.numpy()
    abar_prev = np.concatenate([[1.0], np.cumprod(1 - betas)[:-1]])
    steps = [0, 1, 2, 10, 100, T // 2, T - 2, T - 1]
    x0 = torch.full((len(steps), 1), 0.3)
    noise = torch.full((len(steps), 1), -0.8)
    t = torch.tensor(steps)
    x_t = schedule.q_sample(x0, x0, t, noise)
    mean = schedule.ancestral_mean(x_t, t, noise)
    for i, step in enumerate(steps):
        expected, _ = _gaussian_posterior(0.3, x_t[i].item(), float(betas[step]), float(abar_prev[step]))
        assert mean[i].item() == pytest.approx(expected, rel=1e-4, abs=2e-5)  # t = 0 too: x0
    # and a wrong eps gives a different mean (the check can fail)
    assert not torch.allclose(schedule.ancestral_mean(x_t, t, noise + 0.1), mean, atol=1e-3)


def test_reverse_step_is_algorithm_2_with_no_noise_at_the_end(schedule):
    x_t = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    mean, std = schedule.reverse_step(x_t, eps, 40, 39)
    torch.testing.assert_close(mean, schedule.ancestral_mean(x_t, torch.full((2,), 40), eps), rtol=0, atol=0)
    assert std.item() == pytest.approx(math.sqrt(schedule.betas[40].item()), rel=1e-6)  # sigma_t^2 = beta_t
    assert schedule.reverse_step(x_t, eps, 0, -1)[1] is None
    with pytest.raises(ValueError, match="from t to t - 1"):
        schedule.reverse_step(x_t, eps, 40, 30)


# --- the diffused variable ---------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["image", "residual"])
def test_encode_decode_round_trip(target):
    generator = torch.Generator().manual_seed(4)
    hr = torch.rand(3, 1, 8, 8, generator=generator)
    bicubic = (hr + 0.1 * torch.randn(hr.shape, generator=generator)).clamp(0, 1)
    x0 = encode_target(hr, bicubic, target)
    expected = hr * 2 - 1 if target == "image" else (hr - bicubic) * 2
    torch.testing.assert_close(x0, expected)
    torch.testing.assert_close(decode_target(x0, bicubic, target), hr, rtol=0, atol=1e-6)


@pytest.mark.parametrize("target", ["image", "residual"])
def test_target_bounds_keep_decoded_images_in_unit_range(target):
    generator = torch.Generator().manual_seed(5)
    bicubic = torch.rand(2, 1, 8, 8, generator=generator)
    low, high = target_bounds(bicubic, target)
    x0 = 4 * torch.randn(bicubic.shape, generator=generator)  # far outside any valid range
    clipped = torch.minimum(torch.maximum(x0, torch.as_tensor(low)), torch.as_tensor(high))
    image = clipped if target == "image" else clipped + to_model_range(bicubic)  # decoded before its clamp
    unit = (image + 1) / 2
    assert unit.min().item() >= -1e-6 and unit.max().item() <= 1 + 1e-6
    # the bounds are tight: the lower bound decodes to 0 and the upper to 1 everywhere
    for bound, value in ((low, 0.0), (high, 1.0)):
        decoded = decode_target(torch.as_tensor(bound).expand_as(bicubic), bicubic, target)
        torch.testing.assert_close(decoded, torch.full_like(bicubic, value), rtol=0, atol=1e-6)
    # inside the bounds decoding clamps nothing: it is the identity on valid x0
    inside = low + (torch.as_tensor(high) - low) * torch.rand(bicubic.shape, generator=generator)
    expected = inside if target == "image" else inside + to_model_range(bicubic)
    torch.testing.assert_close(decode_target(inside, bicubic, target), (expected + 1) / 2, rtol=0, atol=1e-6)


def test_helpers_give_float64_betas():
    assert linear_betas(10, 1e-4, 0.02).dtype == torch.float64
    assert cosine_betas(10).dtype == torch.float64
