"""The one-step student (SinSR): the deterministic teacher step, a falling loss, a deterministic sampler, the
train-student stage (val criterion, resume, divergence) and its one-line errors."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from medsr.stages import train_sr, train_student
from medsr.core.model_files import load_model_file, load_training_state, read_metadata
from medsr.core.config import deep_merge, load_params, params_from_dict
from medsr.core.parameters import NULL_CLASS
from medsr.diffusion import distill
from medsr.diffusion.unet import build_unet
from medsr.diffusion.resshift import ResShiftSchedule
from medsr.diffusion.samplers import SamplerSpec, StudentSampler, image_generators, make_sampler
from image_pairs import write_pairs
from medsr.core.errors import MedsrError
from medsr.core.io import read_csv

ROOT = Path(__file__).resolve().parents[1]
SMOKE = load_params([ROOT / "params.yaml", ROOT / "configs" / "smoke.yaml"])
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _tiny_model(seed: int = 0) -> torch.nn.Module:
    model_params = dataclasses.replace(SMOKE.sr_model, base_channels=8, channel_mult=(1, 2), attention_levels=(1,),
                                       norm_groups=4, attention_heads=2, dropout=0.0)
    torch.manual_seed(seed)
    return build_unet(model_params, "sr_diffusion").eval()


def _schedule() -> ResShiftSchedule:
    return ResShiftSchedule.from_params(SMOKE.diffusion.resshift)


def _images(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth blobs; odd images (unhealthy) get a ring: [n, 1, size, size] in [0, 1] and labels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for i in range(n):
        cy, cx = rng.uniform(0.35, 0.65, 2)
        image = 0.1 + 0.5 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 0.3 ** 2))
        if i % 2:
            radius = np.hypot(y - cy, x - cx)
            image += 0.3 * (np.abs(radius - 0.15) < 0.03)
        images.append(np.clip(image, 0, 1))
    return torch.tensor(np.stack(images), dtype=torch.float32)[:, None], torch.tensor([i % 2 for i in range(n)])


# --- the deterministic teacher ---------------------------------------------------------------------

def test_deterministic_step_keeps_the_marginal_noise():
    """With the true x_0, x_s = k x_0 + m x_t + j y_0 is the ResShift marginal at eta_s with x_t's own eps."""
    schedule = _schedule()
    x0, y0, eps = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    for t, s in ((14, 9), (9, 3), (3, 0)):
        x_t = schedule.q_sample(x0, y0, torch.full((3,), t), eps)
        k, m, j = distill.deterministic_coefficients(*(float(schedule.etas[i]) for i in (t, s)))
        torch.testing.assert_close(k * x0 + m * x_t + j * y0, schedule.q_sample(x0, y0, torch.full((3,), s), eps))


def test_teacher_trajectory_of_a_perfect_denoiser_returns_x0():
    schedule = _schedule()
    x0, y0 = torch.rand(2, 1, 8, 8) * 0.2 - 0.1, torch.zeros(2, 1, 8, 8)

    class Perfect(torch.nn.Module):
        def forward(self, x, t, class_labels=None, lr_upsampled=None):
            return x0

    x_T = schedule.prior_sample(y0, torch.randn(2, 1, 8, 8))
    bounds = (-1.0, 1.0)
    for steps in (1, 4, 15):
        out = distill.teacher_trajectory(Perfect(), schedule, x_T, y0, torch.zeros(2, dtype=torch.long),
                                         torch.zeros_like(y0), bounds, steps)
        torch.testing.assert_close(out, x0)


# --- the losses --------------------------------------------------------------------------------------

