"""train-sr: null-class dropout, EMA, a loss that falls, determinism, exact resume, and the files it writes."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medsr.stages import degrade, train_sr
from medsr.core import training
from medsr.core.model_files import load_model_file, read_metadata
from medsr.core.config import load_params
from medsr.core.parameters import NULL_CLASS, DegradeParams
from medsr.stages.degrade import degrade_image
from medsr.data.pixels import bicubic_upsample
from medsr.diffusion.ema import EMA
from medsr.diffusion.schedule import encode_target, process_schedule
from image_pairs import write_pairs
from medsr.core.errors import MedsrError
from medsr.core.io import read_csv

ROOT = Path(__file__).resolve().parents[1]
SMOKE = load_params([ROOT / "params.yaml", ROOT / "configs" / "smoke.yaml"])
CPU = training.Distributed(0, 1, torch.device("cpu"))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _params(process: str = "ddpm", **train):
    """Tiny sr_model / diffusion / train_sr sections (smoke profile, a few changes)."""
    model = dataclasses.replace(SMOKE.sr_model, base_channels=8, channel_mult=(1, 2), attention_levels=(1,),
                                norm_groups=4, attention_heads=2, dropout=0.1)
    diffusion = dataclasses.replace(SMOKE.diffusion, timesteps=50, process=process)
    values = dict(steps=6, batch_size=4, crop=16, learning_rate=1e-3, checkpoint_every=3, log_every=2, seed=0)
    values.update(train)
    return model, diffusion, dataclasses.replace(SMOKE.train_sr, **values)


def _hr_images(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth blobs on a dim background; unhealthy images get a bright spot."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images, labels = [], []
    for i in range(n):
        cy, cx, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.25, 0.4)
        image = 0.1 + 0.5 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r ** 2))
        if i % 2:
            image += 0.35 * np.exp(-((y - cy + 0.1) ** 2 + (x - cx) ** 2) / (2 * 0.05 ** 2))
        images.append(np.clip(image, 0, 1))
        labels.append(i % 2)
    return torch.tensor(np.stack(images), dtype=torch.float32)[:, None], torch.tensor(labels)


def _pairs(n: int = 8, size: int = 32, seed: int = 0) -> training.PairedImages:
    hr, labels = _hr_images(n, size, seed)
    lr = degrade_image(hr, 2, 0.5, 0.0)
    return training.PairedImages([f"img{i:02d}" for i in range(n)], hr, lr, bicubic_upsample(lr, 2), labels, 2)


@pytest.fixture(scope="module")
def data() -> training.PairedImages:
    return _pairs()


def _train(data, checkpoints: Path | None = None, log: Path | None = None, process: str = "ddpm", **train):
    model_params, diffusion_params, train_params = _params(process, **train)
    return train_sr.train(model_params, diffusion_params, train_params, data, ctx=CPU, log=log,
                          checkpoints=checkpoints)


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _count_draws(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = train_sr.draw_batch

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_sr, "draw_batch", counting)
    return calls


# --- classifier-free guidance: null-class dropout --------------------------------------------------

def _two_tone_pairs(n: int = 6, size: int = 16) -> training.PairedImages:
    """Healthy images are all 0.25, unhealthy all 0.75: a crop tells its label."""
    labels = torch.arange(n) % 2
    hr = (0.25 + 0.5 * labels.float())[:, None, None, None].expand(n, 1, size, size).contiguous()
    lr = hr[..., ::2, ::2].contiguous()
    return training.PairedImages([f"i{i}" for i in range(n)], hr, lr, bicubic_upsample(lr, 2), labels, 2)


@pytest.mark.parametrize("prob", [0.15, 0.2, 0.5])
def test_null_class_dropout_rate(prob):
    data = _two_tone_pairs()
    _, _, params = _params(null_class_prob=prob, batch_size=2000, crop=8)
    generator = torch.Generator().manual_seed(0)
    batch = train_sr.draw_batch(data, params, 50, generator)
    n = len(batch["labels"])
    nulls = (batch["labels"] == NULL_CLASS).sum().item()
    assert abs(nulls / n - prob) < 4 * math.sqrt(prob * (1 - prob) / n)  # binomial, 4 sigma
    kept = batch["labels"] != NULL_CLASS
    crop_label = (batch["hr"].mean(dim=(1, 2, 3)) > 0.5).long()
    assert torch.equal(batch["labels"][kept], crop_label[kept])  # the others keep their own crop's label
    assert set(batch["labels"][kept].tolist()) == {0, 1}
    assert batch["t"].min() >= 0 and batch["t"].max() < 50 and batch["noise"].shape == batch["hr"].shape


def test_no_relabelling_when_the_null_class_prob_is_zero():
    data = _two_tone_pairs()
    _, _, params = _params(null_class_prob=0.0, batch_size=2000, crop=8)
    batch = train_sr.draw_batch(data, params, 50, torch.Generator().manual_seed(1))
    assert (batch["labels"] != NULL_CLASS).all()
    assert torch.equal(batch["labels"], (batch["hr"].mean(dim=(1, 2, 3)) > 0.5).long())


# --- EMA -------------------------------------------------------------------------------------

def test_ema_update_with_warm_up_and_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    decay = 0.5
    ema = EMA(model, decay)
    for k in range(12):
        expected_decay = min(decay, (1 + k) / (10 + k))  # warm-up, then the set decay (k >= 8 here)
        assert ema.current_decay() == pytest.approx(expected_decay)
        before = [p.clone() for p in ema.shadow.parameters()]
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(5, 3))  # moves the BatchNorm running statistics
        ema.update(model)
        for old, shadow, param in zip(before, ema.shadow.parameters(), model.parameters()):
            torch.testing.assert_close(shadow, expected_decay * old + (1 - expected_decay) * param)
            assert not torch.equal(shadow, param)
        for shadow, buffer in zip(ema.shadow.buffers(), model.buffers()):
            assert torch.equal(shadow, buffer)  # buffers are copied, not averaged
    assert ema.updates == 12
    assert not ema.shadow.training and not any(p.requires_grad for p in ema.shadow.parameters())


# --- training -----------------------------------------------------------------------------------

def test_loss_falls(data, tmp_path):
    _, _, loss = _train(data, log=tmp_path / "log.csv", steps=60, log_every=10, checkpoint_every=60)
    rows = read_csv(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50, 60]
    losses = [float(r["loss"]) for r in rows]
    assert loss == pytest.approx(losses[-1])
    assert losses[-1] < 0.6 * losses[0], losses


def test_resshift_loss_is_x0_prediction_and_falls(data, tmp_path):
    """ResShift trains the network to predict x_0 (not eps): its loss falls, and at a checkpointed model the loss
    function is the MSE to x_0 of the network's output at x_t = x_0 + eta_t (y_0 - x_0) + kappa sqrt(eta_t) eps."""
    _, _, loss = _train(data, log=tmp_path / "log.csv", steps=60, log_every=10, checkpoint_every=60,
                        process="resshift")
    losses = [float(r["loss"]) for r in read_csv(tmp_path / "log.csv")]
    assert losses[-1] < 0.6 * losses[0], losses
    _, diffusion_params, train_params = _params("resshift", batch_size=4, crop=16)
    schedule = process_schedule(diffusion_params)
    batch = train_sr.draw_batch(data, train_params, schedule.timesteps, torch.Generator().manual_seed(0))
    seen = {}

    class Echo(nn.Module):  # returns a fixed output and keeps its input
        def forward(self, x_t, t, *, class_labels, lr_upsampled):
            seen["x_t"], seen["t"] = x_t, t
            return torch.zeros_like(x_t)

    value = train_sr.diffusion_loss(Echo(), schedule, diffusion_params.target, batch)
    x0 = encode_target(batch["hr"], batch["bicubic"], diffusion_params.target)
    y0 = encode_target(batch["bicubic"], batch["bicubic"], diffusion_params.target)
    eta = schedule.etas[batch["t"]].float()[:, None, None, None]
    kappa = diffusion_params.resshift.kappa
    torch.testing.assert_close(seen["x_t"], x0 + eta * (y0 - x0) + kappa * eta.sqrt() * batch["noise"])
    torch.testing.assert_close(value, (x0 ** 2).mean())  # || 0 - x_0 ||^2
    assert int(batch["t"].max()) < diffusion_params.resshift.timesteps


