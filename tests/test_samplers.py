"""Samplers: exact recovery with a perfect denoiser, guidance arithmetic, x0 clipping, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medsr.diffusion import samplers
from medsr.core.parameters import (DISTILLED_SAMPLERS, NULL_CLASS, SAMPLER_PROCESS, SAMPLERS, DiffusionParams,
                              ResShiftParams, sampler_declarations)
from medsr.diffusion.samplers import (SAMPLER_CLASSES, DDIMSampler, DPMSolverSampler, SamplerSpec, guided_prediction,
                                      image_generators, make_sampler)
from medsr.diffusion.schedule import DiffusionSchedule, encode_target, target_bounds



def ddpm_params(schedule: str) -> DiffusionParams:
    return DiffusionParams("ddpm", schedule, 100, 1e-4, 0.02, 0.008, "image", ResShiftParams(15, 2.0, 0.3, 1e-3, 0.998))


SCHEDULE = DiffusionSchedule.from_params(ddpm_params("linear"))


class PerfectDenoiser(nn.Module):
    """Knows x0 for every image: returns the exact noise eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""

    def __init__(self, x0: torch.Tensor, schedule: DiffusionSchedule):
        super().__init__()
        self.x0, self.schedule = x0, schedule
        self.anchor = nn.Parameter(torch.zeros(1))  # a parameter, so the sampler can find the device
        self.calls = 0

    def forward(self, x_t, t, *, class_labels, lr_upsampled):
        self.calls += 1
        x0 = self.x0.repeat(len(x_t) // len(self.x0), 1, 1, 1)
        return self.schedule.predict_eps_from_x0(x_t, t, x0)


class ClassTable(nn.Module):
    """eps = class index everywhere: shows which classes a sampler asked for."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def forward(self, x_t, t, *, class_labels, lr_upsampled):
        self.seen.append(class_labels.tolist())
        return class_labels.float()[:, None, None, None].expand_as(x_t).clone()


def hr_images(n: int = 3, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, size, size, generator=g)


@pytest.mark.parametrize("spec", [SamplerSpec("ancestral", 0), SamplerSpec("ddim", 10),
                                  SamplerSpec("ddim", 10, eta=1.0), SamplerSpec("dpmpp", 10)],
                         ids=["ancestral", "ddim", "ddim-eta1", "dpmpp"])
@pytest.mark.parametrize("target", ["image", "residual"])
def test_every_sampler_recovers_the_image_from_a_perfect_denoiser(spec, target):
    hr = hr_images()
    bicubic = (hr + 0.05 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    model = PerfectDenoiser(encode_target(hr, bicubic, target), SCHEDULE)
    sampler = make_sampler(model, SCHEDULE, target, spec)
    sr = sampler.sample(bicubic, torch.full((3,), NULL_CLASS), image_generators(0, ["a", "b", "c"]))
    assert sr.shape == hr.shape
    torch.testing.assert_close(sr, hr, atol=2e-4, rtol=0)
    assert model.calls == spec.evaluations(SCHEDULE.timesteps)  # one network call per step (no guidance)


# --- the registry -----------------------------------------------------------------------------------

def test_every_configurable_sampler_has_one_class_and_the_other_way_round():
    assert set(SAMPLER_CLASSES) == set(SAMPLER_PROCESS) == set(SAMPLERS)
    assert all(cls.name == name for name, cls in SAMPLER_CLASSES.items())
    # the table params.yaml is validated with is the classes' own attributes (read off their source)
    assert {name: cls.diffusion_process for name, cls in SAMPLER_CLASSES.items()} == SAMPLER_PROCESS
    # the DAG trains a student for exactly the samplers that sample one (medsr.stages.generate_model)
    assert {name for name, cls in SAMPLER_CLASSES.items() if cls.distilled} == DISTILLED_SAMPLERS == {"student"}
    with pytest.raises(ValueError, match="'euler' is not one of ancestral, ddim, dpmpp, resshift"):
        SamplerSpec("euler", 4).sampler_class


NEW_SAMPLERS = '''
class Sampler:
    distilled: ClassVar[bool] = False
    name: ClassVar[str]

class Scheduled(Sampler):
    diffusion_process = "ddpm"

class Euler(Scheduled):
    """Euler."""
    name = "euler"

class Shortcut(Sampler):
    name = "shortcut"
    diffusion_process = "resshift"
    distilled = True
'''


def test_a_new_sampler_is_one_class(tmp_path, monkeypatch):
    """Declaring the class is all the registry and the params file's enum need: the declarations are read off the
    source (inherited literals included, a base without a name is no sampler) and defining the class registers it."""
    source = tmp_path / "samplers.py"
    source.write_text(NEW_SAMPLERS)
    assert sampler_declarations(source) == {
        "euler": {"distilled": False, "diffusion_process": "ddpm", "name": "euler"},
        "shortcut": {"distilled": True, "diffusion_process": "resshift", "name": "shortcut"}}
    source.write_text(NEW_SAMPLERS + "\nclass Again(Scheduled):\n    name = 'euler'\n")
    with pytest.raises(ValueError, match="two sampler classes are named 'euler'"):
        sampler_declarations(source)

    monkeypatch.setattr(samplers, "SAMPLER_CLASSES", dict(SAMPLER_CLASSES))

    class EulerSampler(DDIMSampler):
        name = "euler"

    assert samplers.SAMPLER_CLASSES["euler"] is EulerSampler
    assert SamplerSpec("euler", 4).sampler_class is EulerSampler and SamplerSpec("euler", 4).evaluations(100) == 4
    monkeypatch.undo()
    assert "euler" not in samplers.SAMPLER_CLASSES


@pytest.mark.parametrize("name, steps, timesteps, evaluations", [
    ("ancestral", 4, 100, 100), ("ddim", 4, 100, 4), ("dpmpp", 7, 100, 7), ("resshift", 4, 15, 4),
    ("resshift", 40, 15, 15)])
def test_each_sampler_knows_its_step_count(name, steps, timesteps, evaluations):
    assert SamplerSpec(name, steps).evaluations(timesteps) == evaluations


def test_each_sampler_knows_whether_it_draws_noise():
    assert SamplerSpec("ancestral", 1).stochastic and SamplerSpec("resshift", 1).stochastic
    assert SamplerSpec("ddim", 4, eta=0.5).stochastic and not SamplerSpec("ddim", 4, eta=0.0).stochastic
    assert not SamplerSpec("dpmpp", 4, eta=0.5).stochastic


@pytest.mark.parametrize("spec", [SamplerSpec("ancestral", 0), SamplerSpec("ddim", 5, eta=0.5), SamplerSpec("ddim", 5),
                                  SamplerSpec("dpmpp", 5)], ids=["ancestral", "ddim-eta", "ddim", "dpmpp"])
def test_a_sampler_draws_noise_after_x_T_exactly_when_it_says_it_is_stochastic(spec):
    ids = ["a", "b", "c"]
    used = image_generators(3, ids)
    make_sampler(TinyNet(), SCHEDULE, "image", spec).sample(hr_images(), torch.full((3,), NULL_CLASS), used)
    after_x_T = image_generators(3, ids)
    for g in after_x_T:
        torch.randn((1, 8, 8), generator=g)
    drew_more = any(not torch.equal(u.get_state(), x.get_state()) for u, x in zip(used, after_x_T))
    assert drew_more == spec.stochastic


def test_posterior_samples_use_the_configured_sampler_if_stochastic_else_ddim():
    assert SamplerSpec("ancestral", 4).sampler_class.posterior_spec(4, 0.8) == SamplerSpec("ancestral", 4, 0.0)
    assert SamplerSpec("resshift", 4).sampler_class.posterior_spec(4, 0.8) == SamplerSpec("resshift", 4, 0.0)
    for name in ("ddim", "dpmpp"):
        assert SamplerSpec(name, 4).sampler_class.posterior_spec(4, 0.8) == SamplerSpec("ddim", 4, 0.8)


def test_ancestral_step_is_algorithm_2():
    """One step by hand: x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps) + sqrt(beta_t) z."""
    x_t = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    t = 40
    alpha, abar = SCHEDULE.alphas[t].item(), SCHEDULE.alphas_cumprod[t].item()
    expected = (x_t - (1 - alpha) / (1 - abar) ** 0.5 * eps) / alpha ** 0.5
    got = SCHEDULE.ancestral_mean(x_t, torch.full((2,), t), eps)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_classifier_free_guidance_combines_null_and_conditional():
    model = ClassTable()
    x = torch.zeros(2, 1, 4, 4)
    labels = torch.tensor([0, 1])
    t = torch.zeros(2, dtype=torch.long)
    for w in (0.0, 1.0, 2.5):
        eps = guided_prediction(model, x, t, x, labels, w)
        # eps(null) = 2, eps(c) = c: eps = 2 + w (c - 2)
        expected = torch.tensor([2 + w * (0 - 2), 2 + w * (1 - 2)])
        torch.testing.assert_close(eps[:, 0, 0, 0], expected)
    assert model.seen == [[NULL_CLASS, NULL_CLASS], [0, 1], [NULL_CLASS, NULL_CLASS, 0, 1]]
    guided_prediction(model, x, t, x, torch.full((2,), NULL_CLASS), 3.0)  # unconditional: one call, null class only
    assert model.seen[-1] == [NULL_CLASS, NULL_CLASS]


@pytest.mark.parametrize("target", ["image", "residual"])
def test_x0_clipping_keeps_the_implied_image_in_range(target):
    bicubic = hr_images()
    x_t = 3 * torch.randn(bicubic.shape, generator=torch.Generator().manual_seed(5))
    wild = 10 * torch.randn(bicubic.shape, generator=torch.Generator().manual_seed(6))
    t = torch.full((3,), 10)
    low, high = target_bounds(bicubic, target)
    x0 = SCHEDULE.predict_x0_from_eps(x_t, t, SCHEDULE.clip_prediction(x_t, t, wild, (low, high)))
    assert bool((x0 >= torch.as_tensor(low) - 1e-4).all() and (x0 <= torch.as_tensor(high) + 1e-4).all())
    unclipped = SCHEDULE.predict_x0_from_eps(x_t, t, wild)
    assert bool(((unclipped < torch.as_tensor(low)) | (unclipped > torch.as_tensor(high))).any())


class TinyNet(nn.Module):
    """A small deterministic, non-trivial denoiser with dropout (which sampling must switch off)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 1, 3, padding=1)
        self.embed = nn.Embedding(NULL_CLASS + 1, 1)
        self.drop = nn.Dropout(0.5)

    def forward(self, x_t, t, *, class_labels, lr_upsampled):
        h = self.conv(torch.cat([x_t, lr_upsampled], 1)) + self.embed(class_labels)[:, :, None, None]
        return self.drop(h) + 0.001 * t.float()[:, None, None, None]


