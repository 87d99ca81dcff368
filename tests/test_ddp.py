"""train-sr under torchrun: two CPU processes (gloo) run the single-process code path with DDP.

One torchrun launch runs `medsr train-sr` (cli.main, what `python -m medsr.cli train-sr` runs) with spies
that record which rank writes which file, each rank's share of every batch and each rank's final weights;
then, in the same process group, a run stopped at a checkpoint and resumed (dropout on) and an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from medsr.stages import degrade, train_sr
from medsr.core import training
from medsr.core.model_files import load_model_file, read_metadata
from medsr.core.config import load_params
from medsr.stages import download
from medsr.diffusion.schedule import process_schedule
from medsr.core.io import read_csv
from medsr.core.randomness import derived_seed

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = {  # on top of params.yaml + configs/smoke.yaml: a few steps of a tiny model on a tiny set
    "data": {"synthetic": {"train_per_class": 4, "test_per_class": 1}},
    "sr_model": {"dropout": 0.0},  # so that one process and two draw the same network
    "train_sr": {"steps": 4, "batch_size": 4, "crop": 16, "checkpoint_every": 2, "log_every": 1,
                 "learning_rate": 0.001},
}
RESUME = {"dropout": 0.2, "steps": 5, "interrupt": 2}  # the resume check: dropout on, stopped after step 2 of 5

HELPER = textwrap.dedent('''
    """Run by torchrun: `medsr train-sr` with spies, then a run stopped at a checkpoint and resumed, and a whole one."""
    import dataclasses, json, os, sys
    from pathlib import Path

    import torch

    from medsr import cli
    from medsr.stages import train_sr
    from medsr.core import training
    from medsr.core.config import load_params

    root = Path(sys.argv[1])
    config = json.loads((root / "helper.json").read_text())
    rank = int(os.environ["RANK"])
    writes, batches, result = [], [], {}

    def spy_writes(module, name):
        original = getattr(module, name)

        def spy(path, *args, **kwargs):
            writes.append([name, str(path)])
            return original(path, *args, **kwargs)
        setattr(module, name, spy)

    for module, name in ((train_sr, "save_model"), (train_sr, "save_training_state"), (training, "write_log")):
        spy_writes(module, name)
    loss = train_sr.diffusion_loss

    def spy_loss(model, schedule, target, batch):
        batches.append({k: v.detach().clone().contiguous() for k, v in batch.items()})
        return loss(model, schedule, target, batch)
    train_sr.diffusion_loss = spy_loss
    train = train_sr.train

    def spy_train(*args, **kwargs):
        model, ema, final_loss = train(*args, **kwargs)
        result.update(model=model.state_dict(), ema=ema.shadow.state_dict(), loss=final_loss)
        return model, ema, final_loss
    train_sr.train = spy_train
    first_grads = []  # the gradients (DDP-averaged) of the first optimizer step of the CLI run

    class RecordingAdam(torch.optim.Adam):
        def step(self, *args, **kwargs):
            if not first_grads:
                first_grads.extend(p.grad.detach().clone() for p in self.param_groups[0]["params"])
            return super().step(*args, **kwargs)
    torch.optim.Adam = RecordingAdam

    code = cli.main(config["cli_args"])
    saved = {"code": code, "writes": list(writes), "batches": list(batches), "first_grads": list(first_grads),
             **result}

    resume = config["resume"]
    params = load_params(config["param_files"])
    model_params = dataclasses.replace(params.sr_model, dropout=resume["dropout"])
    ctx = training.init_distributed(torch.device("cpu"))
    data = training.load_pairs(config["hr"], config["lr"], "train")

    def run(steps, checkpoints):
        train_params = dataclasses.replace(params.train_sr, steps=steps, checkpoint_every=resume["interrupt"])
        model, ema, _ = train(model_params, params.diffusion, train_params, data, ctx=ctx, log=None,
                              checkpoints=checkpoints)
        training.barrier(ctx)  # the checkpoint is on disk before any rank looks for it
        return {k: v.clone() for k, v in model.state_dict().items()}

    saved["whole"] = run(resume["steps"], None)
    run(resume["interrupt"], root / "resume_ckpt")
    saved["resumed"] = run(resume["steps"], root / "resume_ckpt")
    torch.save(saved, root / f"rank{rank}.pt")
''')


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ddp")
    (root / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    param_files = [str(ROOT / "params.yaml"), str(ROOT / "configs" / "smoke.yaml"), str(root / "overlay.yaml")]
    params = load_params(param_files)
    download.run(params.data, root / "hr")
    degrade.run(params.degrade, root / "hr", root / "lr", root / "bicubic")
    paths = {"model": root / "out" / "sr.safetensors", "log": root / "out" / "log.csv",
             "checkpoints": root / "out" / "ckpt"}
    cli_args = ["train-sr", *(a for f in param_files for a in ("--params", f)), "--hr", str(root / "hr"),
                "--lr", str(root / "lr"), "--device", "cpu",
                *(a for name, path in paths.items() for a in (f"--{name}", str(path)))]
    (root / "helper.json").write_text(json.dumps({"cli_args": cli_args, "param_files": param_files,
                                                  "hr": str(root / "hr"), "lr": str(root / "lr"),
                                                  "resume": RESUME}))
    (root / "helper.py").write_text(HELPER)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               str(root / "helper.py"), str(root)]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    ranks = [torch.load(root / f"rank{r}.pt", weights_only=True) for r in range(2)]
    data = training.load_pairs(root / "hr", root / "lr", "train")
    return {"root": root, "params": params, "ranks": ranks, "data": data, "stderr": result.stderr, **paths}


@pytest.fixture(scope="module")
def single(ddp_run, tmp_path_factory) -> dict:
    """The same training in one process: the same global batch size and seed."""
    params, log = ddp_run["params"], tmp_path_factory.mktemp("single") / "log.csv"
    threads, adam, first_grads = torch.get_num_threads(), torch.optim.Adam, []

    class RecordingAdam(adam):
        def step(self, *args, **kwargs):
            if not first_grads:
                first_grads.extend(p.grad.detach().clone() for p in self.param_groups[0]["params"])
            return super().step(*args, **kwargs)

    torch.set_num_threads(1)
    torch.optim.Adam = RecordingAdam
    try:
        model, ema, loss = train_sr.train(params.sr_model, params.diffusion, params.train_sr, ddp_run["data"],
                                          ctx=training.Distributed(0, 1, torch.device("cpu")), log=log,
                                          checkpoints=None)
    finally:
        torch.set_num_threads(threads)
        torch.optim.Adam = adam
    names = [name for name, _ in model.named_parameters()]
    return {"model": model.state_dict(), "ema": ema.shadow.state_dict(), "loss": loss, "log": log,
            "first_grads": dict(zip(names, first_grads, strict=True)), "names": names}


def test_both_ranks_ran_the_cli_stage(ddp_run):
    assert [r["code"] for r in ddp_run["ranks"]] == [0, 0]
    assert "2 process(es) x batch 2" in ddp_run["stderr"]


def test_replicas_hold_equal_weights(ddp_run):
    rank0, rank1 = ddp_run["ranks"]
    for what in ("model", "ema", "whole", "resumed"):
        assert rank0[what].keys() == rank1[what].keys()
        for key in rank0[what]:
            assert torch.equal(rank0[what][key], rank1[what][key]), (what, key)
    assert rank0["loss"] == rank1["loss"]


def test_only_rank_0_writes_files(ddp_run):
    rank0, rank1 = ddp_run["ranks"]
    assert rank1["writes"] == []
    written = {name for name, _ in rank0["writes"]}
    assert written == {"save_model", "save_training_state", "write_log"}
    assert ["save_model", str(ddp_run["model"])] in rank0["writes"]
    assert read_metadata(ddp_run["model"])["weights"] == "ema"
    assert (ddp_run["checkpoints"] / train_sr.STATE_FILE).is_file()
    assert len(read_csv(ddp_run["log"])) == ddp_run["params"].train_sr.steps


def test_each_rank_trains_on_its_half_of_the_global_batch(ddp_run):
    params = ddp_run["params"]
    generator = torch.Generator().manual_seed(params.train_sr.seed)
    rank0, rank1 = ddp_run["ranks"]
    assert len(rank0["batches"]) == len(rank1["batches"]) == params.train_sr.steps
    for step in range(params.train_sr.steps):
        expected = train_sr.draw_batch(ddp_run["data"], params.train_sr,
                                           process_schedule(params.diffusion).timesteps, generator)
        for key, value in expected.items():
            half0, half1 = rank0["batches"][step][key], rank1["batches"][step][key]
            assert len(half0) == len(half1) == params.train_sr.batch_size // 2
            assert torch.equal(torch.cat([half0, half1]), value), (step, key)


# Two processes and one compute the same global-batch gradient in different float32 orders (each rank reduces its
# half; DDP then averages the halves), so the results differ by rounding, and by how much depends on the CPU's
# kernels (AVX-512 vs AVX2, Intel vs AMD). The comparison therefore holds only where rounding provably cannot break it:
#
# * The gradients of the FIRST step: both runs start from identical weights and see the identical global batch, so
#   their gradients are the same function of the same inputs evaluated in two summation orders. Each gradient element
#   is a float32 sum of at most N = batch * crop**2 products (per-pixel terms of a convolution's weight gradient), and
#   the backward pass re-rounds along at most DEPTH layers, so |difference| <= DEPTH * N * u * (term magnitude), u =
#   2**-24 (the worst-case bound gamma_N of a recursive sum, accumulated over the layers). The magnitude of the terms
#   is taken as the largest gradient element of the same tensor: `_tolerance` relative to max|g| of each tensor.
#   (Measured on one machine: <= 3e-6; a real fault -- summed instead of averaged gradients, a rank on the wrong data,
#   no synchronisation -- is off by O(1).)
# * Later steps' weights cannot be compared element by element: Adam divides each gradient by its own magnitude, so a
#   component whose gradient is within rounding of zero (e.g. the attention key bias, whose true gradient is exactly
#   zero) moves by +-lr on a coin flip of rounding -- as far as training moves the other weights, so no tolerance
#   short of "anything" covers it. Its effect on the loss is first order in that near-zero gradient, so the loss
#   trajectories still agree to the forward rounding bound (the same tolerance; measured: <= 2e-7 relative).
DEPTH = 24  # >= the layers on the longest backward path of the smoke U-Net (2 levels: ~20 convs, norms, attention)
U = 2.0 ** -24  # float32 unit roundoff


def _tolerance(train_params) -> float:
    return DEPTH * train_params.batch_size * train_params.crop ** 2 * U  # ~1.5e-3 here


def test_two_processes_give_the_one_process_gradient_of_the_same_global_batch(ddp_run, single):
    tolerance = _tolerance(ddp_run["params"].train_sr)
    ddp = dict(zip(single["names"], ddp_run["ranks"][0]["first_grads"], strict=True))
    assert ddp.keys() == single["first_grads"].keys() and ddp
    for name, expected in single["first_grads"].items():
        scale = expected.abs().max().item()
        assert scale > 0, name  # every tensor takes part in the comparison
        difference = (ddp[name] - expected).abs().max().item()
        assert difference <= tolerance * scale, (name, difference, scale)
    # the check can fail: half of the global batch (one rank's share alone) gives another gradient
    assert any((ddp[name] - g).abs().max().item() > tolerance * g.abs().max().item()
               for name, g in _one_rank_gradient(ddp_run).items())


def _one_rank_gradient(ddp_run) -> dict:
    """The gradient of rank 0's half batch alone, from the same initial weights: what no synchronisation would give."""
    params = ddp_run["params"]
    torch.manual_seed(params.train_sr.seed)
    model = train_sr.build_model(params.sr_model).to(memory_format=torch.channels_last)
    batch = ddp_run["ranks"][0]["batches"][0]
    torch.manual_seed(derived_seed(params.train_sr.seed, 0, 0))
    train_sr.diffusion_loss(model.train(), process_schedule(params.diffusion),
                            params.diffusion.target, batch).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_two_processes_follow_the_one_process_loss_trajectory(ddp_run, single):
    train_params = ddp_run["params"].train_sr
    tolerance = _tolerance(train_params)
    ddp_losses = [float(r["loss"]) for r in read_csv(ddp_run["log"])]
    single_losses = [float(r["loss"]) for r in read_csv(single["log"])]
    assert len(ddp_losses) == len(single_losses) == train_params.steps
    assert ddp_losses == pytest.approx(single_losses, rel=tolerance, abs=0)
    # the comparison can fail: the loss moves by far more than the tolerance from step to step, so a run that
    # updated differently (or not at all) would leave the trajectory
    assert all(abs(a - b) > 10 * tolerance * abs(b) for a, b in zip(single_losses, single_losses[1:]))
    tensors, _ = load_model_file(ddp_run["model"])
    rank0 = ddp_run["ranks"][0]
    assert tensors.keys() == rank0["ema"].keys()
    for key, value in rank0["ema"].items():
        assert torch.equal(tensors[key], value.contiguous()), key  # the file holds rank 0's EMA weights


def test_resume_under_ddp_equals_the_uninterrupted_run(ddp_run):
    for rank in ddp_run["ranks"]:
        for key, value in rank["whole"].items():
            assert torch.equal(rank["resumed"][key], value), key

