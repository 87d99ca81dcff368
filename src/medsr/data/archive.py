"""Safe extraction of zip and tar archives (tar, tar.gz, tgz, tar.bz2, tar.xz).

Every entry is checked before anything is written: an entry that could land outside the target
folder (absolute path, `..`, a drive letter), or that is not a plain file or folder (symlink,
hardlink, device, fifo), makes the whole archive refused with a MedsrError naming the entry.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from medsr.core.errors import MedsrError


def extract(archive: Path, target: Path) -> None:
    """Unpack `archive` into `target` (created), refusing unsafe entries; the format is sniffed."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, target)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, target)
    else:
        raise MedsrError(f"{archive}: not a zip or tar archive")


def _destination(archive: Path, target: Path, name: str) -> Path:
    """Where entry `name` goes inside `target`; a MedsrError for any name that could escape it."""
    def refuse(reason: str) -> MedsrError:
        return MedsrError(f"{archive}: refusing archive entry {name!r}: {reason}")

    if not name or "\x00" in name:
        raise refuse("empty or invalid name")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive \
            or name.startswith("\\"):
        raise refuse("absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise refuse("path escapes the target folder (..)")
    root = target.resolve()
    destination = (root / "/".join(p for p in parts if p not in ("", "."))).resolve()
    if destination != root and root not in destination.parents:
        raise refuse("path escapes the target folder")
    return destination


def _write_entries(entries: Iterable[tuple[Path, bool, Callable[[], IO[bytes] | None]]]) -> None:
    """Write checked archive entries: (destination, is_dir, open_source) each, after every entry passed the checks."""
    for destination, is_dir, open_source in entries:
        if is_dir:
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open_source() as source, destination.open("wb") as sink:
            shutil.copyfileobj(source, sink)


def _extract_zip(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            plan = []
            for info in zf.infolist():
                destination = _destination(archive, target, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise MedsrError(f"{archive}: refusing archive entry {info.filename!r}: symbolic link")
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise MedsrError(f"{archive}: refusing archive entry {info.filename!r}: not a regular file")
                plan.append((info, destination))
            _write_entries(((destination, info.is_dir(), lambda info=info: zf.open(info))
                            for info, destination in plan))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as err:
        raise MedsrError(f"{archive}: damaged zip archive ({err})") from err


def _extract_tar(archive: Path, target: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            plan = []
            for member in tf.getmembers():
                destination = _destination(archive, target, member.name)
                if member.issym() or member.islnk():
                    kind = "symbolic link" if member.issym() else "hard link"
                    raise MedsrError(f"{archive}: refusing archive entry {member.name!r}: {kind}")
                if not (member.isfile() or member.isdir()):
                    raise MedsrError(f"{archive}: refusing archive entry {member.name!r}: device or special file")
                plan.append((member, destination))
            _write_entries(((destination, member.isdir(), lambda member=member: tf.extractfile(member))
                            for member, destination in plan))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise MedsrError(f"{archive}: damaged tar archive ({err})") from err