@pytest.mark.parametrize("spec", [SamplerSpec("ancestral", 0), SamplerSpec("ddim", 5, eta=0.5),
                                  SamplerSpec("dpmpp", 5)], ids=["ancestral", "ddim", "dpmpp"])
def test_samples_depend_on_seed_and_image_id_only(spec):
    bicubic = hr_images(4)
    labels = torch.tensor([0, 1, NULL_CLASS, 1])
    ids = ["w", "x", "y", "z"]
    net = TinyNet().train()  # left in train mode on purpose: the sampler must use eval mode
    sampler = make_sampler(net, SCHEDULE, "residual", spec, guidance_scale=2.0)
    first = sampler.sample(bicubic, labels, image_generators(7, ids))
    again = sampler.sample(bicubic, labels, image_generators(7, ids))
    assert torch.equal(first, again)
    assert not net.training
    # the same images in other batches (as in other shards) give the same results
    split = torch.cat([sampler.sample(bicubic[:1], labels[:1], image_generators(7, ids[:1])),
                       sampler.sample(bicubic[1:], labels[1:], image_generators(7, ids[1:]))])
    torch.testing.assert_close(split, first, atol=1e-5, rtol=0)
    other_seed = sampler.sample(bicubic, labels, image_generators(8, ids))
    assert (other_seed - first).abs().max() > 1e-3
    assert float(first.min()) >= 0 and float(first.max()) <= 1


