"""Carving val / test by subject: no subject in two splits, stratified by class, seeded; without subjects the
carving is the image-level one of older manifests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medsr.core import io
from medsr.data.splits import carve, carve_val
from medsr.core.errors import MedsrError


def test_no_subject_is_split_and_each_class_gives_subjects():
    subjects = [f"s{k}" for k in range(12) for _ in range(4)]  # 12 subjects x 4 slices
    labels = ["healthy" if int(s[1:]) % 2 else "unhealthy" for s in subjects]
    for seed in range(5):
        mask = carve(labels, 0.25, seed, subjects, stream="test-split")
        carved = {s for s, m in zip(subjects, mask) if m}
        kept = {s for s, m in zip(subjects, mask) if not m}
        assert carved and kept and not carved & kept
        assert {labels[subjects.index(s)] for s in carved} == {"healthy", "unhealthy"}
        assert len(carved) == 4  # round(0.25 x 6) = 2 subjects per class
    assert not np.array_equal(carve(labels, 0.25, 0, subjects), carve(labels, 0.25, 1, subjects))
    np.testing.assert_array_equal(carve(labels, 0.25, 4, subjects), carve(labels, 0.25, 4, subjects))


def test_without_subjects_the_carving_is_by_image_as_before():
    labels = ["healthy"] * 7 + ["unhealthy"] * 9
    np.testing.assert_array_equal(carve_val(labels, 0.3, 5), carve_val(labels, 0.3, 5, subjects=[""] * 16))
    assert carve_val(labels, 0.3, 5).sum() == round(0.3 * 7) + round(0.3 * 9)


def test_a_subject_with_two_labels_is_an_error():
    with pytest.raises(MedsrError, match="subject 'x'"):
        carve(["healthy", "unhealthy", "healthy"], 0.5, 0, ["x", "x", "y"])


def test_old_manifests_without_a_subject_column_read_with_each_image_its_own_subject(tmp_path):
    (tmp_path / "manifest.csv").write_text("id,split,label,path,sha256,source\na,train,healthy,a.png,,\n")
    (tmp_path / "a.png").write_bytes(b"")
    (record,) = io.read_manifest(tmp_path)
    assert record.subject == "" and record.unit == "image:a"
    io.write_manifest(tmp_path / "new", [io.Record("b", "test", "healthy", "b.png", "", "", "sub-1")])
    assert io.read_manifest(tmp_path / "new", allow_empty=True)[0].unit == "sub-1"


def test_evaluate_hands_the_bootstrap_the_test_images_subjects_from_the_hr_manifest(tmp_path):
    from medsr.stages.evaluate import subjects_of_test_images
    from medsr.data.image_sets import ImageSet

    records = [io.Record("t0", "test", "healthy", "t0.png", "", "", "sub-1"),
               io.Record("t1", "test", "healthy", "t1.png", "", "", "sub-1"),
               io.Record("t2", "test", "unhealthy", "t2.png", "", "", ""),
               io.Record("v0", "val", "healthy", "v0.png", "", "", "sub-2")]
    io.write_manifest(tmp_path / "hr", records)
    hr = ImageSet("hr", "hr", tmp_path / "hr")
    assert subjects_of_test_images(hr, ["t2", "t0", "t1"]) == ["image:t2", "sub-1", "sub-1"]
    io.write_manifest(tmp_path / "old", [dataclasses.replace(r, subject="") for r in records])
    assert subjects_of_test_images(ImageSet("hr", "hr", tmp_path / "old"), ["t0", "t1", "t2"]) is None
