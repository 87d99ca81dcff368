"""The classifier families: model shape, train/val splits (no test image ever read), classify pairing."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import medsr.core.io
from medsr.core.model_files import read_metadata
from medsr.classifier.model import build_classifier, load_classifier, predict_proba
from medsr.classifier.model import normalize
from medsr.stages import train_classifier as train
from medsr.stages.classify import PREDICTION_FIELDS
from medsr.stages import classify
from medsr.core.parameters import ARCHITECTURES, CLASSES, ClassifyParams, TrainClassifierParams
from medsr.data.splits import carve_val
from medsr.core.errors import MedsrError
from medsr.data.image_sets import ImageSet, paired_records
from medsr.core.io import Record, read_csv, write_image, write_manifest
from medsr.classifier.stopping import best_epoch, should_stop, stopping, trained_epochs

SIZE = 32


def _params(**overrides) -> TrainClassifierParams:
    values = dict(architectures=("resnet18", "mobilenet_v3_small"), epochs=2, batch_size=8, learning_rate=1e-3,
                  lr_schedule="cosine", weight_decay=1e-4, hflip=True, crop=0, precise_bn=True, patience=0,
                  min_epochs=0, monitor="val_loss")
    values.update(overrides)
    return TrainClassifierParams(**values)


def _image(rng: np.random.Generator, label: int, size: int = SIZE) -> np.ndarray:
    image = rng.uniform(0.3, 0.5, (size, size))
    if label:
        image[size // 4: size // 2, size // 4: size // 2] = 0.9  # a bright lesion
    return image


def make_set(root: Path, n_train: int = 6, n_test: int = 4, size: int = SIZE, seed: int = 0,
             test_ids: list[str] | None = None, corrupt_test: bool = False, n_val: int = 2) -> Path:
    rng = np.random.default_rng(seed)
    records = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for label, name in enumerate(CLASSES):
            for i in range(n):
                image_id = f"{split}_{name}_{i:02d}"
                if split == "test" and test_ids is not None and image_id not in test_ids:
                    continue
                rel = f"{split}/{name}/{image_id}.png"
                write_image(root / rel, _image(rng, label, size))
                if split == "test" and corrupt_test:
                    (root / rel).write_bytes(b"not a png")
                records.append(Record(image_id, split, name, rel))
    write_manifest(root, records)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("classifier")
    images = make_set(root / "hr", corrupt_test=True)  # reading any test image would fail
    read: list[str] = []
    original = medsr.core.io.read_record_image  # what load_images reads every image of a set with

    def spy(folder, record):
        read.append(str(medsr.core.io.image_path(folder, record)))
        return original(folder, record)

    medsr.core.io.read_record_image = spy
    try:
        train.run(_params(), images=images, model=root / "clf.safetensors", log=root / "clf.csv",
                  architecture="resnet18", domain="hr", seed=0)
    finally:
        medsr.core.io.read_record_image = original
    return {"root": root, "images": images, "model": root / "clf.safetensors", "log": root / "clf.csv", "read": read}


def test_model_shape_and_stem():
    model = build_classifier()
    assert model.conv1.in_channels == 1 and model.fc.out_features == 2
    assert model(torch.rand(3, 1, SIZE, SIZE)).shape == (3, 2)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_family_takes_one_channel_and_gives_two_logits(architecture):
    torch.manual_seed(0)
    model = build_classifier(architecture).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 1 and not any(m.in_channels == 3 for m in convs)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears[-1].out_features == 2
    assert model(torch.rand(3, 1, SIZE, SIZE)).shape == (3, 2)
    with pytest.raises(MedsrError, match="unknown architecture 'vgg11'"):
        build_classifier("vgg11")


def test_a_second_family_trains_and_loads_from_its_metadata(trained, tmp_path):
    params = _params()
    train.run(params, images=trained["images"], model=tmp_path / "m.safetensors", log=tmp_path / "m.csv",
              architecture="mobilenet_v3_small", domain="bicubic", seed=1)
    metadata = read_metadata(tmp_path / "m.safetensors")
    assert (metadata["architecture"], metadata["domain"], metadata["seed"]) == ("mobilenet_v3_small", "bicubic", 1)
    assert [r["epoch"] for r in read_csv(tmp_path / "m.csv")] == ["1", "2"]
    model = load_classifier(tmp_path / "m.safetensors")
    assert type(model).__name__ == "MobileNetV3" and model.architecture == "mobilenet_v3_small"
    assert predict_proba(model, torch.rand(2, 1, SIZE, SIZE)).shape == (2, 2)
    assert classify.classifier_identity(tmp_path / "m.safetensors") == ("mobilenet_v3_small", "bicubic", 1)
    with pytest.raises(MedsrError, match="'densenet121' is not in train_classifier.architectures"):
        train.run(params, images=trained["images"], model=tmp_path / "d.safetensors", log=tmp_path / "d.csv",
                  architecture="densenet121", domain="hr", seed=0)
    assert not (tmp_path / "d.safetensors").exists()


def test_predict_proba_is_deterministic_inference():
    torch.manual_seed(0)
    model = build_classifier().train()
    images = torch.rand(5, 1, SIZE, SIZE)
    first = predict_proba(model, images, batch_size=2)
    assert first.shape == (5, 2) and torch.allclose(first.sum(1), torch.ones(5))
    assert torch.allclose(
        first, predict_proba(model, images, batch_size=5), atol=1e-5
    )  # eval mode: no batch statistics
    assert model.training  # the caller's mode is restored
    with pytest.raises(ValueError):
        predict_proba(model, torch.rand(2, 3, SIZE, SIZE))


def test_val_carving_is_seeded_stratified_and_keeps_both_splits():
    labels = ["healthy"] * 40 + ["unhealthy"] * 20
    val = carve_val(labels, 0.25, seed=1)
    assert val.sum() == 15 and sum(v for v, lab in zip(val, labels) if lab == "unhealthy") == 5
    np.testing.assert_array_equal(val, carve_val(labels, 0.25, seed=1))
    assert not np.array_equal(val, carve_val(labels, 0.25, seed=2))
    assert carve_val(["healthy", "healthy", "unhealthy", "unhealthy"], 0.01, 0).sum() == 2  # one of each at least
    assert carve_val(["healthy"], 0.5, 0).sum() == 0  # a lone image stays in train


def test_training_reads_train_and_val_never_test(trained):
    assert trained["read"], "training read no image at all"
    assert all("/train/" in p or "/val/" in p for p in trained["read"])
    assert sum("/val/" in p for p in trained["read"]) == 2 * 2
    assert len(trained["read"]) == 2 * (6 + 2)
    with pytest.raises(MedsrError, match="test split is never read"):
        train.split_records(trained["images"], "test")


def test_training_writes_history_and_a_loadable_model(trained):
    rows = read_csv(trained["log"])
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == list(train.HISTORY_FIELDS)
    metadata = read_metadata(trained["model"])
    assert metadata["image_size"] == SIZE and metadata["epochs"] == 2 and metadata["best_epoch"] in (1, 2)
    assert metadata["epochs_run"] == 2 and metadata["stopped_early"] is False and metadata["patience"] == 0
    assert metadata["converged"] is (metadata["best_epoch"] == 1)  # patience 0: not converged when the last is best
    for row in rows:  # the run's record, on every row
        assert (row["epochs_run"], row["best_epoch"], row["stopped_early"], row["converged"]) == (
            "2", str(metadata["best_epoch"]), "False", str(metadata["converged"]))
    assert metadata["selection"] == "val_loss" and metadata["val_images"] == 4 and metadata["train_images"] == 12
    assert (metadata["domain"], metadata["seed"]) == ("hr", 0)
    assert metadata["input_set"] == str(trained["images"]) and "val_acc" in metadata
    best = rows[metadata["best_epoch"] - 1]
    assert float(best["val_loss"]) == pytest.approx(metadata["val_loss"], abs=1e-5)
    model = load_classifier(trained["model"])
    assert not model.training
    assert predict_proba(model, torch.rand(2, 1, SIZE, SIZE)).shape == (2, 2)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_learning_rate_schedule(trained, tmp_path, schedule):
    params = _params(epochs=4, lr_schedule=schedule)
    train.run(params, images=trained["images"], model=tmp_path / "m.safetensors", log=tmp_path / "h.csv",
              architecture="resnet18", domain="hr", seed=0)
    rates = [float(r["learning_rate"]) for r in read_csv(tmp_path / "h.csv")]
    if schedule == "constant":
        assert rates == [params.learning_rate] * 4
    else:  # cosine: lr_k = lr_0 (1 + cos(pi k / K)) / 2
        expected = [params.learning_rate * (1 + np.cos(np.pi * k / 4)) / 2 for k in range(4)]
        np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_training_is_deterministic(trained, tmp_path):
    train.run(_params(), images=trained["images"], model=tmp_path / "again.safetensors", log=tmp_path / "again.csv",
              architecture="resnet18", domain="hr", seed=0)
    assert read_csv(tmp_path / "again.csv") == read_csv(trained["log"])


def test_random_crop_takes_a_window_of_each_image_and_draws_only_when_it_crops():
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)  # pixel value = 64 image + 8 row + column
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert train.random_crop(x, 0, generator) is x and train.random_crop(x, 8, generator) is x
    assert torch.equal(generator.get_state(), state)  # whole images: the training stream is untouched
    windows = train.random_crop(x, 5, generator)
    assert windows.shape == (2, 1, 5, 5) and not torch.equal(generator.get_state(), state)
    for image, window in zip(x, windows):
        row, col = divmod(int(window[0, 0, 0]) % 64, 8)  # the window's top-left pixel says where it was cut
        assert row <= 3 and col <= 3 and torch.equal(window, image[:, row:row + 5, col:col + 5])


def test_a_cropped_run_trains_on_windows_and_scores_whole_val_images(trained, tmp_path, monkeypatch):
    seen: list[tuple[int, ...]] = []
    forward = train.nn.Module.__call__

    def spy(module, *args, **kwargs):
        if module.__class__.__name__ == "ResNet":
            seen.append((module.training, *args[0].shape[-2:]))
        return forward(module, *args, **kwargs)

    monkeypatch.setattr(train.nn.Module, "__call__", spy)
    train.run(_params(crop=SIZE // 2), images=trained["images"], model=tmp_path / "crop.safetensors",
              log=tmp_path / "crop.csv", architecture="resnet18", domain="hr", seed=0)
    monkeypatch.undo()
    assert read_csv(tmp_path / "crop.csv") != read_csv(trained["log"])  # another run than the uncropped one
    training, evaluation = {s[1:] for s in seen if s[0]}, {s[1:] for s in seen if not s[0]}
    # train-mode passes: the cropped training batches and precise BN's whole images; eval mode: whole val images
    assert training == {(SIZE // 2, SIZE // 2), (SIZE, SIZE)} and evaluation == {(SIZE, SIZE)}


def _sets(**folders: Path) -> list[ImageSet]:
    return [ImageSet(name, name if name in ("hr", "bicubic") else "sr", folder) for name, folder in folders.items()]


def test_classify_writes_paired_predictions_for_val_and_test(trained, tmp_path):
    hr = make_set(tmp_path / "hr")
    other = make_set(tmp_path / "other", seed=1)
    out = tmp_path / "predictions.csv"
    classify.run(ClassifyParams(batch_size=3), models=[trained["model"]], sets=_sets(hr=hr, bicubic=other), out=out)
    rows = read_csv(out)
    assert list(rows[0]) == list(PREDICTION_FIELDS)
    assert len(rows) == 2 * 2 * (4 + 2)  # two sets x two classes x (test + val) images
    for row in rows:
        assert row["label_index"] == str(CLASSES.index(row["label"]))
        assert 0.0 <= float(row["prob_unhealthy"]) <= 1.0
        assert (row["architecture"], row["classifier"], row["train_seed"]) == ("resnet18", "hr", "0")
    hr_ids = [r["id"] for r in rows if r["set"] == "hr"]
    assert hr_ids == [r["id"] for r in rows if r["set"] == "bicubic"]
    assert {r["split"] for r in rows} == {"val", "test"} and not any(i.startswith("train_") for i in hr_ids)


def test_classify_shows_each_set_to_the_hr_classifier_and_to_the_one_of_its_own_kind(trained, tmp_path):
    """The arms evaluate reads (medsr.evaluation.comparisons.arms), and no other: the bicubic classifier sees only
    the bicubic set."""
    from medsr.evaluation.comparisons import arms

    train.run(_params(epochs=1), images=trained["images"], model=tmp_path / "b.safetensors", log=tmp_path / "b.csv",
              architecture="resnet18", domain="bicubic", seed=0, init=trained["model"])
    sets = [ImageSet("hr", "hr", make_set(tmp_path / "hr"), matched="hr"),
            ImageSet("bicubic", "bicubic", make_set(tmp_path / "bicubic", seed=1), matched="bicubic"),
            ImageSet("sr_null_seed0", "sr", make_set(tmp_path / "sr", seed=2), guidance="null", seed=0)]
    classify.run(ClassifyParams(batch_size=4), models=[trained["model"], tmp_path / "b.safetensors"], sets=sets,
                 out=tmp_path / "p.csv")
    seen = {(r["set"], r["classifier"]) for r in read_csv(tmp_path / "p.csv")}
    assert seen == set(arms(sets, ["hr", "bicubic"])) == {("hr", "hr"), ("bicubic", "hr"), ("sr_null_seed0", "hr"),
                                                          ("bicubic", "bicubic")}


def test_classify_refuses_mismatched_ids(tmp_path):
    hr = make_set(tmp_path / "hr")
    short = make_set(tmp_path / "short", test_ids=["test_healthy_00", "test_unhealthy_00"])
    with pytest.raises(MedsrError, match=r"set sr_null_seed0 lacks image test_healthy_01"):
        paired_records(_sets(hr=hr, sr_null_seed0=short), ("val", "test"))


def test_classify_refuses_other_sizes(trained, tmp_path):
    hr = make_set(tmp_path / "hr", size=SIZE * 2)
    with pytest.raises(MedsrError, match="resizing is not done silently"):
        classify.run(ClassifyParams(batch_size=4), models=[trained["model"]], sets=_sets(hr=hr), out=tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("how", ["huge learning rate", "nan loss"])
def test_diverging_training_writes_no_model(trained, tmp_path, monkeypatch, how):
    if how == "nan loss":  # whatever a huge learning rate does to this network, a nan loss must stop it
        original = torch.nn.functional.cross_entropy
        calls = []

        def nan_on_second_batch(*args, **kwargs):
            loss = original(*args, **kwargs)
            calls.append(1)
            return loss * float("nan") if len(calls) == 2 else loss

        monkeypatch.setattr(torch.nn.functional, "cross_entropy", nan_on_second_batch)
    params = _params(epochs=3, learning_rate=1e12 if how == "huge learning rate" else 1e-3)
    model, log = tmp_path / "clf.safetensors", tmp_path / "clf.csv"
    model.write_bytes(b"an earlier model")
    with pytest.raises(MedsrError) as err:
        train.run(params, images=trained["images"], model=model, log=log, architecture="resnet18", domain="hr", seed=0)
    message = str(err.value)
    assert message.startswith("train-classifier: ") and "training diverged; no model written" in message, message
    assert f"(train_classifier.learning_rate {params.learning_rate:g})" in message, message
    if how == "nan loss":
        assert message.startswith("train-classifier: loss is nan at epoch 1 batch 2 "), message
    assert model.read_bytes() == b"an earlier model" and not log.exists()


def test_precise_batchnorm_replaces_stale_running_statistics_without_drawing_randomness():
    """recalibrate_batchnorm: running mean = the average of the batch means of the train images (here one
    BatchNorm reading the normalized images directly), running variance the average unbiased batch variance;
    momentum restored; no random number drawn (the training stream of the next epoch is unchanged)."""
    x = torch.rand(20, 1, 4, 4) * 0.5 + 0.25
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1, momentum=0.1))
    model[0].running_mean.fill_(7.0)  # stale statistics, as after weights moved faster than the EMA followed
    model[0].running_var.fill_(9.0)
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    train.recalibrate_batchnorm(model, x, batch_size=8, device=torch.device("cpu"))
    assert torch.equal(torch.rand(1), before), "recalibration drew a random number"
    batches = [normalize(x[s:s + 8]) for s in range(0, 20, 8)]  # 8, 8, 4 images
    mean = np.mean([b.double().mean().item() for b in batches])
    var = np.mean([b.double().var(unbiased=True).item() for b in batches])
    np.testing.assert_allclose(model[0].running_mean.item(), mean, rtol=1e-5)  # float32 sums of <= 128 values
    np.testing.assert_allclose(model[0].running_var.item(), var, rtol=1e-5)
    assert model[0].momentum == 0.1 and model[0].num_batches_tracked.item() == 3


def test_precise_batchnorm_is_what_the_val_pass_sees(trained, tmp_path, monkeypatch):
    """With precise_bn every val pass follows a recalibration on the train split (and without it none does)."""
    calls: list[int] = []
    real = train.recalibrate_batchnorm
    monkeypatch.setattr(train, "recalibrate_batchnorm", lambda model, x, *a: (calls.append(len(x)), real(model, x, *a)))
    for precise, expected in ((True, [12, 12]), (False, [])):
        calls.clear()
        train.run(_params(precise_bn=precise), images=trained["images"], model=tmp_path / "m.safetensors",
                  log=tmp_path / "h.csv", architecture="resnet18", domain="hr", seed=0)
        assert calls == expected


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in load_classifier(path).named_parameters()}


def test_fine_tuning_starts_from_the_init_classifier_and_records_it(trained, tmp_path):
    """--init: a bicubic (or SR) classifier starts from the HR classifier's weights, not from a fresh draw."""
    from medsr.core.io import sha256_file

    bicubic = make_set(tmp_path / "bicubic", seed=1)
    still = _params(learning_rate=1e-12, weight_decay=0.0)  # Adam moves every weight by about 1e-12 per step
    for name, init in (("tuned", trained["model"]), ("scratch", None)):
        train.run(still, images=bicubic, model=tmp_path / f"{name}.safetensors", log=tmp_path / f"{name}.csv",
                  architecture="resnet18", domain="bicubic", seed=0, init=init)
    start, tuned, scratch = (_weights(p) for p in (trained["model"], tmp_path / "tuned.safetensors",
                                                   tmp_path / "scratch.safetensors"))
    for name in start:
        torch.testing.assert_close(tuned[name], start[name], rtol=0, atol=1e-8)
    assert max((scratch[n] - start[n]).abs().max().item() for n in start) > 1e-3
    init = read_metadata(tmp_path / "tuned.safetensors")["init"]
    assert init == {"path": str(trained["model"]), "sha256": sha256_file(trained["model"]), "domain": "hr", "seed": 0}
    assert read_metadata(tmp_path / "scratch.safetensors")["init"] is None


