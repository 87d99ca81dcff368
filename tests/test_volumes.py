"""data.source nifti | dicom: volumes written by the tests (nibabel, pydicom) cut into slices, split by subject,
bad volumes named or skipped, and the stages download -> degrade (kspace) -> train-classifier run on them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from medsr.core import io
from medsr.stages import train_classifier
from medsr.core.config import load_params
from medsr.core.parameters import SPLITS, TrainClassifierParams
from medsr.data import volumes
from medsr.stages import download
from medsr.stages.degrade import run as degrade
from medsr.core.errors import MedsrError

from volume_data import SHAPE, dicom_dataset, head, nifti_dataset, write_csv, write_dicom_series, write_nifti

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params([ROOT / "params.yaml", ROOT / "configs/smoke.yaml"])


def volume_params(source: str, path: Path, **changes):
    volume_changes = {k: changes.pop(k) for k in list(changes) if k in
                      {f.name for f in dataclasses.fields(PARAMS.data.volumes)}}
    volume_changes = {"slices_per_subject": 3, "min_brain_fraction": 0.1, **volume_changes}
    vols = dataclasses.replace(PARAMS.data.volumes, path=str(path), **volume_changes)
    return dataclasses.replace(PARAMS.data, source=source, volumes=vols, **changes)


def subjects_by_split(records: list[io.Record]) -> dict[str, set[str]]:
    return {split: {r.subject for r in records if r.split == split} for split in SPLITS}


def test_nifti_and_dicom_run_download_degrade_and_train_with_subject_splits(tmp_path):
    """The acceptance path on both volume sources: every split has both classes and no subject is in two splits;
    the slices of one subject all come from its volume; LR by the kspace model; a classifier trains on them."""
    for source, make in (("nifti", nifti_dataset), ("dicom", dicom_dataset)):
        rows = make(tmp_path / source / "in", per_class=4)
        out = tmp_path / source / "hr"
        download.run(volume_params(source, tmp_path / source / "in"), out)
        records = io.read_manifest(out)
        by_split = subjects_by_split(records)
        assert all(by_split[split] for split in SPLITS)
        assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                    or by_split["val"] & by_split["test"])  # subject-level splits
        assert set().union(*by_split.values()) == {subject for subject, _ in rows}
        label_of = dict(rows)
        for record in records:
            assert record.label == label_of[record.subject]
            assert f"{record.subject}" in record.source and "#axial=" in record.source
        for split in SPLITS:
            assert {r.label for r in records if r.split == split} == {"healthy", "unhealthy"}
        assert sum(r.subject == "sub-00" for r in records) == 3  # slices_per_subject
        summary = json.loads((out / download.SUMMARY).read_text())
        assert summary["source"] == source and summary["subjects"] == {s: len(by_split[s]) for s in SPLITS}
        assert "by subject" in summary["val"]["from"]

    hr = tmp_path / "dicom" / "hr"
    kspace = dataclasses.replace(PARAMS.degrade, model="kspace", kspace_window="hamming")
    degrade(kspace, hr=hr, lr=tmp_path / "lr", bicubic=tmp_path / "bicubic")
    lr_records = io.read_manifest(tmp_path / "lr")
    assert [(r.id, r.subject) for r in lr_records] == [(r.id, r.subject) for r in io.read_manifest(hr)]
    assert io.load_images(tmp_path / "lr", lr_records).shape[1:] == (PARAMS.data.image_size // 2,) * 2
    assert json.loads((tmp_path / "lr" / "metadata.json").read_text())["model"] == "kspace"
    params = TrainClassifierParams(
        architectures=("resnet18",),
        epochs=1,
        batch_size=8,
        learning_rate=1e-3,
        lr_schedule="constant",
        weight_decay=0.0,
        hflip=False,
        crop=0,
        precise_bn=True,
        patience=0,
        min_epochs=0,
        monitor="val_loss",
    )
    train_classifier.run(params, images=tmp_path / "bicubic", model=tmp_path / "clf.safetensors",
                         log=tmp_path / "clf.csv", architecture="resnet18", domain="bicubic", seed=0)
    assert (tmp_path / "clf.safetensors").stat().st_size > 0 and len(io.read_csv(tmp_path / "clf.csv")) == 1


def test_dicom_series_reads_like_the_nifti_of_the_same_volume_in_16_bit(tmp_path):
    """A 16-bit series with a rescale slope, files named against slice order: the same RAS volume as NIfTI."""
    volume = head(True, seed=3, peak=4000.0)
    write_dicom_series(tmp_path / "s", volume, slope=2.0, intercept=-10.0)
    series = volumes.read_dicom_series(tmp_path / "s")
    expected = 2.0 * np.clip(np.rint((volume + 10.0) / 2.0), 0, 65535) - 10.0
    np.testing.assert_array_equal(series.array, expected.astype(np.float32))
    assert series.spacing == (1.0, 1.0, 2.0) and not series.oblique
    nifti = volumes.read_nifti(write_nifti(tmp_path / "v.nii.gz", volume))
    assert nifti.array.shape == series.array.shape == SHAPE


def test_an_oblique_affine_is_reoriented_to_the_closest_ras_axes(tmp_path):
    """Stored as (z, -x, y) with a 20 degree tilt: read back in RAS order, marker in the right-anterior corner."""
    volume = head(False, seed=1)
    stored = np.transpose(volume[::-1], (2, 0, 1))  # voxel axes: z, -x, y
    angle = np.deg2rad(20)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    columns = np.array([[0, 0, 2.0], [-1.0, 0, 0], [0, 1.0, 0]]).T  # voxel axis -> RAS direction * spacing
    affine = np.eye(4)
    affine[:3, :3] = tilt @ columns
    read = volumes.read_nifti(write_nifti(tmp_path / "oblique.nii.gz", stored, affine))
    assert read.oblique
    np.testing.assert_array_equal(read.array, volume)
    data = volume_params("nifti", tmp_path, slices_per_subject=1)
    (image,) = volumes.volume_slices(data, "s", "healthy", read)
    assert image.source.endswith(",oblique")
    (straight,) = volumes.volume_slices(data, "s", "healthy", volumes.Volume(volume, (1.0, 1.0, 2.0), False, tmp_path))
    np.testing.assert_array_equal(image.image, straight.image)
    size = data.image_size
    corner = image.image[: size // 3, 2 * size // 3:]  # anterior is up, right is on the right of the image
    assert corner.max() == pytest.approx(1.0, abs=1e-6)  # the marker (the volume's top percentile)
    assert image.image[2 * size // 3:, : size // 3].max() < 0.95  # head texture only (<= 0.8 of the peak)


@pytest.mark.parametrize("source", ["nifti", "dicom"])
def test_bad_volumes_fail_with_the_file_named_or_are_skipped_and_counted(tmp_path, source):
    """A volume with no brain slice, a subject of the CSV missing on disk, and (dicom) a series with an unreadable
    file: each a one-line error naming the file (nothing written), or skipped and listed with on_bad_image: skip."""
    root = tmp_path / "in"
    rows = (nifti_dataset if source == "nifti" else dicom_dataset)(root, per_class=4)
    empty = np.zeros(SHAPE, dtype=np.float32)
    if source == "nifti":
        write_nifti(root / "blank.nii.gz", empty)
        bad_file = root / "blank.nii.gz"
    else:
        write_dicom_series(root / "blank", empty)
        damaged = sorted((root / "sub-01").iterdir())[4]
        damaged.write_bytes(b"not a dicom file")
        bad_file = root / "blank"
    write_csv(root / "subjects.csv", rows + [("blank", "healthy"), ("ghost", "unhealthy")])
    out = tmp_path / "hr"
    expected_first = damaged if source == "dicom" else bad_file
    with pytest.raises(MedsrError) as info:
        download.run(volume_params(source, root), out)
    message = str(info.value)
    assert "\n" not in message and str(expected_first) in message and "on_bad_image" in message
    assert not out.exists()

    download.run(volume_params(source, root, on_bad_image="skip"), out)
    skipped = io.read_csv(out / download.SKIPPED)
    paths = {row["path"] for row in skipped}
    assert str(bad_file) in paths and str(root / "ghost") in paths
    if source == "dicom":
        assert str(damaged) in {row["path"] for row in skipped} or any(str(damaged) in r["reason"] for r in skipped)
        assert len(skipped) == 3
    else:
        assert len(skipped) == 2
    assert json.loads((out / download.SUMMARY).read_text())["skipped"] == len(skipped)
    subjects = {r.subject for r in io.read_manifest(out)}
    assert "blank" not in subjects and "ghost" not in subjects
    if source == "dicom":
        assert "sub-01" not in subjects  # the series with the unreadable file is left out whole


def test_subjects_csv_errors_name_the_file_and_line(tmp_path):
    nifti_dataset(tmp_path, per_class=1)
    write_csv(tmp_path / "subjects.csv", [("sub-00", "healthy"), ("sub-01", "sick")])
    with pytest.raises(MedsrError, match=r"subjects.csv: line 3: .*'sick'"):
        download.run(volume_params("nifti", tmp_path), tmp_path / "hr")
    write_csv(tmp_path / "subjects.csv", [("sub-00", "healthy"), ("sub-00", "unhealthy")])
    with pytest.raises(MedsrError, match="listed twice"):
        download.run(volume_params("nifti", tmp_path), tmp_path / "hr")


def test_slice_selection_keeps_brain_slices_in_range_evenly_spaced():
    params = dataclasses.replace(PARAMS.data.volumes, axis="axial", slice_range=(0.0, 1.0), min_brain_fraction=0.2,
                                 slices_per_subject=3)
    volume = volumes.normalise(head(False, seed=0), params.percentiles)
    candidates = volumes.candidate_slices(volume, params)
    fractions = (volume > volumes.FOREGROUND).mean(axis=(0, 1))
    assert candidates == [k for k in range(SHAPE[2]) if fractions[k] >= 0.2]
    assert 0 < len(candidates) < SHAPE[2]
    picked = volumes.pick(candidates, 3)
    assert len(picked) == 3 and picked == sorted(set(picked)) and set(picked) <= set(candidates)
    upper = dataclasses.replace(params, slice_range=(0.5, 1.0))
    assert all(k >= SHAPE[2] // 2 for k in volumes.candidate_slices(volume, upper))
    assert volumes.candidate_slices(np.zeros(SHAPE, np.float32), params) == []


def test_percentile_normalisation_maps_the_window_to_unit_range():
    volume = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    out = volumes.normalise(volume, (1.0, 99.0))
    low, high = np.percentile(volume, [1.0, 99.0])
    assert out.min() == 0.0 and out.max() == 1.0
    inside = (volume > low) & (volume < high)
    np.testing.assert_allclose(out[inside], (volume[inside] - low) / (high - low), rtol=1e-6)


def test_an_unreadable_nifti_file_is_named(tmp_path):
    """An unreadable .nii.gz is a one-line error naming it."""
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(MedsrError, match="broken.nii.gz: unreadable NIfTI volume") as info:
        volumes.read_nifti(bad)
    assert "\n" not in str(info.value)
