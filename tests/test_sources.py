"""Real image sources (folder | url | kaggle) and safe archive extraction, all offline.

The two network calls, `sources.fetch` (url) and `sources.kaggle_download` (kaggle), are replaced by
functions that copy archives these tests build; every archive, malicious ones included, is built here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io as bytes_io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsr.core import io
from medsr.core.config import load_params
from medsr.core.parameters import FolderSource, KaggleSource, UrlSource
from medsr.data import sources
from medsr.stages import download
from medsr.data.archive import extract
from medsr.core.errors import MedsrError

ROOT = Path(__file__).resolve().parents[1]
THESIS_CLASS_MAP = {"No Impairment": "healthy", "Very Mild Impairment": "unhealthy",
                    "Mild Impairment": "unhealthy", "Moderate Impairment": "unhealthy"}
KAGGLE_ENV = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME")


@functools.cache
def _base_data():
    return load_params([ROOT / "params.yaml"]).data


def data_params(**changes):
    """params.yaml's data section, at 32 px with the thesis class map, plus `changes`."""
    changes = {"image_size": 32, "class_map": dict(THESIS_CLASS_MAP), **changes}
    return dataclasses.replace(_base_data(), **changes)


def image_tree(root: Path, per_class: int = 2, classes=tuple(THESIS_CLASS_MAP), shape=(40, 56),
               suffix: str = ".png", seed: int = 0) -> Path:
    """An ImageFolder tree `root/{train,test}/<class>/<i><suffix>` of random 8-bit grayscale images."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}{suffix}")
    return root


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def tar_folder(folder: Path, archive: Path, prefix: str = "", mode: str = "w:gz") -> Path:
    with tarfile.open(archive, mode) as tf:
        for path in sorted(folder.rglob("*")):
            tf.add(path, prefix + path.relative_to(folder).as_posix(), recursive=False)
    return archive


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def source_split(split: str) -> str:
    """The source folder an image came from: val is carved from the source's train folder."""
    return "train" if split == "val" else split


def source_split_counts(summary: dict) -> dict:
    counts = summary["counts"]
    return {"train": {k: counts["train"][k] + counts["val"][k] for k in counts["train"]}, "test": counts["test"]}


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# --- params ---------------------------------------------------------------------------------

def test_params_yaml_maps_the_thesis_classes():
    """No Impairment is healthy; the three impairment stages are unhealthy (the thesis's binary task)."""
    assert _base_data().class_map == THESIS_CLASS_MAP
    assert _base_data().source == "mni"


# --- fitting images to data.image_size ------------------------------------------------------

@pytest.mark.parametrize("mode", ["center_crop", "resize"])
@pytest.mark.parametrize("shape", [(40, 56), (56, 40), (20, 24), (32, 32)])
def test_fit_to_size_gives_a_square_image_in_range(mode, shape):
    image = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    fitted = sources.fit_to_size(image, 32, mode)
    assert fitted.shape == (32, 32)
    assert fitted.min() >= 0.0 and fitted.max() <= 1.0


def test_center_crop_drops_the_sides_while_resize_keeps_them():
    """A wide image with white bands at both ends: center_crop cuts them off, resize squeezes them in."""
    wide = np.full((32, 64), 0.2, dtype=np.float32)
    wide[:, :8] = wide[:, -8:] = 1.0
    cropped = sources.fit_to_size(wide, 32, "center_crop")
    resized = sources.fit_to_size(wide, 32, "resize")
    np.testing.assert_allclose(cropped, 0.2, atol=1e-5)  # scale 1, columns 16..47: all grey
    assert resized[:, 0].min() > 0.95 and resized[:, -1].min() > 0.95
    assert abs(resized[:, 16].mean() - 0.2) < 1e-3


def test_center_crop_keeps_the_aspect_ratio():
    """A tall image's horizontal gradient survives center_crop unstretched (scale = 32 / width)."""
    tall = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (128, 1))  # 128 x 64, value = column / 63
    cropped = sources.fit_to_size(tall, 32, "center_crop")
    assert cropped.shape == (32, 32)
    np.testing.assert_allclose(cropped[0], cropped[-1], atol=1e-5)  # rows are the same: no vertical change
    assert cropped[0, 0] < 0.05 and cropped[0, -1] > 0.95  # the whole width is kept