def test_same_seed_gives_identical_weights(data):
    model_a, ema_a, loss_a = _train(data, steps=4)
    model_b, ema_b, loss_b = _train(data, steps=4)
    _assert_same_weights(model_a, model_b)
    _assert_same_weights(ema_a.shadow, ema_b.shadow)
    assert loss_a == loss_b
    model_c, _, _ = _train(data, steps=4, seed=1)
    assert not torch.equal(model_a.conv_in.weight, model_c.conv_in.weight)


class Preempted(Exception):
    """Stands for the job being killed."""


@pytest.mark.parametrize("interrupt, steps, log_every, process",
                         [(3, 6, 2, "ddpm"), (4, 7, 1, "ddpm"), (2, 7, 3, "ddpm"), (3, 6, 2, "resshift")])
def test_resume_after_a_kill_continues_exactly(data, tmp_path, monkeypatch, interrupt, steps, log_every, process):
    """Killed after the checkpoint at `interrupt` and rerun: the same log rows (next loss included) and weights as
    the uninterrupted run. Dropout is on, so its random draws matter too; log_every need not divide the interval.
    The ResShift process trains through the same loop and resumes the same way."""
    settings = dict(steps=steps, log_every=log_every, checkpoint_every=interrupt, process=process)
    whole, whole_ema, whole_loss = _train(data, log=tmp_path / "whole.csv", **settings)
    draws = _count_draws(monkeypatch)
    original = train_sr.draw_batch

    def killed_after_checkpoint(*args, **kwargs):
        if len(draws) == interrupt + 1:
            raise Preempted
        return original(*args, **kwargs)

    monkeypatch.setattr(train_sr, "draw_batch", killed_after_checkpoint)
    with pytest.raises(Preempted):
        _train(data, checkpoints=tmp_path / "ckpt", log=tmp_path / "resumed.csv", **settings)
    monkeypatch.setattr(train_sr, "draw_batch", original)
    draws = _count_draws(monkeypatch)
    resumed, resumed_ema, resumed_loss = _train(data, checkpoints=tmp_path / "ckpt", log=tmp_path / "resumed.csv",
                                                **settings)
    assert len(draws) == steps - interrupt  # it resumed: only the remaining steps ran
    assert read_csv(tmp_path / "resumed.csv") == read_csv(tmp_path / "whole.csv")
    assert resumed_loss == whole_loss
    _assert_same_weights(resumed, whole)
    _assert_same_weights(resumed_ema.shadow, whole_ema.shadow)
    assert resumed_ema.updates == whole_ema.updates == steps


