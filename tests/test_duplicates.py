"""Duplicates across train / val / test: exact (sha256) and near (pHash candidates confirmed by pixel correlation)
copies of a test image in train are an error naming both files, or dropped and counted; within a split kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsr.core import io
from medsr.stages import download
from medsr.data.duplicates import correlation, hamming, phash
from medsr.core.errors import MedsrError

from test_download import folder_params, image_tree


def smooth_image(seed: int, shape=(40, 56)) -> np.ndarray:
    """A random smooth 8-bit image (a blurred noise field), distinct per seed."""
    rng = np.random.default_rng(seed)
    field = rng.standard_normal((shape[0] // 4, shape[1] // 4))
    image = Image.fromarray(((field - field.min()) / np.ptp(field) * 255).astype(np.uint8)).resize(
        (shape[1], shape[0]), Image.Resampling.BICUBIC)
    return np.asarray(image)


def tree(root: Path) -> Path:
    """image_tree with smooth images (random noise images are never near duplicates of anything)."""
    image_tree(root, per_class=3)
    for k, path in enumerate(sorted(root.rglob("*.png"))):
        Image.fromarray(smooth_image(k)).save(path)
    return root


def test_phash_and_correlation_tell_a_perturbed_copy_from_another_image():
    image = smooth_image(0) / 255.0
    copy = np.clip(image * 1.05 + 0.02 + np.random.default_rng(0).normal(0, 0.01, image.shape), 0, 1)
    other = smooth_image(1) / 255.0
    hashes = np.array([phash(image), phash(copy), phash(other)], dtype=np.uint64)
    distances = hamming(hashes, hashes)
    assert distances[0, 0] == 0 and distances[0, 1] <= 8 < distances[0, 2]
    assert correlation(image, copy) > 0.99 > correlation(image, other)


def test_an_exact_copy_of_a_test_image_in_train_fails_naming_both_files(tmp_path):
    root = tree(tmp_path / "src")
    shutil.copy(root / "test" / "No Impairment" / "1.png", root / "train" / "No Impairment" / "copy.png")
    out = tmp_path / "hr"
    with pytest.raises(MedsrError) as info:
        download.run(folder_params(root), out)
    message = str(info.value)
    assert "\n" not in message and "exact duplicate" in message and "data.duplicates: drop" in message
    assert str(root / "test" / "No Impairment" / "1.png") in message
    assert str(root / "train" / "No Impairment" / "copy.png") in message
    assert not out.exists()


def test_drop_removes_the_train_side_of_exact_and_near_duplicates_and_counts_them(tmp_path):
    root = tree(tmp_path / "src")
    shutil.copy(root / "test" / "No Impairment" / "1.png", root / "train" / "No Impairment" / "copy.png")
    near = np.asarray(Image.open(root / "test" / "Mild Impairment" / "0.png"), dtype=np.float64)
    near = np.clip(near * 1.03 + 4 + np.random.default_rng(1).normal(0, 2, near.shape), 0, 255)
    Image.fromarray(near.astype(np.uint8)).save(root / "train" / "Mild Impairment" / "near.png")
    out = tmp_path / "hr"
    download.run(folder_params(root, duplicates="drop"), out)
    records = io.read_manifest(out)
    sources = {r.source for r in records}
    assert str(root / "train" / "No Impairment" / "copy.png") not in sources
    assert str(root / "train" / "Mild Impairment" / "near.png") not in sources
    assert str(root / "test" / "No Impairment" / "1.png") in sources  # the test side is kept
    assert len(records) == 2 * 4 * 3 and all((out / r.path).is_file() for r in records)
    assert len(list(out.rglob("*.png"))) == len(records)  # the dropped files are gone too
    counts = json.loads((out / download.SUMMARY).read_text())["duplicates"]
    assert (
        counts["dropped"] == 2 and counts["exact_pairs_across_splits"] == 1 and counts["near_pairs_across_splits"] == 1
    )
    rows = io.read_csv(out / download.DUPLICATES)
    assert sorted(r["kind"] for r in rows) == ["exact", "near"] and {r["action"] for r in rows} == {"dropped"}
    assert {r["kept_split"] for r in rows} == {"test"}

    # exact duplicates only: the near copy stays (near_duplicate_bits -1)
    download.run(folder_params(root, duplicates="drop", near_duplicate_bits=-1), tmp_path / "exact")
    assert str(root / "train" / "Mild Impairment" / "near.png") in {
        r.source for r in io.read_manifest(tmp_path / "exact")
    }


def test_duplicates_within_one_split_are_kept_and_counted(tmp_path):
    root = tree(tmp_path / "src")
    shutil.copy(root / "test" / "No Impairment" / "1.png", root / "test" / "No Impairment" / "again.png")
    out = tmp_path / "hr"
    download.run(folder_params(root), out)  # duplicates: fail, yet nothing crosses splits
    assert len(io.read_manifest(out)) == 2 * 4 * 3 + 1
    counts = json.loads((out / download.SUMMARY).read_text())["duplicates"]
    assert counts["pairs_within_a_split"] == 1 and counts["dropped"] == 0
    assert io.read_csv(out / download.DUPLICATES)[0]["action"] == "kept both (same split)"