# --- the ImageFolder tree -------------------------------------------------------------------

def test_folder_source_maps_thesis_classes_to_labels(tmp_path):
    tree = image_tree(tmp_path / "alz", per_class=1)
    located = sources.locate(data_params(source="folder", folder=FolderSource(str(tree))), tmp_path / "work")
    assert located.root == tree
    images = sources.list_images(located, THESIS_CLASS_MAP)
    assert len(images) == 8
    for item in images:
        assert item.label == THESIS_CLASS_MAP[item.class_name]
        assert item.path.parent.name == item.class_name and item.path.parent.parent.name == item.split
        assert item.source == str(item.path)
    order = [(("train", "test").index(i.split), i.class_name) for i in images]
    assert order == sorted(order) and [i.split for i in images] == ["train"] * 4 + ["test"] * 4


def test_a_class_folder_missing_from_class_map_is_named(tmp_path):
    tree = image_tree(tmp_path / "alz", per_class=1, classes=("No Impairment", "Mild Impairment", "Severe"))
    located = sources.locate(data_params(source="folder", folder=FolderSource(str(tree))), tmp_path / "work")
    with pytest.raises(MedsrError) as excinfo:
        sources.list_images(located, THESIS_CLASS_MAP)
    message = one_line_error(excinfo)
    assert "'Severe'" in message and "data.class_map" in message
    assert "No Impairment" in message  # says what is mapped


def test_a_split_without_one_label_is_refused(tmp_path):
    tree = image_tree(tmp_path / "alz", per_class=1)
    for name in ("Very Mild Impairment", "Mild Impairment", "Moderate Impairment"):
        shutil.rmtree(tree / "train" / name)
    located = sources.locate(data_params(source="folder", folder=FolderSource(str(tree))), tmp_path / "work")
    with pytest.raises(MedsrError, match="no unhealthy images") as excinfo:
        sources.list_images(located, THESIS_CLASS_MAP)
    assert str(tree / "train") in one_line_error(excinfo)


def test_the_split_root_is_found_up_to_two_levels_down(tmp_path):
    tree = image_tree(tmp_path / "download" / "Best Alzheimer" / "Combined Dataset", per_class=1)
    (tmp_path / "download" / "__MACOSX" / "train").mkdir(parents=True)  # ignored, as are hidden folders
    (tmp_path / "download" / "__MACOSX" / "test").mkdir()
    (tmp_path / "download" / ".cache" / "x" / "train").mkdir(parents=True)
    (tmp_path / "download" / ".cache" / "x" / "test").mkdir()
    assert sources.find_split_root(tmp_path / "download", "data.folder.path") == tree
    (tmp_path / "deeper" / "a" / "b").mkdir(parents=True)
    image_tree(tmp_path / "deeper" / "a" / "b" / "c", per_class=1)
    with pytest.raises(MedsrError, match="no train/ and test/ folders"):
        sources.find_split_root(tmp_path / "deeper", "data.folder.path")


def test_split_folders_match_case_insensitively(tmp_path):
    tree = image_tree(tmp_path / "alz", per_class=1)
    (tree / "train").rename(tree / "Train")
    (tree / "test").rename(tree / "TEST")
    located = sources.locate(data_params(source="folder", folder=FolderSource(str(tree))), tmp_path / "work")
    images = sources.list_images(located, THESIS_CLASS_MAP)
    assert [i.split for i in images] == ["train"] * 4 + ["test"] * 4
    assert images[0].path.parent.parent.name == "Train"


def test_two_candidate_split_roots_are_ambiguous(tmp_path):
    image_tree(tmp_path / "both" / "one", per_class=1)
    image_tree(tmp_path / "both" / "two", per_class=1)
    with pytest.raises(MedsrError, match="several train/ \\+ test/ pairs") as excinfo:
        sources.find_split_root(tmp_path / "both", "data.folder.path")
    assert "data.folder.path" in one_line_error(excinfo)