def test_more_steps_continue_a_finished_run_exactly(data, tmp_path, monkeypatch):
    """steps=3, then steps=6 on the same checkpoints: the weights and the log of a 6-step run, plus the first
    run's last (partial-window) row at step 3."""
    whole, whole_ema, _ = _train(data, log=tmp_path / "whole.csv", steps=6, log_every=2)
    _train(data, checkpoints=tmp_path / "ckpt", log=tmp_path / "more.csv", steps=3, log_every=2, checkpoint_every=3)
    draws = _count_draws(monkeypatch)
    more, more_ema, _ = _train(data, checkpoints=tmp_path / "ckpt", log=tmp_path / "more.csv", steps=6, log_every=2)
    assert len(draws) == 3
    _assert_same_weights(more, whole)
    _assert_same_weights(more_ema.shadow, whole_ema.shadow)
    rows = read_csv(tmp_path / "more.csv")
    assert [r["step"] for r in rows] == ["2", "3", "4", "6"]
    assert [r for r in rows if r["step"] != "3"] == read_csv(tmp_path / "whole.csv")


@pytest.mark.parametrize("change", [{"learning_rate": 5e-4}, {"null_class_prob": 0.3}, {"data": True},
                                    {"fewer_steps": True}])
def test_checkpoint_under_other_parameters_is_not_resumed(data, tmp_path, monkeypatch, change):
    _train(data, checkpoints=tmp_path / "ckpt", steps=4, checkpoint_every=4)
    draws = _count_draws(monkeypatch)
    other_data = _pairs(n=6) if "data" in change else data
    overrides = {k: v for k, v in change.items() if k not in ("data", "fewer_steps")}
    steps = 3 if "fewer_steps" in change else 6  # a checkpoint past the requested steps does not resume either
    model, _, _ = _train(other_data, checkpoints=tmp_path / "ckpt", steps=steps, **overrides)
    assert len(draws) == steps  # started anew
    fresh, _, _ = _train(other_data, steps=steps, **overrides)
    _assert_same_weights(model, fresh)


