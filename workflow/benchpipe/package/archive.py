"""Pack a verified submission tree into a deterministic ``.tar.zst``, and unpack one safely.

The same tree gives the same bytes whoever packs it, wherever it sits (under the same
folder name): members are one top-level folder named after the tree's folder, then under it
the manifest's files plus ``manifest.json`` and the folders above them, in sorted path
order, so that a plain ``tar -x`` writes one new folder and nothing beside it. Every member
is a folder or a regular file (a file with several names is packed as a plain file, never
as a tar hard link), with mtime 0, uid and gid 0, empty user and group names, and mode 0644
(0755 for folders and for files with any execute bit). The tar is POSIX pax, which Python writes as plain ustar headers unless
a name does not fit, and never with timestamps. Compression is zstd in its multi-threaded
mode, whose output does not depend on the number of threads; the bytes do depend on the
zstd version, which the lock pins. Empty folders are not packed: the manifest does not
vouch for them.

An archive unpacks only if every member is a regular file or a folder with a plain
relative path (no ``..``, not absolute, not twice); links of either kind, devices and
FIFOs are refused, as is a tree whose manifest does not verify once unpacked. The top-level
folder's contents become the target folder, whatever the folder was called; archives packed
before there was one (``manifest.json`` at the top) unpack too. Output is written into a
temporary folder next to the target and renamed at the end, so a refused archive leaves
nothing behind. Without benchpipe (``dev.tar.zst`` packed from a folder ``dev``)::

    zstd -dc dev.tar.zst | tar -x && benchpipe verify dev
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import zstandard

from benchpipe.contracts.atomic import atomic_dir, atomic_file
from benchpipe.contracts.errors import ArchiveError, ManifestError
from benchpipe.contracts.hashing import HashingReader
from benchpipe.package.manifest import MANIFEST, Verified, read_manifest, verify_tree

ZSTD_LEVEL = 10
_FILE_MODE = 0o644
_EXEC_MODE = 0o755
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Packed:
    archive: Path
    verified: Verified
    size: int
    sha256: str  # of the archive file itself


class _HashingWriter:
    """Passes writes through to ``out`` while hashing them, so the archive's sha256 costs no second read."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def _compressor() -> zstandard.ZstdCompressor:
    # threads >= 1 selects zstd's multi-threaded mode, whose output is the same for any count.
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=max(1, os.cpu_count() or 1), write_checksum=True)


def _members(top: str, files: list[str]) -> list[str]:
    """``top``, then the files and every folder above them under it, a folder before its contents."""
    folders = {str(parent) for rel in files for parent in PurePosixPath(rel).parents if str(parent) != "."}
    return [top, *(f"{top}/{name}" for name in sorted(folders | set(files)))]


def _top_folder(tree: Path) -> str:
    """The archive's one top-level folder: the tree's own folder name, the same wherever it sits."""
    name = tree.name
    if not name or name in (".", "..") or any(c in name for c in "\\\n\r"):
        raise ArchiveError(f"{tree}: its folder name {name!r} cannot name the archive's top-level folder")
    return name