def test_hidden_files_and_non_images_are_not_listed(tmp_path):
    tree = image_tree(tmp_path / "alz", per_class=1)
    (tree / "train" / "No Impairment" / ".DS_Store").write_bytes(b"\0")
    (tree / "train" / "No Impairment" / "._0.png").write_bytes(b"\0")  # macOS resource fork
    (tree / "train" / "No Impairment" / "notes.txt").write_text("not an image")
    (tree / "train" / ".hidden class").mkdir()
    located = sources.locate(data_params(source="folder", folder=FolderSource(str(tree))), tmp_path / "work")
    names = [i.path.name for i in sources.list_images(located, THESIS_CLASS_MAP)]
    assert names.count("0.png") == 8 and len(names) == 8


def test_empty_folder_path_names_the_key(tmp_path):
    with pytest.raises(MedsrError, match="data.folder.path"):
        sources.locate(data_params(source="folder", folder=FolderSource("")), tmp_path)


def test_folder_source_through_the_stage(tmp_path):
    """folder -> download.run: labels from class_map, source paths, sha256 and sizes in the manifest."""
    tree = image_tree(tmp_path / "alz", per_class=2, suffix=".jpg")
    out = tmp_path / "hr"
    download.run(data_params(source="folder", folder=FolderSource(str(tree))), out)
    records = io.read_manifest(out)
    assert len(records) == 16
    for record in records:
        source = Path(record.source)
        assert source.is_file() and source.parent.parent.parent == tree
        assert (
            record.label == THESIS_CLASS_MAP[source.parent.name]
            and source_split(record.split) == source.parent.parent.name
        )
        assert record.path == f"{record.split}/{record.label}/{record.id}.png"
        assert record.sha256 == sha256(out / record.path)
        assert io.read_image(out / record.path).shape == (32, 32)
    summary = json.loads((out / download.SUMMARY).read_text())
    assert summary["source"] == "folder" and summary["path"] == str(tree)
    assert source_split_counts(summary) == {"train": {"healthy": 2, "unhealthy": 6},
                                            "test": {"healthy": 2, "unhealthy": 6}}


# --- safe extraction ------------------------------------------------------------------------

def _sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """archive folder and extraction target, both inside tmp_path/box, with a bystander file beside them."""
    box = tmp_path / "box"
    box.mkdir()
    (box / "bystander.txt").write_text("keep")
    return box, box / "target"


def _assert_nothing_written(tmp_path: Path, box: Path, target: Path, before: set[str]) -> None:
    assert not target.exists() or files_under(target) == set()
    assert files_under(tmp_path) == before | ({"box/target"} if target.exists() else set())
    assert (box / "bystander.txt").read_text() == "keep"


ZIP_ATTACKS = {
    "dotdot": ("../evil.txt", None),
    "nested dotdot": ("train/../../evil.txt", None),
    "absolute": ("{tmp}/abs_evil.txt", None),
    "windows drive": ("C:\\evil.txt", None),
    "backslash dotdot": ("..\\evil.txt", None),
    "symlink": ("train/link", stat.S_IFLNK | 0o777),
    "fifo": ("train/pipe", stat.S_IFIFO | 0o644),
}


