"""Real image sources (data.source folder | url | kaggle): find the ImageFolder tree, fit images.

Every source ends as a local folder holding `train/<class>/*` and `test/<class>/*` (possibly one or
two levels down, as in the Kaggle archive's `Combined Dataset/train/No Impairment/*.jpg`); the class
folder names map to healthy / unhealthy through data.class_map. The two network calls, `fetch` (url)
and `kaggle_download` (kaggle), are small module-level functions so tests can replace them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from medsr.core.parameters import CLASSES, DataParams
from medsr.data.archive import extract
from medsr.core.errors import MedsrError
from medsr.core.io import IMAGE_SUFFIXES, sha256_file

SPLITS = ("train", "test")  # the folders of a source; val is carved from train at download (medsr.data.splits)
IGNORED_FOLDERS = ("__MACOSX",)


@dataclasses.dataclass(frozen=True)
class SourceImage:
    path: Path  # the file to read
    split: str
    class_name: str  # the source class folder
    label: str  # healthy | unhealthy, through data.class_map
    source: str  # what the manifest records as its origin


@dataclasses.dataclass(frozen=True)
class LocatedSource:
    root: Path  # the folder holding train/ and test/
    name_of: Callable[[Path], str]  # image file -> its name in the manifest's `source` column
    provenance: dict  # for download.json: where the data came from


# --- fitting an image to data.image_size ------------------------------------------------------

def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape == (height, width):
        return image.copy()
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
        (width, height), Image.Resampling.BICUBIC)  # antialiased when shrinking
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def fit_to_size(image: np.ndarray, size: int, resize: str) -> np.ndarray:
    """center_crop: scale the short side to `size`, then crop the centre; resize: plain resize."""
    if resize == "resize":
        return _resize(image, size, size)
    height, width = image.shape
    scale = size / min(height, width)
    new_height, new_width = max(size, round(height * scale)), max(size, round(width * scale))
    scaled = _resize(image, new_width, new_height)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return scaled[top:top + size, left:left + size]


# --- the ImageFolder tree ---------------------------------------------------------------------

def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_FOLDERS)


def _split_dirs(folder: Path) -> dict[str, Path] | None:
    """{"train": ..., "test": ...} if `folder` holds both (names matched case-insensitively)."""
    found = {p.name.lower(): p for p in _visible_dirs(folder) if p.name.lower() in SPLITS}
    return found if len(found) == len(SPLITS) else None


def find_split_root(root: Path, what: str) -> Path:
    """The folder holding train/ and test/: `root` itself, or one or two levels below it."""
    if not root.is_dir():
        raise MedsrError(f"{root}: data folder is missing ({what})")
    levels = [[root]]
    levels.append(_visible_dirs(root))
    levels.append([grandchild for child in levels[1] for grandchild in _visible_dirs(child)])
    for candidates in levels:
        found = [folder for folder in candidates if _split_dirs(folder)]
        if len(found) > 1:
            names = ", ".join(str(f) for f in found[:3])
            raise MedsrError(f"{root}: several train/ + test/ pairs ({names}); point {what} at one of them")
        if found:
            return found[0]
    if not any(root.iterdir()):
        raise MedsrError(f"{root}: data folder is empty (expected train/<class>/* and test/<class>/*)")
    raise MedsrError(f"{root}: no train/ and test/ folders here or up to two levels down ({what})")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(located: LocatedSource, class_map: dict[str, str]) -> list[SourceImage]:
    """Every image of both splits, sorted by split, class folder and file name; checked for emptiness."""
    images = []
    for split, split_dir in _split_dirs(located.root).items():
        found = []
        for class_dir in _visible_dirs(split_dir):
            if class_dir.name not in class_map:
                known = ", ".join(sorted(class_map))
                raise MedsrError(f"{class_dir}: class folder {class_dir.name!r} is not in data.class_map "
                                 f"(mapped: {known})")
            files = sorted(p for p in class_dir.rglob("*") if _is_image(p)
                           and not any(part.startswith(".") for part in p.relative_to(class_dir).parts))
            found += [SourceImage(p, split, class_dir.name, class_map[class_dir.name], located.name_of(p))
                      for p in files]
        if not found:
            raise MedsrError(f"{split_dir}: no images (expected <class folder>/*{'|*'.join(IMAGE_SUFFIXES)})")
        for label in CLASSES:
            if not any(item.label == label for item in found):
                folders = sorted(name for name, mapped in class_map.items() if mapped == label)
                raise MedsrError(f"{split_dir}: no {label} images (data.class_map maps {', '.join(folders)} "
                                 f"to {label})")
        images += found
    return sorted(images, key=lambda item: (SPLITS.index(item.split), item.class_name, str(item.path)))


# --- data.source: folder | url | kaggle -------------------------------------------------------

def locate(data: DataParams, workdir: Path) -> LocatedSource:
    """The local ImageFolder tree of a real source; url / kaggle download and unpack into `workdir`."""
    if data.source == "folder":
        return _folder(data)
    if data.source == "url":
        return _url(data, workdir)
    if data.source == "kaggle":
        return _kaggle(data, workdir)
    raise MedsrError(f"data.source: {data.source!r} is not a real image source")


def _folder(data: DataParams) -> LocatedSource:
    if not data.folder.path:
        raise MedsrError("data.folder.path: empty; set it to a folder holding train/<class>/* and test/<class>/*")
    root = find_split_root(Path(data.folder.path).expanduser(), "data.folder.path")
    return LocatedSource(root, str, {"source": "folder", "path": data.folder.path, "split_root": str(root)})


def _archive_source(archive: Path, workdir: Path, prefix: str, what: str, provenance: dict) -> LocatedSource:
    unpacked = workdir / "unpacked"
    extract(archive, unpacked)
    root = find_split_root(unpacked, what)
    return LocatedSource(root, lambda p: f"{prefix}#{p.relative_to(unpacked).as_posix()}",
                         {**provenance, "archive_sha256": sha256_file(archive),
                          "split_root": root.relative_to(unpacked).as_posix()})


def fetch(url: str, dest: Path) -> None:
    """Download `url` to the file `dest` (the one network call of data.source url)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, Path(dest).open("wb") as sink:
            shutil.copyfileobj(response, sink, length=1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise MedsrError(f"{url}: download failed ({reason})") from err


def _url(data: DataParams, workdir: Path) -> LocatedSource:
    url, expected = data.url.url, data.url.sha256.lower()
    if not url:
        raise MedsrError("data.url.url: empty; set it to a zip or tar archive of train/<class>/* and test/<class>/*")
    if not expected:
        raise MedsrError("data.url.sha256: required with data.source url (the archive's sha256, "
                         "so a changed or corrupted download is refused)")
    archive = workdir / "archive"
    fetch(url, archive)
    actual = sha256_file(archive)
    if actual != expected:
        raise MedsrError(f"{url}: sha256 mismatch: the download is {actual}, data.url.sha256 expects {expected}")
    return _archive_source(archive, workdir, url, "the archive of data.url.url", {"source": "url", "url": url})


def kaggle_credentials() -> str | None:
    """Where the Kaggle client would find credentials, or None (checked before importing `kaggle`,
    whose import already tries to authenticate)."""
    env = os.environ
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME / KAGGLE_KEY"
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    home = Path.home()
    if env.get("KAGGLE_CONFIG_DIR"):
        folders = [Path(env["KAGGLE_CONFIG_DIR"])]
    else:
        folders = [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    for name in ("kaggle.json", "access_token", "access_token.txt", "credentials.json"):
        for folder in folders + [home / ".kaggle"]:
            if (folder / name).is_file():
                return str(folder / name)
    return None


def kaggle_download(dataset: str, dest: Path) -> Path:
    """Download the Kaggle dataset `dataset` (owner/name) as a zip into `dest` with the official client."""
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as err:
        raise MedsrError("data.source kaggle: the Kaggle client is not installed (pip install kaggle), or "
                         "unpack the download yourself and use data.source: folder") from err
    api = KaggleApi()
    try:
        api.authenticate()
    except (SystemExit, Exception) as err:
        raise MedsrError(f"kaggle: authentication failed ({err}); check your Kaggle API credentials") from err
    try:
        api.dataset_download_files(dataset, path=str(dest), unzip=False, quiet=False)
    except Exception as err:  # the client raises HTTP and OS errors of several kinds
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MedsrError(f"data.kaggle.dataset {dataset}: download failed ({first_line})") from err
    archives = sorted(Path(dest).glob("*.zip"))
    if not archives:
        raise MedsrError(f"data.kaggle.dataset {dataset}: the Kaggle client wrote no zip archive")
    return archives[0]


def _kaggle(data: DataParams, workdir: Path) -> LocatedSource:
    if kaggle_credentials() is None:
        raise MedsrError("data.source kaggle: no Kaggle API credentials: set KAGGLE_USERNAME and KAGGLE_KEY "
                         "(or KAGGLE_API_TOKEN), or save kaggle.json in ~/.kaggle or $KAGGLE_CONFIG_DIR; "
                         "or download the dataset yourself and use data.source: folder")
    download_dir = workdir / "kaggle"
    download_dir.mkdir(parents=True, exist_ok=True)
    archive = kaggle_download(data.kaggle.dataset, download_dir)
    return _archive_source(archive, workdir, f"kaggle:{data.kaggle.dataset}", "the Kaggle archive",
                           {"source": "kaggle", "dataset": data.kaggle.dataset, "archive": archive.name})