def test_diffusers_schedulers_use_our_betas():
    for sampler_class in (DDIMSampler, DPMSolverSampler):
        scheduler = sampler_class.scheduler(SCHEDULE)
        torch.testing.assert_close(scheduler.alphas_cumprod.double(), SCHEDULE.alphas_cumprod, atol=1e-6, rtol=0)
        scheduler.set_timesteps(10)
        assert int(scheduler.timesteps[0]) == SCHEDULE.timesteps - 1  # starts from pure noise
        assert len(scheduler.timesteps) == 10


def test_cosine_schedule_samplers_recover_too():
    cosine = DiffusionSchedule.from_params(ddpm_params("cosine"))
    hr = hr_images()
    for spec in (SamplerSpec("ddim", 8), SamplerSpec("dpmpp", 8)):
        sr = make_sampler(PerfectDenoiser(encode_target(hr, hr, "image"), cosine), cosine, "image", spec).sample(
            hr, torch.full((3,), NULL_CLASS), image_generators(0, ["a", "b", "c"]))
        torch.testing.assert_close(sr, hr, atol=2e-4, rtol=0)


# --- generate.precision -----------------------------------------------------------------------------

def test_bf16_sampling_is_refused_on_the_cpu_with_one_line():
    """bf16 autocast is CUDA only (about 200x slower on our CPUs): refused, never silently run or ignored."""
    from medsr.core.errors import MedsrError

    with pytest.raises(MedsrError, match=r"^generate.precision: bf16 needs a CUDA device, this run is on cpu") as err:
        make_sampler(ClassTable(), SCHEDULE, "image", SamplerSpec("ddim", 2), precision="bf16")
    assert "\n" not in str(err.value)
    with pytest.raises(MedsrError, match="generate.precision: 'fp8' is not one of fp32, bf16"):
        make_sampler(ClassTable(), SCHEDULE, "image", SamplerSpec("ddim", 2), precision="fp8")


def test_fp32_precision_is_the_default_and_runs_no_autocast(monkeypatch):
    hr = hr_images()
    model = PerfectDenoiser(encode_target(hr, hr, "image"), SCHEDULE)
    ids = ["a", "b", "c"]
    default = make_sampler(model, SCHEDULE, "image", SamplerSpec("ddim", 5)).sample(
        hr, torch.full((3,), NULL_CLASS), image_generators(0, ids))
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: pytest.fail("autocast on the CPU"))
    fp32 = make_sampler(model, SCHEDULE, "image", SamplerSpec("ddim", 5), precision="fp32").sample(
        hr, torch.full((3,), NULL_CLASS), image_generators(0, ids))
    assert torch.equal(default, fp32)