def test_fine_tuning_refuses_another_family_or_image_size(trained, tmp_path):
    small = make_set(tmp_path / "small", size=16)
    with pytest.raises(MedsrError, match=r"clf.safetensors: a resnet18 classifier cannot start a mobilenet_v3_small"):
        train.run(_params(), images=trained["images"], model=tmp_path / "m.safetensors", log=tmp_path / "m.csv",
                  architecture="mobilenet_v3_small", domain="bicubic", seed=0, init=trained["model"])
    with pytest.raises(MedsrError, match=r"clf.safetensors: trained on 32-pixel images, these are 16"):
        train.run(_params(), images=small, model=tmp_path / "s.safetensors", log=tmp_path / "s.csv",
                  architecture="resnet18", domain="bicubic", seed=0, init=trained["model"])
    assert not list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("*.csv"))


# --- early stopping ----------------------------------------------------------------------------

@pytest.mark.parametrize("losses, patience, maximum, expected", [
    ([0.7, 0.6, 0.65, 0.66], 2, 6, (4, 2, True, True)),  # stopped: two epochs without a lower loss
    ([0.7, 0.6, 0.5], 1, 3, (3, 3, False, False)),  # the budget ran out while the loss fell
    ([0.7, 0.5, 0.6], 2, 3, (3, 2, False, False)),  # best within the last `patience` epochs of the maximum
    ([0.7, 0.5, 0.6, 0.6], 2, 4, (4, 2, False, True)),  # stopped at the last epoch: converged, not early
    ([0.7, 0.5, 0.5], 0, 3, (3, 2, False, True)),  # patience 0: converged when the last epoch is not the best (tie)
    ([0.7, 0.6, 0.5], 0, 3, (3, 3, False, False)),
])
def test_stopping_record(losses, patience, maximum, expected):
    run = trained_epochs(losses, patience)
    assert dataclasses.astuple(stopping(run, patience, maximum)) == expected