def _info(name: str, *, folder: bool, size: int = 0, executable: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.mode = _EXEC_MODE if folder or executable else _FILE_MODE
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(tree: Path, out: Path) -> Packed:
    """Write ``tree`` (whose manifest must verify) to ``out`` as a deterministic tar.zst."""
    tree, out = tree.resolve(), out.resolve()
    if out.is_relative_to(tree):
        raise ArchiveError(f"{out}: the archive cannot be written inside the tree it packs ({tree})")
    verified = verify_tree(tree)
    if verified.root_sha256 is None:
        # Format 1 has no root hash to publish, and skipped nested manifest.json files.
        raise ArchiveError(f"{tree}: manifest is {verified.format}; write it anew (benchpipe package) to pack it")
    top = _top_folder(tree)
    listed: dict[str, str | None] = dict(read_manifest(tree)["files"])
    listed[MANIFEST] = None  # not listed in itself; verification above read it
    try:
        with atomic_file(out, "wb") as raw:
            sink = _HashingWriter(raw)
            with _compressor().stream_writer(sink, closefd=False) as zst:
                with tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    write_members(tar, tree, top, listed)
    except OSError as exc:  # a file that shrank after verification ends up here too
        raise ArchiveError(f"{out}: cannot pack {tree}: {exc}") from exc
    return Packed(out, verified, sink.size, sink.digest.hexdigest())


def write_members(tar: tarfile.TarFile, tree: Path, top: str, listed: dict[str, str | None]) -> None:
    """``listed`` (path -> sha256, None: not checked) of ``tree`` under the folder ``top`` of ``tar``.

    Every header is made here, never by tarfile from the file system: a file with several
    names is read as a plain file, never written as a hard-link member pointing at another.
    """
    for name in _members(top, list(listed)):
        rel = name.removeprefix(top + "/")
        if name != top and rel in listed:
            _add_file(tar, tree, rel, name, listed[rel])
        else:
            tar.addfile(_info(name, folder=True))


def _add_file(tar: tarfile.TarFile, tree: Path, rel: str, name: str, expected: str | None) -> None:
    path = tree / rel
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        reader = HashingReader(f)
        tar.addfile(_info(name, folder=False, size=st.st_size, executable=bool(st.st_mode & 0o111)), reader)
        # The tree was verified before packing began; what is packed must still be what was verified.
        if f.read(1) or (expected is not None and reader.digest.hexdigest() != expected):
            raise ArchiveError(f"{path}: changed while being packed")


def unpack(archive: Path, dest: Path) -> Verified:
    """Unpack ``archive`` into the new folder ``dest`` and verify its manifest there."""
    if dest.exists() or dest.is_symlink():
        raise ArchiveError(f"{dest}: already exists; unpack writes a new folder")
    try:
        with open(archive, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as zst:
            with tarfile.open(fileobj=zst, mode="r|") as tar, atomic_dir(dest) as tmp:
                _extract_all(tar, archive, tmp)
                _lift_top_folder(tmp, archive)
                verified = _verify_unpacked(tmp, archive)
    except OSError as exc:
        raise ArchiveError(f"{archive}: cannot unpack: {exc}") from exc
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise ArchiveError(f"{archive}: not a readable tar.zst: {exc}") from exc
    return Verified(dest, verified.format, verified.files, verified.root_sha256, verified.tools)


def _lift_top_folder(tmp: Path, archive: Path) -> None:
    """Make the archive's one top-level folder the tree itself; an archive packed before it had
    one holds ``manifest.json`` at the top and is left as it is."""
    if (tmp / MANIFEST).is_file():
        return
    entries = sorted(tmp.iterdir())
    if len(entries) != 1 or not entries[0].is_dir() or not (entries[0] / MANIFEST).is_file():
        found = ", ".join(e.name for e in entries) or "nothing"
        raise ArchiveError(f"{archive}: expected one top-level folder holding {MANIFEST} (or {MANIFEST} at the "
                           f"top, as older archives), found {found}")
    # Renamed first to a name none of its entries has, so that an entry named like it can move up.
    top = entries[0].rename(tmp / _unused_name(entries[0]))
    for entry in sorted(top.iterdir()):
        entry.rename(tmp / entry.name)
    top.rmdir()


def _unused_name(folder: Path) -> str:
    taken = {entry.name for entry in folder.iterdir()}
    name = ".top"
    while name in taken:
        name += "_"
    return name


def _verify_unpacked(tmp: Path, archive: Path) -> Verified:
    try:
        return verify_tree(tmp)
    except ManifestError as exc:
        raise ArchiveError(f"{archive}: unpacked, the tree does not match its manifest: {exc}") from exc


def _extract_all(tar: tarfile.TarFile, archive: Path, tmp: Path) -> None:
    seen: set[str] = set()
    # Streaming: each member is checked before anything of it is written.
    for member in tar:
        rel = _member_path(member, archive)
        if rel in seen:
            raise ArchiveError(f"{archive}: member '{member.name}' appears twice")
        seen.add(rel)
        target = tmp / rel
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        assert source is not None  # a regular file, checked by _member_path
        # "xb": never through something already there, and mode from the archive never kept as is.
        with open(target, "xb") as out:
            shutil.copyfileobj(source, out, _COPY_CHUNK)
        os.chmod(target, _EXEC_MODE if member.mode & 0o111 else _FILE_MODE)


def _member_path(member: tarfile.TarInfo, archive: Path) -> str:
    """The member's path inside the target; refuses anything but a plain file or folder there."""
    name = member.name
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise ArchiveError(f"{archive}: member '{name}' is a {kind} link (to '{member.linkname}'); "
                           "a submission archive holds files and folders only")
    if not (member.isdir() or (member.isreg() and not member.issparse())):
        raise ArchiveError(f"{archive}: member '{name}' is a {_kind(member)}; "
                           "a submission archive holds files and folders only")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive}: member '{name}' has an absolute path")
    parts = [p for p in name.rstrip("/").split("/") if p not in ("", ".")]
    if ".." in parts or "\\" in name:
        raise ArchiveError(f"{archive}: member '{name}' would land outside the target ('..')")
    if not parts:
        raise ArchiveError(f"{archive}: member '{name}' has an empty path")
    return "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file"
    return "special member"
