"""`medsr download`: the synthetic dataset, real images fitted to data.image_size, unreadable images,
missing data, and atomic outputs; in process through `download.run` and as the `medsr` CLI."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from medsr.core import io
from medsr.core.config import load_params
from medsr.core.parameters import CLASSES, FolderSource, SyntheticSource
from medsr.data import synthetic
from medsr.stages import download
from medsr.core.errors import MedsrError

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"
THESIS_CLASS_MAP = {"No Impairment": "healthy", "Very Mild Impairment": "unhealthy",
                    "Mild Impairment": "unhealthy", "Moderate Impairment": "unhealthy"}


@functools.cache
def _base_data():
    return load_params([PARAMS]).data


def synthetic_params(train_per_class=3, test_per_class=2, seed=0, image_size=32):
    return dataclasses.replace(_base_data(), source="synthetic", image_size=image_size,
                               synthetic=SyntheticSource(train_per_class, test_per_class, seed))


def folder_params(path: Path, **changes):
    return dataclasses.replace(_base_data(), source="folder", image_size=32, folder=FolderSource(str(path)),
                               class_map=dict(THESIS_CLASS_MAP), **changes)


def image_tree(root: Path, per_class: int = 2, shape=(40, 56), seed: int = 0) -> Path:
    """`root/{train,test}/<thesis class>/<i>.png`: random 8-bit grayscale images."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name in THESIS_CLASS_MAP:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def medsr_download(tmp_path: Path, out: Path, data: dict) -> subprocess.CompletedProcess:
    """`medsr download --params params.yaml --params <overlay> --out <out>` in a fresh interpreter."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"image_size": 32, **data}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE")}
    return subprocess.run([sys.executable, "-m", "medsr.cli", "download", "--params", str(PARAMS),
                           "--params", str(overlay), "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def source_split_counts(summary: dict) -> dict:
    """download.json's counts per split of the source: train + the val carved from it, and test."""
    counts = summary["counts"]
    return {"train": {k: counts["train"][k] + counts["val"][k] for k in counts["train"]}, "test": counts["test"]}


def single_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("medsr download: error: "), lines[0]
    return lines[0]


# --- data.source: synthetic -----------------------------------------------------------------