def test_student_loss_falls_on_a_tiny_model():
    schedule, target = _schedule(), "residual"
    teacher = _tiny_model().requires_grad_(False)
    student = _tiny_model()  # initialised from the teacher (the same weights), as SinSR does
    hr, labels = _images(4, 16, seed=0)
    bicubic = torch.nn.functional.avg_pool2d(hr, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    batch = distill.make_batch(teacher, schedule, target, hr, bicubic, labels, noise, teacher_steps=4)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    student.train()
    losses = []
    for _ in range(40):
        out = distill.sinsr_losses(student, schedule, batch, inverse_weight=0.001, gt_weight=1.0)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
        assert set(out) == {"distill", "inverse", "gt", "loss"}
    assert losses[-1] < 0.5 * losses[0], losses
    assert float(distill.sinsr_losses(student, schedule, batch, 0.0, 0.0)["loss"]) < float(
        distill.sinsr_losses(teacher, schedule, batch, 0.0, 0.0)["loss"])  # the distillation term itself fell


def test_zero_weights_leave_only_the_distillation_term():
    schedule = _schedule()
    model = _tiny_model()
    hr, labels = _images(2, 16, seed=1)
    batch = distill.make_batch(model, schedule, "residual", hr, hr, labels, torch.randn(hr.shape), 2)
    out = distill.sinsr_losses(model, schedule, batch, 0.0, 0.0)
    assert set(out) == {"distill", "loss"} and torch.equal(out["loss"], out["distill"])


# --- the sampler -------------------------------------------------------------------------------------

def test_student_sampler_is_one_call_at_T_and_deterministic_per_generator():
    model, schedule = _tiny_model(), _schedule()
    hr, _ = _images(3, 16, seed=2)
    labels = torch.full((3,), NULL_CLASS)
    sampler = make_sampler(model, schedule, "residual", SamplerSpec(StudentSampler.name, 4))

    def draw(seed, ids=("a", "b", "c")):
        return sampler.sample(hr, labels, image_generators(seed, list(ids)))

    first = draw(0)
    assert first.shape == hr.shape and first.dtype == torch.float32
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    assert torch.equal(first, draw(0))  # the same generators: the same images
    assert not torch.equal(first, draw(1))  # another sampling seed: another x_T
    steps = []  # x_0 = f_hat(x_T, y_0, T): one network call, at the last step
    hook = model.register_forward_hook(lambda module, args, out: steps.append(args[1]))
    draw(0)
    hook.remove()
    assert len(steps) == 1 and set(steps[0].tolist()) == {schedule.timesteps - 1}
    spec = SamplerSpec(StudentSampler.name, 4)
    assert spec.evaluations(15) == 1 and not spec.stochastic
    assert StudentSampler.posterior_spec(4, 0.5) == SamplerSpec(StudentSampler.name, 4, 0.0)  # another x_T per draw


def test_student_sampler_refuses_a_ddpm_model_and_a_guidance_scale():
    from medsr.diffusion.schedule import process_schedule
    ddpm = process_schedule(dataclasses.replace(SMOKE.diffusion, process="ddpm"))
    with pytest.raises(ValueError, match="cannot sample a diffusion.process ddpm model"):
        make_sampler(_tiny_model(), ddpm, "residual", SamplerSpec(StudentSampler.name, 1))
    with pytest.raises(ValueError, match="distilled at w = 1"):
        make_sampler(_tiny_model(), _schedule(), "residual", SamplerSpec(StudentSampler.name, 1), guidance_scale=2.0)


# --- the stage ---------------------------------------------------------------------------------------

def _write_sets(root: Path, n: int = 6, size: int = 32) -> tuple[Path, Path]:
    """HR train and val images (and their LR) under root/hr, root/lr."""
    entries = []
    for split, seed in (("train", 1), ("val", 2)):
        images, labels = _images(n, size, seed)
        entries += [(split, i, image, label) for i, (image, label) in enumerate(zip(images, labels.tolist()))]
    return write_pairs(root, entries)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict[str, Path]:
    """Data and a tiny resshift teacher trained for a few steps by train-sr."""
    root = tmp_path_factory.mktemp("student")
    hr, lr = _write_sets(root)
    model_params = dataclasses.replace(SMOKE.sr_model, base_channels=8, channel_mult=(1, 2), attention_levels=(1,),
                                       norm_groups=4, attention_heads=2)
    diffusion = dataclasses.replace(SMOKE.diffusion, process="resshift")
    train = dataclasses.replace(SMOKE.train_sr, steps=4, batch_size=4, crop=16, checkpoint_every=4, log_every=2)
    teacher = root / "sr.safetensors"
    train_sr.run(model_params, diffusion, train, hr=hr, lr=lr, model=teacher, log=root / "sr.csv",
                 checkpoints=None, device=torch.device("cpu"))
    return {"root": root, "hr": hr, "lr": lr, "teacher": teacher}


def _student_params(**changes):
    values = dict(steps=4, batch_size=4, crop=16, learning_rate=1e-3, teacher_steps=2, val_images=4, eval_every=2)
    values.update(changes)
    return dataclasses.replace(SMOKE.train_student, **values)


def _run(project, out: Path, checkpoints: Path | None, **changes) -> Path:
    model = out / "student.safetensors"
    train_student.run(_student_params(**changes), teacher=project["teacher"], hr=project["hr"], lr=project["lr"],
                      model=model, log=out / "student.csv", checkpoints=checkpoints, device=torch.device("cpu"))
    return model


def test_stage_writes_the_best_val_weights_with_student_metadata(project, tmp_path):
    model = _run(project, tmp_path, tmp_path / "ckpt")
    metadata = read_metadata(model)
    teacher = read_metadata(project["teacher"])
    assert metadata["kind"] == "sr_diffusion" and metadata["diffusion"] == teacher["diffusion"]
    assert metadata["sr_model"] == teacher["sr_model"] and metadata["hr_size"] == teacher["hr_size"]
    student = metadata[train_student.STUDENT_KEY]
    assert student["method"] == "sinsr" and student["train_student"]["steps"] == 4
    rows = read_csv(tmp_path / "student.csv")
    assert [int(r["step"]) for r in rows] == [0, 2, 4]  # step 0: the teacher's weights in one step
    best = min(rows, key=lambda r: float(r["val_mse_to_teacher"]))
    assert student["best"]["step"] == int(best["step"])
    state = load_training_state(tmp_path / "ckpt" / train_student.STATE_FILE)
    tensors, _ = load_model_file(model)
    for key in tensors:  # the file holds the best evaluation's EMA weights
        assert torch.equal(tensors[key], state["best"]["weights"][key]), key


def test_stage_resumes_exactly(project, tmp_path, monkeypatch, capsys):
    straight = load_model_file(_run(project, tmp_path / "a", None, steps=6, eval_every=2))[0]
    calls = {"n": 0}
    original = distill.sinsr_losses

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_student, "sinsr_losses", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(project, tmp_path / "b", tmp_path / "b" / "ckpt", steps=6, eval_every=2)
    assert not (tmp_path / "b" / "student.safetensors").exists()
    monkeypatch.setattr(train_student, "sinsr_losses", original)
    resumed = load_model_file(_run(project, tmp_path / "b", tmp_path / "b" / "ckpt", steps=6, eval_every=2))[0]
    assert "resuming from" in capsys.readouterr().err
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_diverging_student_writes_no_model_with_one_line(project, tmp_path, capsys):
    from medsr import cli
    overlay = tmp_path / "diverge.yaml"
    overlay.write_text(json.dumps({"train_student": {"steps": 20, "learning_rate": 1e8, "grad_clip": 0.0,
                                                     "batch_size": 4, "crop": 16, "val_images": 4, "eval_every": 1,
                                                     "teacher_steps": 2}}))
    model = tmp_path / "student.safetensors"
    model.write_bytes(b"an earlier model")
    code = cli.main(["train-student", "--params", str(ROOT / "params.yaml"),
                     "--params", str(ROOT / "configs/smoke.yaml"),
                     "--params", str(overlay), "--teacher", str(project["teacher"]), "--hr", str(project["hr"]),
                     "--lr", str(project["lr"]), "--model", str(model), "--log", str(tmp_path / "log.csv"),
                     "--checkpoints", str(tmp_path / "ckpt"), "--device", "cpu"])
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and re.search(r"train-student: .*training diverged; no model written", lines[0]), lines
    assert model.read_bytes() == b"an earlier model"
    state = load_training_state(tmp_path / "ckpt" / train_student.STATE_FILE)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_a_student_is_not_a_teacher_and_generate_tells_them_apart(project, tmp_path):
    from medsr.stages.generate import check_student
    model = _run(project, tmp_path, None, steps=2, eval_every=2)
    with pytest.raises(MedsrError, match="is itself a distilled student"):
        train_student.load_teacher(model, torch.device("cpu"))
    with pytest.raises(MedsrError, match="a distilled one-step student"):
        check_student("resshift", read_metadata(model), model)
    with pytest.raises(MedsrError, match="not a distilled student"):
        check_student("student", read_metadata(project["teacher"]), project["teacher"])
    check_student("student", read_metadata(model), model)


# --- parameters -------------------------------------------------------------------------------------

def _raw() -> dict:
    import yaml
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("change, message", [
    ({"train_student": {"teacher_steps": 99}}, "train_student.teacher_steps: 99 exceeds"),
    ({"train_student": {"val_images": 1}}, "train_student.val_images"),
    ({"train_student": {"crop": 128}}, "train_student.crop"),
    ({"train_student": {"gt_weight": -1.0}}, "train_student.gt_weight"),
    ({"train_student": {"stepz": 3}}, "train_student.stepz"),
    ({"generate": {"sampler": "student"}, "diffusion": {"process": "ddpm"}}, "generate.sampler: student"),
])
def test_bad_student_params_give_one_line(change, message):
    with pytest.raises(MedsrError) as err:
        params_from_dict(deep_merge(_raw(), change), "params.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_student_sampler_with_the_resshift_process_is_valid():
    params = params_from_dict(deep_merge(_raw(), {"generate": {"sampler": "student"}}), "params.yaml")
    assert params.generate.sampler == "student" and math.isfinite(params.train_student.learning_rate)


# --- the sampling benchmark's choice rule and the student's acceptance ---------------------------------

def _benchmark():
    import importlib.util
    spec = importlib.util.spec_from_file_location("sampling_benchmark", ROOT / "benchmarks" / "sampling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(row, sampler, steps, fnr, high, psnr, speedup=1.0, ssim=0.9):
    return {"row": row, "sampler": sampler, "steps": steps, "batch": 16, "fnr": fnr, "fnr_high": high,
            "fnr_op": fnr, "fnr_op_high": high, "psnr": psnr, "ssim": ssim, "speedup": speedup}


def test_benchmark_chooses_by_fnr_first_then_psnr():
    bench = _benchmark()
    rows = [_row("resshift", "resshift", 4, 0.25, 0.44, 28.2), _row("resshift", "resshift", 1, 1.0, 1.0, 29.1),
            _row("student", "student", 1, 0.31, 0.5, 28.6)]
    choice = bench.choose(rows)
    assert choice["lowest_fnr_op"] == "resshift K=4 batch 16"
    assert choice["candidates"] == ["resshift K=4 batch 16", "student K=1 batch 16"]
    assert choice["chosen"] == "student K=1 batch 16"  # within K=4's interval, higher PSNR; K=1's blur is out


def test_student_acceptance_needs_speed_fnr_and_psnr():
    bench = _benchmark()
    seed, k4 = _row("seed-style", "ancestral", 500, None, None, 24.0), _row("resshift", "resshift", 4, 0.25, 0.44, 28.2)
    good = _row("student", "student", 1, 0.4, 0.6, 28.0, speedup=600)
    assert bench.student_acceptance([seed, k4, good])["holds"]
    for change in ({"speedup": 400}, {"fnr": 0.5}, {"fnr_op": 0.5}, {"psnr": 27.8}):
        result = bench.student_acceptance([seed, k4, {**good, **change}])
        assert not result["holds"] and sum(not v for v in result["checks"].values()) == 1
    assert bench.student_acceptance([seed, good]) is None  # no K=4 row in the run: no verdict


def test_generate_samples_a_student_in_one_call_reproducibly(project, tmp_path):
    from medsr.stages import generate
    from medsr.core import io
    model = _run(project, tmp_path, None, steps=2, eval_every=2)
    params = dataclasses.replace(SMOKE.generate, sampler="student", steps=4)

    def make(out):
        generate.run(params, SMOKE.evaluate, model=model, lr=project["lr"], guide=tmp_path / "unused",
                     bicubic=tmp_path / "unused", guidance="null", seed=0, shard=0, out=out)
        return {r.id: np.load((out / r.path).with_suffix(".npy")) for r in io.read_manifest(out, ("val",))}

    first, second = make(tmp_path / "a"), make(tmp_path / "b")
    metadata = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert metadata["sampler"] == "student" and metadata["steps"] == 1 and metadata["process"] == "resshift"
    assert first.keys() == second.keys() and len(first) > 0
    for key in first:
        assert np.array_equal(first[key], second[key]) and 0 <= first[key].min() and first[key].max() <= 1