@pytest.mark.parametrize("attack", list(ZIP_ATTACKS))
def test_zip_entries_that_escape_are_refused_before_anything_is_written(tmp_path, attack):
    name, mode = ZIP_ATTACKS[attack]
    name = name.format(tmp=tmp_path)
    box, target = _sandbox(tmp_path)
    archive = box / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/healthy/fine.txt", b"an innocent first entry")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, b"../../../outside" if mode else b"evil")
    before = files_under(tmp_path)
    with pytest.raises(MedsrError) as excinfo:
        extract(archive, target)
    message = one_line_error(excinfo)
    assert repr(name) in message and str(archive) in message
    _assert_nothing_written(tmp_path, box, target, before)
    assert not (tmp_path / "abs_evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def _tar_attack(attack: str, tmp: Path) -> list[tarfile.TarInfo]:
    def member(name, kind=tarfile.REGTYPE, link=""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        return info

    return {
        "dotdot": [member("../evil.txt")],
        "nested dotdot": [member("./train/../../evil.txt")],
        "absolute": [member(f"{tmp}/abs_evil.txt")],
        "symlink out": [member("train/link", tarfile.SYMTYPE, "/etc")],
        "symlink then write through it": [member("escape", tarfile.SYMTYPE, ".."), member("escape/evil.txt")],
        "symlink inside": [member("train/link", tarfile.SYMTYPE, "healthy")],
        "hardlink": [member("train/hard", tarfile.LNKTYPE, "../../outside.txt")],
        "device": [member("train/dev", tarfile.CHRTYPE)],
        "fifo": [member("train/pipe", tarfile.FIFOTYPE)],
    }[attack]


TAR_ATTACKS = ["dotdot", "nested dotdot", "absolute", "symlink out", "symlink then write through it",
               "symlink inside", "hardlink", "device", "fifo"]


@pytest.mark.parametrize("compression", ["", "gz"])
@pytest.mark.parametrize("attack", TAR_ATTACKS)
def test_tar_entries_that_escape_are_refused_before_anything_is_written(tmp_path, attack, compression):
    box, target = _sandbox(tmp_path)
    archive = box / ("evil.tar.gz" if compression else "evil.tar")
    members = _tar_attack(attack, tmp_path)
    with tarfile.open(archive, f"w:{compression}") as tf:
        fine = tarfile.TarInfo("train/healthy/fine.txt")
        fine.size = 4
        tf.addfile(fine, bytes_io.BytesIO(b"fine"))
        for info in members:
            data = b"evil" if info.isfile() else None
            if data is not None:
                info.size = len(data)
            tf.addfile(info, bytes_io.BytesIO(data) if data is not None else None)
    before = files_under(tmp_path)
    with pytest.raises(MedsrError) as excinfo:
        extract(archive, target)
    message = one_line_error(excinfo)
    assert repr(members[0].name) in message and str(archive) in message
    if members[0].issym() or members[0].islnk():
        assert "link" in message
    _assert_nothing_written(tmp_path, box, target, before)
    assert not (tmp_path / "abs_evil.txt").exists() and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"])
def test_good_archives_unpack_byte_for_byte(tmp_path, kind):
    tree = image_tree(tmp_path / "tree", per_class=1, classes=("No Impairment", "Mild Impairment"))
    archive = tmp_path / f"data.{kind}"
    if kind == "zip":
        zip_folder(tree, archive, prefix="./")
    else:
        tar_folder(tree, archive, prefix="./", mode={"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2",
                                                    "tar.xz": "w:xz"}[kind])
    extract(archive, tmp_path / "out")
    assert files_under(tmp_path / "out") == files_under(tree)
    for path in tree.rglob("*.png"):
        assert (tmp_path / "out" / path.relative_to(tree)).read_bytes() == path.read_bytes()


def test_not_an_archive_is_named(tmp_path):
    bogus = tmp_path / "data.zip"
    bogus.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(MedsrError, match="not a zip or tar archive") as excinfo:
        extract(bogus, tmp_path / "out")
    assert str(bogus) in one_line_error(excinfo)


def test_a_truncated_tar_gz_is_reported_as_damaged(tmp_path):
    tree = image_tree(tmp_path / "tree", per_class=2, classes=("No Impairment", "Mild Impairment"))
    archive = tar_folder(tree, tmp_path / "data.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(MedsrError) as excinfo:
        extract(archive, tmp_path / "out")
    assert str(archive) in one_line_error(excinfo)


# --- data.source: url -----------------------------------------------------------------------

def _fake_fetch(monkeypatch, archive: Path) -> list[str]:
    """Replace the network call with a copy of `archive`; returns the list of URLs asked for."""
    asked = []

    def fetch(url, dest):
        asked.append(url)
        shutil.copyfile(archive, dest)

    monkeypatch.setattr(sources, "fetch", fetch)
    return asked


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_url_archive_is_verified_unpacked_and_processed_like_a_folder(tmp_path, monkeypatch, kind):
    tree = image_tree(tmp_path / "tree", per_class=1)
    pack = zip_folder if kind == "zip" else tar_folder
    archive = pack(tree, tmp_path / f"alz.{kind}", prefix="Combined Dataset/")
    asked = _fake_fetch(monkeypatch, archive)
    url = f"https://example.org/alz.{kind}"
    out = tmp_path / "hr"
    download.run(data_params(source="url", url=UrlSource(url, sha256(archive).upper())), out)
    assert asked == [url]
    records = io.read_manifest(out)
    assert len(records) == 8
    for record in records:
        assert record.source.startswith(f"{url}#Combined Dataset/{source_split(record.split)}/")
        class_name = record.source.split("/")[-2]
        assert record.label == THESIS_CLASS_MAP[class_name]
        assert record.sha256 == sha256(out / record.path)
    summary = json.loads((out / download.SUMMARY).read_text())
    assert summary["source"] == "url" and summary["url"] == url
    assert summary["archive_sha256"] == sha256(archive) and summary["split_root"] == "Combined Dataset"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alz." + kind, "hr", "tree"]  # no work folder left


def test_url_fetch_reads_file_urls_without_a_network(tmp_path):
    tree = image_tree(tmp_path / "tree", per_class=1)
    archive = zip_folder(tree, tmp_path / "alz.zip")
    out = tmp_path / "hr"
    download.run(data_params(source="url", url=UrlSource(archive.as_uri(), sha256(archive))), out)
    assert len(io.read_manifest(out)) == 8
    with pytest.raises(MedsrError, match="download failed") as excinfo:
        sources.fetch((tmp_path / "gone.zip").as_uri(), tmp_path / "dest")
    assert "gone.zip" in one_line_error(excinfo)


def test_url_with_a_wrong_sha256_names_both_digests(tmp_path, monkeypatch):
    tree = image_tree(tmp_path / "tree", per_class=1)
    archive = zip_folder(tree, tmp_path / "alz.zip")
    _fake_fetch(monkeypatch, archive)
    wrong = "0" * 64
    out = tmp_path / "hr"
    with pytest.raises(MedsrError, match="sha256 mismatch") as excinfo:
        download.run(data_params(source="url", url=UrlSource("https://example.org/alz.zip", wrong)), out)
    message = one_line_error(excinfo)
    assert wrong in message and sha256(archive) in message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alz.zip", "tree"]


def test_url_without_sha256_is_refused_before_downloading(tmp_path, monkeypatch):
    def fetch(url, dest):
        raise AssertionError("fetched without a sha256 to check")

    monkeypatch.setattr(sources, "fetch", fetch)
    with pytest.raises(MedsrError, match="data.url.sha256") as excinfo:
        download.run(data_params(source="url", url=UrlSource("https://example.org/alz.zip", "")), tmp_path / "hr")
    one_line_error(excinfo)
    with pytest.raises(MedsrError, match="data.url.url"):
        download.run(data_params(source="url", url=UrlSource("", "0" * 64)), tmp_path / "hr")
    assert not (tmp_path / "hr").exists()


def test_url_archive_with_an_escaping_entry_writes_nothing(tmp_path, monkeypatch):
    tree = image_tree(tmp_path / "tree", per_class=1)
    archive = zip_folder(tree, tmp_path / "alz.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../escaped.txt", b"evil")
    _fake_fetch(monkeypatch, archive)
    with pytest.raises(MedsrError, match="'../../escaped.txt'"):
        download.run(data_params(source="url", url=UrlSource("https://example.org/a.zip", sha256(archive))),
                     tmp_path / "work" / "hr")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "work" / "hr").exists() and list((tmp_path / "work").iterdir()) == []


# --- data.source: kaggle --------------------------------------------------------------------

@pytest.fixture
def no_kaggle_credentials(tmp_path, monkeypatch):
    """HOME is an empty folder and no Kaggle variable is set; returns that HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in KAGGLE_ENV:
        monkeypatch.delenv(name, raising=False)
    return home


def test_kaggle_without_credentials_says_how_to_provide_them(tmp_path, monkeypatch, no_kaggle_credentials):
    def kaggle_download(dataset, dest):
        raise AssertionError("the Kaggle client was called without credentials")

    monkeypatch.setattr(sources, "kaggle_download", kaggle_download)
    assert sources.kaggle_credentials() is None
    with pytest.raises(MedsrError) as excinfo:
        download.run(data_params(source="kaggle"), tmp_path / "hr")
    message = one_line_error(excinfo)
    for hint in ("KAGGLE_USERNAME", "KAGGLE_KEY", "kaggle.json", "data.source: folder"):
        assert hint in message
    assert not (tmp_path / "hr").exists()


def test_cli_kaggle_without_credentials_is_one_line_and_non_zero(tmp_path, no_kaggle_credentials):
    env = {k: v for k, v in os.environ.items() if k not in KAGGLE_ENV}
    overlay = tmp_path / "kaggle.yaml"
    overlay.write_text("data: {source: kaggle, image_size: 32}\n")
    result = subprocess.run([sys.executable, "-m", "medsr.cli", "download", "--params", str(ROOT / "params.yaml"),
                             "--params", str(overlay), "--out", str(tmp_path / "hr")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medsr download: error: data.source kaggle: no Kaggle API")
    assert not (tmp_path / "hr").exists()


def _fake_kaggle(monkeypatch, tree: Path) -> list[str]:
    """Replace the Kaggle client with a function writing a zip of `tree` laid out like the thesis dataset."""
    asked = []

    def kaggle_download(dataset, dest):
        asked.append(dataset)
        return zip_folder(tree, Path(dest) / "best-alzheimer-mri-dataset-99-accuracy.zip",
                          prefix="Combined Dataset/")

    monkeypatch.setattr(sources, "kaggle_download", kaggle_download)
    return asked


@pytest.mark.parametrize("how", ["kaggle.json", "environment"])
def test_kaggle_with_credentials_downloads_and_processes_like_a_folder(tmp_path, monkeypatch,
                                                                      no_kaggle_credentials, how):
    if how == "kaggle.json":
        (no_kaggle_credentials / ".kaggle").mkdir()
        (no_kaggle_credentials / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    else:
        monkeypatch.setenv("KAGGLE_USERNAME", "u")
        monkeypatch.setenv("KAGGLE_KEY", "k")
    assert sources.kaggle_credentials() is not None
    tree = image_tree(tmp_path / "tree", per_class=2, suffix=".jpg")
    asked = _fake_kaggle(monkeypatch, tree)
    data = data_params(source="kaggle")
    out = tmp_path / "hr"
    download.run(data, out)
    assert asked == [data.kaggle.dataset]
    records = io.read_manifest(out)
    assert len(records) == 16
    prefix = f"kaggle:{data.kaggle.dataset}#Combined Dataset/"
    for record in records:
        assert record.source.startswith(prefix + source_split(record.split) + "/")
        assert record.label == THESIS_CLASS_MAP[record.source.split("/")[-2]]
        assert record.sha256 == sha256(out / record.path)
    summary = json.loads((out / download.SUMMARY).read_text())
    assert summary["source"] == "kaggle" and summary["dataset"] == data.kaggle.dataset
    assert summary["counts"]["test"] == {"healthy": 2, "unhealthy": 6}


def test_kaggle_and_folder_give_the_same_images(tmp_path, monkeypatch, no_kaggle_credentials):
    """The Kaggle archive is processed exactly like the same tree given as a folder."""
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
    tree = image_tree(tmp_path / "tree", per_class=1)
    _fake_kaggle(monkeypatch, tree)
    download.run(data_params(source="kaggle", kaggle=KaggleSource("someone/alz")), tmp_path / "from_kaggle")
    download.run(data_params(source="folder", folder=FolderSource(str(tree))), tmp_path / "from_folder")
    kaggle_records = io.read_manifest(tmp_path / "from_kaggle")
    folder_records = io.read_manifest(tmp_path / "from_folder")
    strip = [(r.id, r.split, r.label, r.path, r.sha256) for r in kaggle_records]
    assert strip == [(r.id, r.split, r.label, r.path, r.sha256) for r in folder_records]


def test_kaggle_client_missing_suggests_the_folder_source(tmp_path, monkeypatch, no_kaggle_credentials):
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    monkeypatch.setitem(sys.modules, "kaggle", None)  # the import fails whether or not it is installed
    with pytest.raises(MedsrError, match="pip install kaggle") as excinfo:
        download.run(data_params(source="kaggle"), tmp_path / "hr")
    assert "data.source: folder" in one_line_error(excinfo)
    assert not (tmp_path / "hr").exists()