@pytest.mark.parametrize("image_size", [32, 48])
def test_synthetic_layout_sizes_and_manifest(tmp_path, image_size):
    out = tmp_path / "hr"
    download.run(synthetic_params(train_per_class=3, test_per_class=2, image_size=image_size), out)
    for split, per_class in (("train", 2), ("val", 1), ("test", 2)):  # val: round(0.15 * 3) -> at least 1
        for label in CLASSES:
            files = sorted((out / split / label).glob("*.png"))
            assert len(files) == per_class, (split, label)
            for path in files:
                with Image.open(path) as img:
                    assert img.mode == "L" and img.size == (image_size, image_size)
    assert sorted(p.name for p in out.iterdir()) == sorted(["train", "val", "test", io.MANIFEST, download.SUMMARY,
                                                            download.SKIPPED, download.DUPLICATES])
    header = (out / io.MANIFEST).read_text().splitlines()[0]
    assert header == "id,split,label,path,sha256,source,subject"
    records = io.read_manifest(out)
    assert len(records) == 10 and len({r.id for r in records}) == 10
    assert {r.path for r in records} == {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    for record in records:
        assert record.path == f"{record.split}/{record.label}/{record.id}.png"
        assert record.sha256 == sha256(out / record.path)
        assert record.source == "synthetic"
    summary = json.loads((out / download.SUMMARY).read_text())
    assert summary["source"] == "synthetic" and summary["seed"] == 0 and summary["skipped"] == 0
    assert summary["image_size"] == image_size
    assert summary["counts"] == {"train": {"healthy": 2, "unhealthy": 2}, "val": {"healthy": 1, "unhealthy": 1},
                                 "test": {"healthy": 2, "unhealthy": 2}}
    assert io.read_csv(out / download.SKIPPED) == []


def test_synthetic_images_are_not_blank(tmp_path):
    """A head on a dark background, with real contrast: not a constant or saturated image."""
    out = tmp_path / "hr"
    download.run(synthetic_params(train_per_class=2, test_per_class=1), out)
    for record in io.read_manifest(out):
        image = io.read_image(out / record.path)
        assert image.std() > 0.1, record.id
        assert image[0, 0] < 0.2 and image[16, 16] > image[0, 0]  # background corner darker than the brain
        assert (image >= 1.0).mean() < 0.01  # not clipped


def test_same_seed_gives_byte_identical_files_and_manifest(tmp_path):
    download.run(synthetic_params(seed=7), tmp_path / "a")
    download.run(synthetic_params(seed=7), tmp_path / "b")
    first, second = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert io.MANIFEST in first and len(first) == 10 + 4
    assert first == second


def test_a_different_seed_gives_different_images(tmp_path):
    download.run(synthetic_params(seed=0), tmp_path / "a")
    download.run(synthetic_params(seed=1), tmp_path / "b")
    a = {r.id: r for r in io.read_manifest(tmp_path / "a")}
    b = {r.id: r for r in io.read_manifest(tmp_path / "b")}
    assert a.keys() == b.keys()
    for image_id in a:
        assert (a[image_id].split, a[image_id].label) == (b[image_id].split, b[image_id].label)
        assert a[image_id].sha256 != b[image_id].sha256, image_id
        difference = io.read_image(tmp_path / "a" / a[image_id].path) - io.read_image(tmp_path / "b" / b[image_id].path)
        assert np.abs(difference).mean() > 0.02, image_id


def test_an_image_does_not_depend_on_the_dataset_size(tmp_path):
    download.run(synthetic_params(train_per_class=2, test_per_class=1), tmp_path / "small")
    download.run(synthetic_params(train_per_class=3, test_per_class=2), tmp_path / "large")
    small = {r.id: r.sha256 for r in io.read_manifest(tmp_path / "small")}
    large = {r.id: r.sha256 for r in io.read_manifest(tmp_path / "large")}
    assert len(small) == 6 and len(large) == 10
    assert {k: large[k] for k in small} == small


def test_unhealthy_subjects_have_larger_ventricles_and_more_lesions():
    """The generator's class difference: atrophy (ventricle size, brain surface) and white-matter lesions."""
    subjects = {label: [synthetic.subject_for(0, "train", label, i) for i in range(150)] for label in CLASSES}
    ventricles = {label: np.array([s.ventricle_scale for s in subjects[label]]) for label in CLASSES}
    difference = ventricles["unhealthy"].mean() - ventricles["healthy"].mean()
    standard_error = np.sqrt(sum(v.var(ddof=1) / len(v) for v in ventricles.values()))
    assert difference > 0.04 and difference > 3 * standard_error
    # the distributions overlap (a subtle difference), they are not separated
    assert ventricles["unhealthy"].min() < ventricles["healthy"].mean() < ventricles["unhealthy"].max()
    assert all(len(s.lesions) >= 3 for s in subjects["unhealthy"])
    assert all(len(s.lesions) <= 1 for s in subjects["healthy"])
    assert all(not s.unhealthy for s in subjects["healthy"]) and all(s.unhealthy for s in subjects["unhealthy"])


def test_unhealthy_images_have_more_dark_csf_in_the_centre(tmp_path):
    """Read from the written PNGs: atrophy shows as more dark (CSF-like) pixels in the central brain."""
    out = tmp_path / "hr"
    download.run(synthetic_params(train_per_class=30, test_per_class=1), out)
    axis = (np.arange(32) + 0.5) / 32 * 2 - 1
    centre = np.hypot(*np.meshgrid(axis, axis)) < 0.45
    dark = {label: [] for label in CLASSES}
    for record in io.read_manifest(out, split=("train", "val")):
        image = io.read_image(out / record.path)[centre]
        dark[record.label].append((image < 0.5 * np.median(image)).mean())
    dark = {label: np.array(values) for label, values in dark.items()}
    assert len(dark["healthy"]) == len(dark["unhealthy"]) == 30
    difference = dark["unhealthy"].mean() - dark["healthy"].mean()
    standard_error = np.sqrt(sum(v.var(ddof=1) / len(v) for v in dark.values()))
    assert difference > 3 * standard_error, (difference, standard_error)


def test_rendering_follows_the_drawn_subject():
    """The image of a subject is what `render` draws; enlarged ventricles darken the centre of the same head."""
    item = next(synthetic.generate(SyntheticSource(1, 1, 3), 32))
    np.testing.assert_array_equal(item.image, synthetic.render(item.subject, 32))
    larger = dataclasses.replace(item.subject, ventricle_scale=item.subject.ventricle_scale * 1.8)
    centre = slice(10, 22)
    assert synthetic.render(larger, 32)[centre, centre].mean() < item.image[centre, centre].mean() - 0.01


# --- real images fitted to data.image_size --------------------------------------------------

@pytest.mark.parametrize("resize", ["center_crop", "resize"])
def test_rgb_and_non_square_images_become_single_channel_squares(tmp_path, resize, monkeypatch):
    """Colour and odd-sized inputs of several modes: 8-bit grayscale data.image_size squares, ITU-R 601 luma."""
    # uniform images of one grey are duplicates of each other by construction: the duplicate check (tested in
    # tests/test_duplicates.py) would rightly refuse this fixture, so it is bypassed here
    monkeypatch.setattr(download.duplicates, "resolve", lambda root, records, *_: (records, [], {"dropped": 0}))
    tree = tmp_path / "alz"
    colour = (200, 100, 50)  # luma 0.299 R + 0.587 G + 0.114 B = 124.2
    inputs = {  # class folder: (mode, width x height, colour)
        "No Impairment": [("RGB", (56, 40), colour), ("RGBA", (40, 72), colour + (255,))],
        "Very Mild Impairment": [("RGB", (20, 24), colour)],
        "Mild Impairment": [("LA", (33, 31), (124, 255))],
        "Moderate Impairment": [("L", (90, 30), 124), ("I;16", (48, 64), 124 * 257)],
    }
    for split in ("train", "test"):
        for name, images in inputs.items():
            (tree / split / name).mkdir(parents=True)
            for i, (mode, size, value) in enumerate(images):
                Image.new(mode, size, value).save(tree / split / name / f"{i}.png")
    Image.new("RGB", (64, 48), colour).save(tree / "test" / "No Impairment" / "2.jpg", quality=100)
    out = tmp_path / "hr"
    download.run(folder_params(tree, resize=resize), out)
    records = io.read_manifest(out)
    assert len(records) == 2 * 6 + 1
    for record in records:
        with Image.open(out / record.path) as img:
            assert img.mode == "L" and img.size == (32, 32), record.source
            pixels = np.asarray(img, dtype=np.int16)
        assert np.abs(pixels - 124).max() <= 1, (record.source, pixels.min(), pixels.max())
        assert record.sha256 == sha256(out / record.path)
    summary = json.loads((out / download.SUMMARY).read_text())
    assert summary["resize"] == resize and summary["image_size"] == 32


def test_resize_modes_differ_on_a_wide_image(tmp_path):
    """Both modes give 32 x 32; center_crop drops the white side bands of a wide image, resize keeps them."""
    tree = image_tree(tmp_path / "alz", per_class=1, shape=(32, 32))
    wide = np.full((32, 64), 50, dtype=np.uint8)
    wide[:, :8] = wide[:, -8:] = 255
    Image.fromarray(wide).save(tree / "train" / "No Impairment" / "0.png")
    fitted = {}
    for resize in ("center_crop", "resize"):
        download.run(folder_params(tree, resize=resize), tmp_path / resize)
        record = next(r for r in io.read_manifest(tmp_path / resize)
                      if r.source.endswith(f"train{os.sep}No Impairment{os.sep}0.png"))
        fitted[resize] = io.read_image(tmp_path / resize / record.path)
        assert fitted[resize].shape == (32, 32)
    assert fitted["center_crop"].max() < 0.25
    assert fitted["resize"][:, 0].min() > 0.95 and fitted["resize"][:, -1].min() > 0.95


# --- unreadable images ----------------------------------------------------------------------

def _huge_header_png() -> bytes:
    """A PNG whose header claims 30000 x 30000 pixels: Pillow refuses it as a decompression bomb."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


BAD_IMAGES = {  # what is wrong: (file in the tree, its new bytes or None to truncate it)
    "truncated png": ("train/No Impairment/1.png", None),
    "text named .png": ("test/Mild Impairment/0.png", b"this is not an image"),
    "empty .jpg": ("test/Moderate Impairment/zz_empty.jpg", b""),
    "huge header": ("train/Very Mild Impairment/zz_huge.png", _huge_header_png()),
}


def _damage(tree: Path, kinds=tuple(BAD_IMAGES)) -> list[Path]:
    """Unreadable files in a good tree (damaged in place or added); returns their paths."""
    paths = []
    for kind in kinds:
        relative, content = BAD_IMAGES[kind]
        path = tree / relative
        path.write_bytes(path.read_bytes()[:60] if content is None else content)
        paths.append(path)
    return paths


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_an_unreadable_image_is_fatal_with_fail(tmp_path, kind):
    tree = image_tree(tmp_path / "alz", per_class=2)
    [bad] = _damage(tree, [kind])
    out = tmp_path / "work" / "hr"
    with pytest.raises(MedsrError) as excinfo:
        download.run(folder_params(tree, on_bad_image="fail"), out)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}: unreadable image") and "data.on_bad_image: skip" in message
    assert not out.exists() and list((tmp_path / "work").iterdir()) == []


def test_unreadable_images_are_skipped_counted_and_listed_with_skip(tmp_path, capsys):
    tree = image_tree(tmp_path / "alz", per_class=2)
    bad = _damage(tree)
    out = tmp_path / "hr"
    download.run(folder_params(tree, on_bad_image="skip"), out)
    records = io.read_manifest(out)
    assert len(records) == 16 - 2  # 16 good files, two of them damaged; two unreadable files added
    sources = {Path(r.source) for r in records}
    assert not sources & set(bad)
    summary = json.loads((out / download.SUMMARY).read_text())
    assert summary["skipped"] == 4 and summary["images"] == 14
    assert source_split_counts(summary) == {"train": {"healthy": 1, "unhealthy": 6},
                                            "test": {"healthy": 2, "unhealthy": 5}}
    skipped = io.read_csv(out / download.SKIPPED)
    assert sorted(Path(row["path"]) for row in skipped) == sorted(bad)
    reasons = {Path(row["path"]).name: row["reason"] for row in skipped}
    assert all(reasons.values()) and "DecompressionBombError" in reasons["zz_huge.png"]
    assert "skipped 4 unreadable image(s)" in capsys.readouterr().err


def test_skipping_every_image_of_a_label_is_an_error(tmp_path):
    tree = image_tree(tmp_path / "alz", per_class=1)
    for path in (tree / "test" / "No Impairment").iterdir():
        path.write_bytes(b"junk")
    with pytest.raises(MedsrError, match="no readable healthy images") as excinfo:
        download.run(folder_params(tree, on_bad_image="skip"), tmp_path / "hr")
    assert str(tree / "test") in str(excinfo.value) and "1 unreadable" in str(excinfo.value)
    assert not (tmp_path / "hr").exists()


def test_cli_exits_non_zero_naming_an_unreadable_image(tmp_path):
    tree = image_tree(tmp_path / "alz", per_class=1)
    bad = tree / "test" / "Very Mild Impairment" / "0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "hr"
    result = medsr_download(tmp_path, out, {"source": "folder", "folder": {"path": str(tree)},
                                            "on_bad_image": "fail"})
    assert result.returncode == 2
    assert str(bad) in single_error_line(result)
    assert not out.exists()


# --- missing data and atomic outputs --------------------------------------------------------

def _good_output(out: Path) -> dict[str, bytes]:
    download.run(synthetic_params(train_per_class=1, test_per_class=1), out)
    return snapshot(out)


@pytest.mark.parametrize("problem", ["missing", "empty", "empty splits"])
def test_cli_missing_or_empty_data_folder_fails_and_keeps_the_old_output(tmp_path, problem):
    folder = tmp_path / "alz"
    if problem != "missing":
        folder.mkdir()
    if problem == "empty splits":
        (folder / "train" / "No Impairment").mkdir(parents=True)
        (folder / "test" / "No Impairment").mkdir(parents=True)
    out = tmp_path / "data" / "hr"
    before = _good_output(out)
    result = medsr_download(tmp_path, out, {"source": "folder", "folder": {"path": str(folder)}})
    line = single_error_line(result)
    expected = {"missing": f"{folder}: data folder is missing", "empty": f"{folder}: data folder is empty",
                "empty splits": f"{folder / 'test'}: no images"}[problem]
    assert expected in line
    assert snapshot(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["hr"]  # no temporary folder left beside it


def test_a_failure_after_images_were_written_leaves_the_old_output(tmp_path):
    """The bad image sits in the test split, so the train images are already written when it fails."""
    tree = image_tree(tmp_path / "alz", per_class=2)
    (tree / "test" / "Moderate Impairment" / "1.png").write_bytes(b"junk")
    out = tmp_path / "data" / "hr"
    before = _good_output(out)
    with pytest.raises(MedsrError, match="Moderate Impairment"):
        download.run(folder_params(tree, on_bad_image="fail"), out)
    assert snapshot(out) == before
    assert [p.name for p in out.parent.iterdir()] == ["hr"]


def test_a_successful_run_replaces_the_old_output_whole(tmp_path):
    out = tmp_path / "data" / "hr"
    _good_output(out)
    (out / "stale.txt").write_text("from an older run")
    download.run(folder_params(image_tree(tmp_path / "alz", per_class=1)), out)
    assert not (out / "stale.txt").exists()
    assert {r.source for r in io.read_manifest(out)} != {"synthetic"}
    assert [p.name for p in out.parent.iterdir()] == ["hr"]


def test_cli_writes_what_the_stage_function_writes(tmp_path):
    """`medsr download` wires params.yaml + an overlay to `download.run`: byte-identical output, exit 0."""
    synthetic_section = {"train_per_class": 2, "test_per_class": 1, "seed": 5}
    result = medsr_download(tmp_path, tmp_path / "cli", {"source": "synthetic", "synthetic": synthetic_section})
    assert result.returncode == 0, result.stderr
    assert "medsr download: done" in result.stderr
    download.run(synthetic_params(train_per_class=2, test_per_class=1, seed=5), tmp_path / "direct")
    assert snapshot(tmp_path / "cli") == snapshot(tmp_path / "direct")
