"""generate / gather / regress: sharding, pairing, provenance, guidance modes, error messages."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medsr.stages import gather, generate, regress
from medsr.core import io
from medsr.core.model_files import save_model
from medsr.cli import main
from medsr.core.config import load_params
from medsr.core.parameters import CLASSES
from medsr.stages.download import run as download
from medsr.stages.degrade import run as degrade
from medsr.diffusion.unet import build_unet, load_unet
from medsr.core.errors import MedsrError

ROOT = Path(__file__).resolve().parents[1]
SMOKE = load_params([ROOT / "params.yaml", ROOT / "configs/smoke.yaml"])
# these tests sample a DDPM model with DDIM (the default resshift route: test_a_resshift_model_is_sampled_...)
PARAMS = dataclasses.replace(SMOKE, diffusion=dataclasses.replace(SMOKE.diffusion, process="ddpm"),
                             generate=dataclasses.replace(SMOKE.generate, sampler="ddim"))
EVAL = ("val", "test")  # what generate and regress super-resolve


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A tiny dataset (HR, LR, bicubic), an untrained SR model, regression model and guide classifier."""
    root = tmp_path_factory.mktemp("generate")
    download(PARAMS.data, out=root / "raw")
    degrade(PARAMS.degrade, hr=root / "raw", lr=root / "lr", bicubic=root / "bicubic")
    size = PARAMS.data.image_size
    common = {"sr_model": dataclasses.asdict(PARAMS.sr_model), "scale": PARAMS.degrade.scale,
              "hr_size": [size, size], "lr_size": [size // 2, size // 2]}
    torch.manual_seed(0)
    save_model(root / "sr.safetensors", build_unet(PARAMS.sr_model, "sr_diffusion").state_dict(),
               {**common, "kind": "sr_diffusion", "diffusion": dataclasses.asdict(PARAMS.diffusion)})
    save_model(root / "regression.safetensors", build_unet(PARAMS.sr_model, "sr_regression").state_dict(),
               {**common, "kind": "sr_regression"})
    from medsr.stages.train_classifier import run as train_classifier
    train_classifier(dataclasses.replace(PARAMS.train_classifier, epochs=1), images=root / "bicubic",
                     model=root / "guide.safetensors", log=root / "guide.csv", architecture="resnet18",
                     domain="bicubic", seed=0)
    return root


def make(workspace: Path, out: Path, guidance: str = "null", seed: int = 0, shard: int = 0, **changes) -> Path:
    params = dataclasses.replace(PARAMS.generate, **changes)
    generate.run(params, PARAMS.evaluate, model=workspace / "sr.safetensors", lr=workspace / "lr",
                 guide=workspace / "guide.safetensors", bicubic=workspace / "bicubic", guidance=guidance,
                 seed=seed, shard=shard, out=out)
    return out


def arrays(folder: Path) -> dict[str, np.ndarray]:
    return {r.id: np.load((folder / r.path).with_suffix(".npy")) for r in io.read_manifest(folder, EVAL)}


def test_shards_partition_the_sorted_test_ids():
    records = [io.Record(f"id{i:02d}", "test", "healthy", f"p{i}") for i in (5, 1, 9, 3, 7, 0, 2)]
    parts = [generate.shard_records(records, k, 3) for k in range(3)]
    ids = [r.id for part in parts for r in part]
    assert ids == sorted(r.id for r in records)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert generate.shard_records(records[:1], 1, 2) == []  # more shards than images: an empty shard


def test_sharded_generation_gathers_to_the_unsharded_result(workspace, tmp_path):
    whole = make(workspace, tmp_path / "whole" / "shard0", shards=(0,))
    [make(workspace, tmp_path / "split" / f"shard{k}", shard=k, shards=(0, 1, 2), batch_size=3)
               for k in range(3)]
    gather.run(dataclasses.replace(PARAMS.generate, shards=(0, 1, 2)), shards=tmp_path / "split", out=tmp_path / "set")
    one = arrays(whole)
    three = arrays(tmp_path / "set")
    assert sorted(one) == sorted(three) == sorted(r.id for r in io.read_manifest(workspace / "lr", EVAL))
    for image_id in one:
        np.testing.assert_allclose(three[image_id], one[image_id], atol=1e-5)
    # PNG and npy hold the same image; everything in [0, 1]; HR size
    record = io.read_manifest(tmp_path / "set", EVAL)[0]
    png = io.read_image(tmp_path / "set" / record.path)
    assert png.shape == (PARAMS.data.image_size,) * 2
    assert np.abs(png - three[record.id]).max() <= 0.5 / 255 + 1e-6
    meta = json.loads((tmp_path / "set/metadata.json").read_text())
    assert meta["images"] == len(one) and meta["shards"] == 3 and "shard" not in meta
    assert meta["sampler"] == PARAMS.generate.sampler and meta["guidance"] == "null"
    assert meta["model_sha256"] == io.sha256_file(workspace / "sr.safetensors")


def test_labels_of_sr_images_match_the_test_set(workspace, tmp_path):
    out = make(workspace, tmp_path / "s0", shards=(0,))
    lr = {r.id: r.label for r in io.read_manifest(workspace / "lr", EVAL)}
    assert {r.id: r.label for r in io.read_manifest(out, EVAL)} == lr


def test_guidance_mode_is_recorded_and_oracle_is_flagged(workspace, tmp_path):
    truth = {r.id: r.label for r in io.read_manifest(workspace / "lr", EVAL)}
    metas = {}
    for mode in ("null", "predicted", "oracle"):
        out = make(workspace, tmp_path / mode, guidance=mode, shards=(0,), guidance_scale=1.5)
        metas[mode] = json.loads((out / "metadata.json").read_text())
        assert metas[mode]["guidance"] == mode
    assert metas["oracle"]["leaks_label"] is True
    assert metas["oracle"]["guide_class"] == truth
    assert metas["null"]["leaks_label"] is False and set(metas["null"]["guide_class"].values()) == {"null"}
    assert metas["null"]["guidance_scale"] == 1.0  # w is meaningless without a class
    assert metas["predicted"]["leaks_label"] is False
    assert set(metas["predicted"]["guide_class"].values()) <= set(CLASSES)
    assert metas["predicted"]["guide_classifier_sha256"] == io.sha256_file(workspace / "guide.safetensors")
    # the guidance class reaches the network: oracle and null images differ
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(arrays(tmp_path / "oracle").values(),
                                                          arrays(tmp_path / "null").values()))


def test_sampling_seed_changes_the_images(workspace, tmp_path):
    a = arrays(make(workspace, tmp_path / "a", seed=0, shards=(0,)))
    b = arrays(make(workspace, tmp_path / "b", seed=1, shards=(0,)))
    assert max(np.abs(a[k] - b[k]).max() for k in a) > 1e-3


def test_gather_refuses_shards_of_different_runs(workspace, tmp_path):
    params = dataclasses.replace(PARAMS.generate, shards=(0, 1))
    first = make(workspace, tmp_path / "x" / "shard0", shard=0, shards=(0, 1))
    other = make(workspace, tmp_path / "x" / "shard1", shard=1, shards=(0, 1), seed=5)
    with pytest.raises(MedsrError, match=r"shard1/metadata.json: seed is 5"):
        gather.run(params, shards=tmp_path / "x", out=tmp_path / "out")
    shutil.rmtree(other)
    shutil.copytree(first, other)  # shard 0 twice
    with pytest.raises(MedsrError, match=r"do not make up 0..1"):
        gather.run(params, shards=tmp_path / "x", out=tmp_path / "out")
    shutil.rmtree(other)
    with pytest.raises(MedsrError, match=r"shard1: generation shard is missing"):
        gather.run(params, shards=tmp_path / "x", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_generate_errors_name_the_problem(workspace, tmp_path):
    with pytest.raises(MedsrError, match="generate.steps: 999 exceeds"):
        make(workspace, tmp_path / "o", steps=999)
    with pytest.raises(MedsrError, match="--shard: 4 is not in generate.shards"):
        make(workspace, tmp_path / "o", shard=4)
    with pytest.raises(MedsrError, match="predicted guidance needs the guide classifier"):
        generate.run(PARAMS.generate, PARAMS.evaluate, model=workspace / "sr.safetensors", lr=workspace / "lr",
                     guidance="predicted", seed=0, shard=0, out=tmp_path / "o")
    with pytest.raises(MedsrError, match="regression.safetensors: holds a 'sr_regression' model"):
        generate.run(PARAMS.generate, PARAMS.evaluate, model=workspace / "regression.safetensors", lr=workspace / "lr",
                     guide=workspace / "guide.safetensors", bicubic=workspace / "bicubic", guidance="null",
                     seed=0, shard=0, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_null_guidance_reads_no_guide_classifier(workspace, tmp_path):
    """Only predicted guidance reads the guide classifier: a null run without one (as benchmarks/difficulty.py
    calls it) writes the same files, byte for byte, as with one."""
    with_guide = make(workspace, tmp_path / "with")
    generate.run(PARAMS.generate, PARAMS.evaluate, model=workspace / "sr.safetensors", lr=workspace / "lr",
                 guidance="null", seed=0, shard=0, out=tmp_path / "without")
    files = sorted(p.relative_to(with_guide) for p in with_guide.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "without") for p in (tmp_path / "without").rglob("*")
                           if p.is_file())
    assert all((with_guide / f).read_bytes() == (tmp_path / "without" / f).read_bytes() for f in files)


def test_a_resshift_model_is_sampled_by_the_resshift_sampler_only(workspace, tmp_path):
    """The model file records its process; generate samples a resshift model with K <= T resshift steps, records
    the process, and refuses a mismatched sampler in either direction without writing anything."""
    size = PARAMS.data.image_size
    resshift = dataclasses.replace(PARAMS.diffusion, process="resshift")
    torch.manual_seed(0)
    save_model(tmp_path / "rs.safetensors", build_unet(PARAMS.sr_model, "sr_diffusion").state_dict(),
               {"sr_model": dataclasses.asdict(PARAMS.sr_model), "scale": PARAMS.degrade.scale,
                "hr_size": [size, size], "lr_size": [size // 2, size // 2], "kind": "sr_diffusion",
                "diffusion": dataclasses.asdict(resshift)})
    assert load_unet(tmp_path / "rs.safetensors", "sr_diffusion", torch.device("cpu")).process == "resshift"
    params = dataclasses.replace(PARAMS.generate, sampler="resshift", steps=2)
    generate.run(
        params,
        PARAMS.evaluate,
        model=tmp_path / "rs.safetensors",
        lr=workspace / "lr",
        guide=workspace / "guide.safetensors",
        bicubic=workspace / "bicubic",
        guidance="null",
        seed=0,
        shard=0,
        out=tmp_path / "out",
    )
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert metadata["process"] == "resshift" and metadata["sampler"] == "resshift" and metadata["steps"] == 2
    assert len(io.read_manifest(tmp_path / "out", EVAL)) > 0
    with pytest.raises(MedsrError, match="generate.sampler: ddim cannot sample .*resshift model"):
        generate.run(PARAMS.generate, PARAMS.evaluate, model=tmp_path / "rs.safetensors", lr=workspace / "lr",
                     guide=workspace / "guide.safetensors", bicubic=workspace / "bicubic", guidance="null",
                     seed=0, shard=0, out=tmp_path / "bad")
    with pytest.raises(MedsrError, match="generate.sampler: resshift cannot sample .*ddpm model"):
        make(workspace, tmp_path / "bad", sampler="resshift", steps=2)
    assert not (tmp_path / "bad").exists()


def test_generate_cli_exits_non_zero_with_one_line(workspace, tmp_path, capsys):
    code = main(["generate", "--params", str(ROOT / "params.yaml"), "--params", str(ROOT / "configs/smoke.yaml"),
                 "--model", str(tmp_path / "missing.safetensors"), "--lr", str(workspace / "lr"),
                 "--guide", str(workspace / "guide.safetensors"), "--bicubic", str(workspace / "bicubic"),
                 "--guidance", "null", "--seed", "0", "--shard", "0", "--out", str(tmp_path / "o"),
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("medsr generate: error:") and "missing.safetensors: model file not found" in err[-1]


def test_regression_baseline_is_bicubic_plus_a_residual(workspace, tmp_path):
    regress.run(PARAMS.generate, model=workspace / "regression.safetensors", lr=workspace / "lr",
                out=tmp_path / "reg")
    records = io.read_manifest(tmp_path / "reg", EVAL)
    assert len(records) == len(io.read_manifest(workspace / "lr", EVAL))
    loaded = load_unet(workspace / "regression.safetensors", "sr_regression", torch.device("cpu"))
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.zero_()
    bicubic = loaded.bicubic_input(workspace / "lr", io.read_manifest(workspace / "lr", EVAL)[:2])
    torch.testing.assert_close(regress.super_resolve(loaded.model, bicubic), bicubic)  # zero residual = bicubic
    meta = json.loads((tmp_path / "reg/metadata.json").read_text())
    assert meta["set"] == "regression"


def test_wrong_lr_size_is_an_error_naming_the_file(workspace, tmp_path):
    small = tmp_path / "lr"
    shutil.copytree(workspace / "lr", small)
    record = io.read_manifest(small, "test")[0]
    io.write_image(small / record.path, np.zeros((5, 5), np.float32))
    io.write_manifest(small, [dataclasses.replace(r, sha256=io.sha256_file(small / r.path)) if r.id == record.id else r
                              for r in io.read_manifest(small)])  # a consistent manifest: the size is the fault
    with pytest.raises(MedsrError, match=r"LR image is \(5, 5\)|differs from"):
        regress.run(PARAMS.generate, model=workspace / "regression.safetensors", lr=small, out=tmp_path / "reg")


def test_posterior_samples_are_keyed_by_image_and_sample_not_by_shard_or_batch(workspace, tmp_path):
    from medsr.diffusion import posterior
    changes = dict(samples_per_image=3, posterior_images=4)
    whole = make(workspace, tmp_path / "whole" / "shard0", shards=(0,), **changes)
    for k in range(2):
        make(workspace, tmp_path / "split" / f"shard{k}", shard=k, shards=(0, 1), batch_size=1, **changes)
    gather.run(dataclasses.replace(PARAMS.generate, shards=(0, 1), **changes), shards=tmp_path / "split",
               out=tmp_path / "set")
    one, two = posterior.entries(whole), posterior.entries(tmp_path / "set")
    records = io.read_manifest(workspace / "lr", EVAL)
    assert sorted(one) == sorted(two) == sorted(posterior.chosen_ids(records, 4))
    for split in EVAL:  # 4 per split, 2 per class
        chosen = [r for r in records if r.split == split and r.id in one]
        assert len(chosen) == 4 and sum(r.label == "unhealthy" for r in chosen) == 2
    for image_id in one:
        a = posterior.read_samples(whole, image_id, one[image_id])
        b = posterior.read_samples(tmp_path / "set", image_id, two[image_id])
        # batch 1 vs batch 8 sums the network's floats in another order (other kernels, other CPUs): a pixel near a
        # rounding edge of the stored 8-bit samples may move by one grey level; a sample keyed by the batch or the
        # shard would differ everywhere
        np.testing.assert_allclose(a, b, atol=1 / 255 + 1e-6)
        assert np.mean(np.abs(a - b) > 1e-6) < 0.01
        assert a.shape[0] == 3 and not np.allclose(a[0], a[1])  # stochastic: the samples differ
        np.testing.assert_allclose(np.load(whole / "posterior" / f"{image_id}.std.npy"), a.std(axis=0), atol=1e-6)
        assert posterior.read_swapped(whole, image_id, one[image_id]) is not None  # null run: class-swap draw
    meta = json.loads((whole / "metadata.json").read_text())
    assert meta["swap_audit"] and meta["swapped_leaks_label"] and meta["posterior_eta"] == PARAMS.generate.sample_eta
    # a posterior file changed after generate is refused
    victim = sorted(one)[0]
    np.save(whole / "posterior" / f"{victim}.npy", np.zeros((3, 2, 2), np.float32))
    with pytest.raises(MedsrError, match="sha256"):
        posterior.read_samples(whole, victim, one[victim])


def test_swapped_guidance_gives_the_opposite_label_and_is_flagged(workspace, tmp_path):
    out = make(workspace, tmp_path / "swapped", guidance="swapped", shards=(0,), samples_per_image=1)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["leaks_label"] is True and meta["guidance"] == "swapped"
    for record in io.read_manifest(workspace / "lr", EVAL):
        assert meta["guide_class"][record.id] != record.label
    from medsr.diffusion import posterior
    assert posterior.entries(out) == {}  # samples_per_image 1: no posterior samples, no swap draws