# --- run(): the files the stage writes ------------------------------------------------------------

def _write_sets(root: Path, n: int = 6, size: int = 32) -> tuple[Path, Path]:
    hr_images, labels = _hr_images(n, size, seed=1)
    pairs = enumerate(zip(hr_images, labels.tolist()))
    return write_pairs(root, [(split, i, image, label) for i, (image, label) in pairs for split in ("train", "test")])


def test_run_writes_ema_weights_as_safetensors_with_metadata(tmp_path):
    hr, lr = _write_sets(tmp_path)
    model_params, diffusion_params, train_params = _params(steps=5, checkpoint_every=5, log_every=1)
    model_file = tmp_path / "models" / "sr.safetensors"
    train_sr.run(model_params, diffusion_params, train_params, hr=hr, lr=lr, model=model_file,
                 log=tmp_path / "log.csv", checkpoints=tmp_path / "ckpt", device=torch.device("cpu"))
    raw = model_file.read_bytes()  # safetensors: 8-byte header length, then a JSON header
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    assert "__metadata__" in header and "conv_in.weight" in header

    metadata = read_metadata(model_file)
    assert metadata["kind"] == "sr_diffusion" and metadata["weights"] == "ema"
    assert metadata["sr_model"] == json.loads(json.dumps(dataclasses.asdict(model_params)))
    assert metadata["diffusion"] == dataclasses.asdict(diffusion_params)
    assert metadata["train_sr"] == dataclasses.asdict(train_params)
    assert metadata["scale"] == 2 and metadata["hr_size"] == [32, 32] and metadata["lr_size"] == [16, 16]
    assert metadata["training_steps"] == 5
    rows = read_csv(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert metadata["final_loss"] == pytest.approx(float(rows[-1]["loss"]))

    # the resumable checkpoint is plain data: torch.load(weights_only=True) reads it
    state = torch.load(tmp_path / "ckpt" / train_sr.STATE_FILE, weights_only=True)
    assert state["step"] == 5 and state["ema"]["updates"] == 5
    assert {"config", "model", "ema", "optimizer", "generator", "log"} <= set(state)

    tensors, _ = load_model_file(model_file)
    shadow, raw_weights = state["ema"]["shadow"], state["model"]
    assert tensors.keys() == shadow.keys() == raw_weights.keys()
    for key in tensors:
        assert torch.equal(tensors[key], shadow[key]), key  # the EMA weights ...
    assert any(not torch.equal(tensors[k], raw_weights[k]) for k in tensors)  # ... not the raw ones
    model = train_sr.build_model(model_params)
    model.load_state_dict(tensors, strict=True)


# --- the resume key covers the data's content ------------------------------------------------------

def test_content_digest_changes_with_any_pixel_id_or_label(data):
    digest = data.content_sha256()
    assert digest == _pairs().content_sha256()  # the same data loaded again
    changed_hr, changed_lr = data.hr.clone(), data.lr.clone()
    changed_hr[3, 0, 5, 7] += 1 / 255
    changed_lr[5, 0, 2, 1] -= 1 / 255
    labels = data.labels.clone()
    labels[0] = 1 - labels[0]
    variants = [dataclasses.replace(data, hr=changed_hr), dataclasses.replace(data, lr=changed_lr),
                dataclasses.replace(data, labels=labels), dataclasses.replace(data, ids=[f"x{i}" for i in data.ids])]
    digests = {v.content_sha256() for v in variants}
    assert digest not in digests and len(digests) == len(variants)


def test_re_degraded_lr_images_start_training_anew(tmp_path, monkeypatch, capsys):
    """A finished run, then degrade again with another noise_std: train-sr must not 'resume' the old weights."""
    hr, lr = _write_sets(tmp_path)
    model_params, diffusion_params, train_params = _params(steps=4, checkpoint_every=2, log_every=1)
    model_file = tmp_path / "sr.safetensors"

    def run_stage():
        train_sr.run(model_params, diffusion_params, train_params, hr=hr, lr=lr, model=model_file,
                     log=tmp_path / "log.csv", checkpoints=tmp_path / "ckpt", device=torch.device("cpu"))
        return load_model_file(model_file)[0]

    first = run_stage()
    old_lr = training.load_pairs(hr, lr).lr
    degrade.run(DegradeParams(scale=2, blur_sigma=0.5, noise_std=0.05, seed=0), hr, lr, tmp_path / "bicubic")
    assert not torch.equal(training.load_pairs(hr, lr).lr, old_lr)  # the LR images did change
    capsys.readouterr()
    draws = _count_draws(monkeypatch)
    second = run_stage()
    err = capsys.readouterr().err
    assert "for other training data" in err and "starting anew" in err and "resuming" not in err
    assert len(draws) == train_params.steps  # every step ran again
    assert any(not torch.equal(first[k], second[k]) for k in first)
    state = torch.load(tmp_path / "ckpt" / train_sr.STATE_FILE, weights_only=True)
    assert state["config"]["data"]["sha256"] == training.load_pairs(hr, lr).content_sha256()


# --- a diverging run writes no model ------------------------------------------------------------

def test_diverging_train_sr_writes_no_model_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    from medsr import cli
    from medsr.core.model_files import load_training_state

    hr, lr = _write_sets(tmp_path)
    overlay = tmp_path / "diverge.yaml"
    overlay.write_text(json.dumps({"train_sr": {"steps": 12, "learning_rate": 1e6, "checkpoint_every": 1,
                                                "log_every": 1, "batch_size": 4, "crop": 16}}))
    model_file, ckpt = tmp_path / "models" / "sr.safetensors", tmp_path / "ckpt"
    model_file.parent.mkdir()
    model_file.write_bytes(b"an earlier model")  # a model already at that path is neither replaced nor deleted
    code = cli.main(
        [
            "train-sr",
            "--params",
            str(ROOT / "params.yaml"),
            "--params",
            str(ROOT / "configs" / "smoke.yaml"),
            "--params",
            str(overlay),
            "--hr",
            str(hr),
            "--lr",
            str(lr),
            "--model",
            str(model_file),
            "--log",
            str(tmp_path / "log.csv"),
            "--checkpoints",
            str(ckpt),
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    match = re.search(r"train-sr: loss is (nan|inf|-inf) at step (\d+) \(train_sr.learning_rate 1e\+06\): "
                      r"training diverged; no model written; last good checkpoint \(step (\d+)\) kept in (\S+)$",
                      lines[0])
    assert match, lines[0]
    diverged_at, kept_step = int(match[2]), int(match[3])
    assert 1 < diverged_at <= 12 and kept_step == diverged_at - 1 and match[4] == str(ckpt)
    assert model_file.read_bytes() == b"an earlier model"
    state = load_training_state(ckpt / train_sr.STATE_FILE)
    assert state["step"] == kept_step
    tensors = [*state["model"].values(), *state["ema"]["shadow"].values()]
    assert tensors and all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())
    assert all(math.isfinite(row["loss"]) for row in state["log"])


def test_no_checkpoint_of_non_finite_weights(data, tmp_path, monkeypatch):
    """A finite loss whose update still leaves non-finite weights is caught before the checkpoint is written."""
    original, calls = torch.optim.Adam.step, []

    def poisoned_step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the update of step 4 (resumed at 2), just before the checkpoint at 4
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return result

    _train(data, checkpoints=tmp_path / "ckpt", steps=2, checkpoint_every=2)  # a good checkpoint at step 2
    before = (tmp_path / "ckpt" / train_sr.STATE_FILE).read_bytes()
    monkeypatch.setattr(torch.optim.Adam, "step", poisoned_step)
    with pytest.raises(MedsrError, match=r"non-finite weights at step 4 .*; last good checkpoint \(step 2\) kept"):
        _train(data, checkpoints=tmp_path / "ckpt", steps=6, checkpoint_every=2)
    assert (tmp_path / "ckpt" / train_sr.STATE_FILE).read_bytes() == before


# --- a file in the checkpoints folder that is not a checkpoint --------------------------------------

class _NotAState:
    def __init__(self):
        self.payload = "code a weights_only=False load would run"


@pytest.mark.parametrize("content", ["pickled object", "random bytes", "truncated"])
def test_foreign_checkpoint_is_refused_without_unsafe_advice(data, tmp_path, content):
    path = tmp_path / "ckpt" / train_sr.STATE_FILE
    if content == "truncated":
        _train(data, checkpoints=tmp_path / "ckpt", steps=2, checkpoint_every=2)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.parent.mkdir()
        if content == "pickled object":
            torch.save({"step": 1, "config": _NotAState()}, path)
        else:
            path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MedsrError) as err:
        _train(data, checkpoints=tmp_path / "ckpt", steps=2)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "delete it or the checkpoints folder to start training anew" in message
    assert "weights_only=False" not in message and "will likely succeed" not in message
    if content == "pickled object":
        assert "not a medsr training checkpoint (unreadable with weights_only=True)" in message


def test_diverging_train_regression_writes_no_model(tmp_path):
    from medsr.stages import train_regression

    hr, lr = _write_sets(tmp_path)
    params = dataclasses.replace(SMOKE.train_regression, steps=10, learning_rate=1e6, batch_size=4, crop=16)
    model_file = tmp_path / "regression.safetensors"
    model_file.write_bytes(b"an earlier model")
    with pytest.raises(MedsrError) as err:
        train_regression.run(_params()[0], params, hr=hr, lr=lr, model=model_file, log=tmp_path / "log.csv",
                             device=torch.device("cpu"))
    assert re.fullmatch(r"train-regression: loss is (nan|inf) at step \d+ \(train_regression.learning_rate 1e\+06\): "
                        r"training diverged; no model written", str(err.value)), str(err.value)
    assert model_file.read_bytes() == b"an earlier model"


def test_resume_checkpoint_holds_the_whole_state(data, tmp_path):
    """Everything a resume needs travels in the checkpoint: weights, EMA, optimizer, loss scaler, data-order
    generator, the global CPU (and, on CUDA, every device's) RNG, the step; the global RNG comes back on resume."""
    from medsr.core.model_files import load_training_state

    _train(data, checkpoints=tmp_path / "ckpt", steps=2, checkpoint_every=2)
    state = load_training_state(tmp_path / "ckpt" / train_sr.STATE_FILE)
    for key in ("model", "ema", "optimizer", "scaler", "generator", "cpu_rng", "cuda_rng", "step", "window"):
        assert key in state, key
    assert state["step"] == 2 and state["ema"]["updates"] == 2
    torch.manual_seed(12345)
    train_sr.restore_rng(state)
    assert torch.equal(torch.get_rng_state(), state["cpu_rng"])
