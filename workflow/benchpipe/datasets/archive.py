"""Unpack a verified dataset archive (tar, tar.gz, zip) without trusting its member names.

Every member is checked before anything is written: no path may land outside the target
(``..`` or absolute), no link may point outside it, and devices, FIFOs and other special
files are refused. The first bad member is named in the error, and the target is only
created, under a temporary name then renamed, once the whole archive has unpacked.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.errors import DatasetError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
# Python's own extraction filter (3.11.4+) checks again what _check_tar checked.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def is_archive(name: str) -> bool:
    return name.endswith(ARCHIVE_SUFFIXES)


def unpacked_name(name: str) -> str:
    """Where an archive source unpacks, beside it: `mnist.tar.gz` -> `mnist`."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _inside(name: str, archive: Path) -> PurePosixPath:
    """The member's path relative to the target; refuses any that would leave it."""
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DatasetError(f"{archive}: member '{name}' has an absolute path")
    if ".." in path.parts:
        raise DatasetError(f"{archive}: member '{name}' would land outside the target ('..')")
    return path


def _link_stays_inside(member: PurePosixPath, link: str, archive: Path, *, hard: bool) -> None:
    """A symlink resolves from its own folder, a hard link from the archive's root."""
    target = PurePosixPath(link)
    if target.is_absolute():
        raise DatasetError(f"{archive}: member '{member}' links to the absolute path '{link}'")
    base = [] if hard else list(member.parent.parts)
    for part in target.parts:
        if part == "..":
            if not base:
                raise DatasetError(f"{archive}: member '{member}' links outside the target ('{link}')")
            base.pop()
        elif part != ".":
            base.append(part)


def _check_tar(tar: tarfile.TarFile, archive: Path) -> None:
    for member in tar.getmembers():
        path = _inside(member.name, archive)
        if member.issym() or member.islnk():
            _link_stays_inside(path, member.linkname, archive, hard=member.islnk())
        elif not (member.isfile() or member.isdir()):
            kind = "device" if (member.ischr() or member.isblk()) else "FIFO" if member.isfifo() else "special file"
            raise DatasetError(f"{archive}: member '{member.name}' is a {kind}, which a dataset never needs")


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> None:
    for info in zf.infolist():
        _inside(info.filename, archive)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 where the zip records no file type
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            # zip stores a symlink as a file holding its target; unpacked, it would be a
            # plain file, but a tool that honours the mode would follow it: refuse it.
            raise DatasetError(f"{archive}: member '{info.filename}' is not a regular file or folder")


def extract_archive(archive: Path, dest: Path) -> list[str]:
    """Unpack ``archive`` into ``dest`` (replaced atomically); the member names, sorted."""
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, archive)
                with atomic_dir(dest) as tmp:
                    zf.extractall(tmp)
                return sorted(i.filename for i in zf.infolist())
        with tarfile.open(archive) as tar:
            _check_tar(tar, archive)
            with atomic_dir(dest) as tmp:
                for member in tar.getmembers():
                    # Checked above; permissions and owners from the archive are not kept.
                    member.mode = 0o755 if member.isdir() else 0o644
                    member.uid = member.gid = 0
                    member.uname = member.gname = ""
                    tar.extract(member, tmp, set_attrs=False, **_TAR_FILTER)
            return sorted(m.name for m in tar.getmembers())
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{archive}: not a readable {''.join(archive.suffixes) or 'archive'}: {exc}") from exc
