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

from medsr import degrade, train_sr, training
from medsr.checkpoint import load_model_file, read_metadata
from medsr.config import load_params
from medsr.data import download
from medsr.io import read_csv

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

    from medsr import cli, train_sr, training
    from medsr.config import load_params

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

    code = cli.main(config["cli_args"])
    saved = {"code": code, "writes": list(writes), "batches": list(batches), **result}

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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, ema, loss = train_sr.train(params.sr_model, params.diffusion, params.train_sr, ddp_run["data"],
                                          ctx=training.Distributed(0, 1, torch.device("cpu")), log=log,
                                          checkpoints=None)
    finally:
        torch.set_num_threads(threads)
    return {"model": model.state_dict(), "ema": ema.shadow.state_dict(), "loss": loss, "log": log}


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
        expected = train_sr.draw_batch(ddp_run["data"], params.train_sr, params.diffusion.timesteps, generator)
        for key, value in expected.items():
            half0, half1 = rank0["batches"][step][key], rank1["batches"][step][key]
            assert len(half0) == len(half1) == params.train_sr.batch_size // 2
            assert torch.equal(torch.cat([half0, half1]), value), (step, key)


def _assert_close_weights(actual: dict, expected: dict, loose: float) -> None:
    """Equal up to float reduction order. The attention key bias has an exactly zero gradient (softmax ignores a
    shift shared by all keys), so Adam turns rounding noise into steps of up to the learning rate: `loose` there."""
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        got = actual[key]
        if key.endswith("qkv.bias"):
            width = len(value) // 3
            torch.testing.assert_close(got[width:2 * width], value[width:2 * width], rtol=0, atol=loose, msg=key)
            got, value = torch.cat([got[:width], got[2 * width:]]), torch.cat([value[:width], value[2 * width:]])
        torch.testing.assert_close(got, value, rtol=1e-4, atol=1e-5, msg=key)


def test_two_processes_match_one_with_the_same_global_batch(ddp_run, single):
    rank0, train_params = ddp_run["ranks"][0], ddp_run["params"].train_sr
    loose = train_params.steps * train_params.learning_rate
    _assert_close_weights(rank0["model"], single["model"], loose)
    _assert_close_weights(rank0["ema"], single["ema"], loose)
    tensors, _ = load_model_file(ddp_run["model"])
    _assert_close_weights(tensors, {k: v.contiguous() for k, v in single["ema"].items()}, loose)
    ddp_losses = [float(r["loss"]) for r in read_csv(ddp_run["log"])]
    single_losses = [float(r["loss"]) for r in read_csv(single["log"])]
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5)
    # the comparison can fail: the initial weights are far from the trained ones
    torch.manual_seed(ddp_run["params"].train_sr.seed)
    initial = train_sr.build_model(ddp_run["params"].sr_model).state_dict()
    assert any(not torch.allclose(initial[k], single["model"][k], atol=1e-4) for k in initial)


def test_resume_under_ddp_equals_the_uninterrupted_run(ddp_run):
    for rank in ddp_run["ranks"]:
        for key, value in rank["whole"].items():
            assert torch.equal(rank["resumed"][key], value), key