def test_patience_zero_never_stops():
    losses = [0.5, 0.6, 0.7, 0.8, 0.9]
    assert trained_epochs(losses, 0) == losses and not should_stop(losses, 0)
    assert trained_epochs(losses, 3) == losses[:4]


def test_min_epochs_carries_a_run_through_its_flat_start():
    """The bicubic fine-tune's shape: the val loss sits at chance for the first epochs, then falls."""
    losses = [0.70, 0.72, 0.74, 0.71, 0.60, 0.50, 0.52, 0.55]
    assert trained_epochs(losses, 2) == losses[:3]  # stopped in the flat start, keeping epoch 1
    assert trained_epochs(losses, 2, min_epochs=4) == losses[:4]  # from epoch 4 on the usual rule applies
    run = trained_epochs(losses, 2, min_epochs=5)
    assert run == losses  # no stop before epoch 5; then the fall resets the count, stops at 8 (best 6)
    assert dataclasses.astuple(stopping(run, 2, 10)) == (8, 6, True, True)
    assert not should_stop(losses[:4], 2, min_epochs=5) and should_stop(losses[:4], 2)
    assert should_stop([0.7, 0.8, 0.9, 0.95], 2, min_epochs=4)  # at min_epochs the usual rule applies


def test_val_auroc_monitor_keeps_the_highest_and_stops_when_it_stops_rising():
    aurocs = [0.50, 0.62, 0.70, 0.69, 0.70, 0.68]
    assert best_epoch(aurocs, "val_auroc") == 3  # a tie (epoch 5) goes to the earlier epoch
    run = trained_epochs(aurocs, 2, monitor="val_auroc")
    assert run == aurocs[:5]
    assert dataclasses.astuple(stopping(run, 2, 8, "val_auroc")) == (5, 3, True, True)
    assert best_epoch(aurocs) == 1  # as a loss, the lowest value would win


def _scripted_val_losses(monkeypatch, losses: list[float], aurocs: list[float] | None = None) -> list[int]:
    """Val passes return `losses` (and `aurocs`, else 0.5) in turn (training itself is real); returns the list of
    passes made."""
    passes: list[int] = []

    def scripted(model, x, y, batch_size, device):
        passes.append(1)
        return losses[len(passes) - 1], 0.5, 0.5 if aurocs is None else aurocs[len(passes) - 1]

    monkeypatch.setattr(train, "evaluate_classifier", scripted)
    return passes


def _state(path: Path) -> dict[str, torch.Tensor]:
    from medsr.core.model_files import load_model_file

    return load_model_file(path, device="cpu")[0]


def test_training_stops_when_the_val_loss_stalls_and_keeps_the_best_epoch(trained, tmp_path, monkeypatch):
    """Val loss 0.7, 0.6, then higher: with patience 2 of at most 6 epochs, training stops after epoch 4 and keeps
    epoch 2, the same weights a run of all 6 epochs keeps (early stopping only leaves out the epochs after it)."""
    losses = [0.7, 0.6, 0.65, 0.66, 0.67, 0.68]
    runs = {}
    for patience in (2, 0):
        passes = _scripted_val_losses(monkeypatch, losses)
        model, log = tmp_path / f"p{patience}.safetensors", tmp_path / f"p{patience}.csv"
        train.run(_params(epochs=6, patience=patience), images=trained["images"], model=model, log=log,
                  architecture="resnet18", domain="hr", seed=0)
        runs[patience] = (len(passes), read_metadata(model), read_csv(log), _state(model))
    passes, metadata, rows, state = runs[2]
    assert passes == 4 and [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert (metadata["epochs"], metadata["epochs_run"], metadata["best_epoch"]) == (6, 4, 2)
    assert metadata["stopped_early"] is True and metadata["converged"] is True and metadata["patience"] == 2
    assert rows[-1]["stopped_early"] == "True" and rows[-1]["converged"] == "True"
    full = runs[0]
    assert full[0] == 6 and full[1]["best_epoch"] == 2 and full[1]["stopped_early"] is False
    assert state.keys() == full[3].keys() and all(torch.equal(state[k], full[3][k]) for k in state)


def test_auroc_monitor_and_min_epochs_in_the_training_loop(trained, tmp_path, monkeypatch):
    """The bicubic fine-tune's shape: the val loss flat at chance while the AUROC rises. Watching the AUROC, with no
    stop before epoch 4, training runs to epoch 7 (two epochs without a higher AUROC after epoch 5) and keeps epoch
    5; watching the loss it would have stopped at epoch 3 keeping epoch 1."""
    losses, aurocs = [0.70, 0.71, 0.72, 0.70, 0.71, 0.72, 0.73, 0.74], [0.50, 0.55, 0.60, 0.70, 0.72, 0.71, 0.72, 0.8]
    passes = _scripted_val_losses(monkeypatch, losses, aurocs)
    train.run(_params(epochs=8, patience=2, min_epochs=4, monitor="val_auroc"), images=trained["images"],
              model=tmp_path / "a.safetensors", log=tmp_path / "a.csv", architecture="resnet18", domain="hr", seed=0)
    metadata, rows = read_metadata(tmp_path / "a.safetensors"), read_csv(tmp_path / "a.csv")
    assert len(passes) == 7 and [float(r["val_auroc"]) for r in rows] == aurocs[:7]
    assert (metadata["epochs_run"], metadata["best_epoch"], metadata["converged"]) == (7, 5, True)
    assert (metadata["selection"], metadata["min_epochs"], metadata["val_auroc"]) == ("val_auroc", 4, 0.72)
    passes = _scripted_val_losses(monkeypatch, losses, aurocs)
    train.run(_params(epochs=8, patience=2), images=trained["images"], model=tmp_path / "l.safetensors",
              log=tmp_path / "l.csv", architecture="resnet18", domain="hr", seed=0)
    assert len(passes) == 3 and read_metadata(tmp_path / "l.safetensors")["best_epoch"] == 1


def test_a_run_still_improving_at_its_budget_is_not_converged(trained, tmp_path, monkeypatch):
    _scripted_val_losses(monkeypatch, [0.7, 0.6, 0.5])
    train.run(_params(epochs=3, patience=1), images=trained["images"], model=tmp_path / "m.safetensors",
              log=tmp_path / "m.csv", architecture="resnet18", domain="hr", seed=0)
    metadata = read_metadata(tmp_path / "m.safetensors")
    assert (metadata["epochs_run"], metadata["best_epoch"], metadata["stopped_early"], metadata["converged"]) == (
        3, 3, False, False)
    assert {r["converged"] for r in read_csv(tmp_path / "m.csv")} == {"False"}


def _old_run(params, images: Path, seed: int) -> dict[str, torch.Tensor]:
    """train-classifier's loop before early stopping existed, step for step: every epoch trained, the lowest
    val loss kept (ties: the earlier epoch)."""
    generator = train.seed_everything(seed)
    x_train, y_train = train.split_tensors(images, "train")
    x_val, y_val = train.split_tensors(images, "val")
    device = torch.device("cpu")
    net = build_classifier("resnet18").to(device)
    optimizer, schedule = train.optimizer_and_schedule(net, params)
    best_loss, best_state = None, {}
    for epoch in range(1, params.epochs + 1):
        train.train_epoch(net, optimizer, x_train, y_train, params, generator, device, epoch)
        schedule.step()
        if params.precise_bn:
            train.recalibrate_batchnorm(net, train.precise_bn_subset(x_train), params.batch_size, device)
        val_loss, *_ = train.evaluate_classifier(net, x_val, y_val, params.batch_size, device)
        if best_loss is None or val_loss < best_loss:
            best_loss, best_state = val_loss, copy.deepcopy(net.state_dict())
    return best_state


def test_patience_zero_keeps_the_weights_of_the_loop_without_early_stopping(trained, tmp_path):
    params = _params(epochs=3)
    train.run(params, images=trained["images"], model=tmp_path / "m.safetensors", log=tmp_path / "m.csv",
              architecture="resnet18", domain="hr", seed=0)
    new, old = _state(tmp_path / "m.safetensors"), _old_run(params, trained["images"], seed=0)
    assert new.keys() == old.keys()
    assert all(torch.equal(new[k], old[k]) for k in new), [k for k in new if not torch.equal(new[k], old[k])]


def _copy_as(model: Path, out: Path, **identity) -> Path:
    """The classifier in `model` saved again with another domain / seed in its metadata (same weights)."""
    from medsr.core.model_files import load_model_file, save_model

    state, metadata = load_model_file(model)
    save_model(out, state, {**metadata, **identity})
    return out


def test_classify_per_seed_then_merge_gives_the_file_of_one_classify_over_every_classifier(trained, tmp_path):
    """The DAG classifies each train seed in its own job and joins the files (medsr.stages.merge_predictions): the
    joined CSV is byte for byte the one a single classify over every classifier writes (architecture, domain, seed
    order), so nothing evaluate computes depends on the split."""
    from medsr.stages import merge_predictions

    models = [_copy_as(trained["model"], tmp_path / f"{d}{s}.safetensors", domain=d, seed=s)
              for d in ("hr", "bicubic") for s in (3, 1)]  # the order of classifier_files: domain, then seed
    sets = [ImageSet("hr", "hr", make_set(tmp_path / "hr"), matched="hr"),
            ImageSet("bicubic", "bicubic", make_set(tmp_path / "bicubic", seed=1), matched="bicubic")]
    params = ClassifyParams(batch_size=3)
    classify.run(params, models=models, sets=sets, out=tmp_path / "all.csv")
    for seed in (3, 1):
        classify.run(params, models=[m for m in models if m.stem.endswith(str(seed))], sets=sets,
                     out=tmp_path / f"seed{seed}.csv", seed=seed)
    merge_predictions.run(predictions=[tmp_path / "seed3.csv", tmp_path / "seed1.csv"], out=tmp_path / "joined.csv")
    joined = (tmp_path / "joined.csv").read_bytes()
    assert joined == (tmp_path / "all.csv").read_bytes()
    assert [r["train_seed"] for r in read_csv(tmp_path / "seed1.csv")] == ["1"] * ((len(joined.splitlines()) - 1) // 2)

    with pytest.raises(MedsrError, match="a classifier of train seed 1, this job classifies seed 3"):
        classify.run(params, models=models[:2], sets=sets, out=tmp_path / "bad.csv", seed=3)
    with pytest.raises(MedsrError, match="train seed 3 again"):
        merge_predictions.run(predictions=[tmp_path / "seed3.csv"] * 2, out=tmp_path / "bad.csv")
    with pytest.raises(MedsrError, match=r"rows of train seeds \['1', '3'\]"):
        merge_predictions.run(predictions=[tmp_path / "all.csv"], out=tmp_path / "bad.csv")
    with pytest.raises(MedsrError, match="seed9.csv: predictions file not found"):
        merge_predictions.run(predictions=[tmp_path / "seed9.csv"], out=tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()
