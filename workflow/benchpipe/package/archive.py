"""Pack a verified submission tree into a deterministic ``.tar.zst``, and unpack one safely.

The same tree gives the same bytes whoever packs it, wherever it sits: members are the
manifest's files plus ``manifest.json`` and the folders above them, in sorted path order,
with paths relative to the tree (no top-level folder); every member has mtime 0, uid and
gid 0, empty user and group names, and mode 0644 (0755 for folders and for files with
any execute bit). The tar is POSIX pax, which Python writes as plain ustar headers unless
a name does not fit, and never with timestamps. Compression is zstd in its multi-threaded
mode, whose output does not depend on the number of threads; the bytes do depend on the
zstd version, which the lock pins. Empty folders are not packed: the manifest does not
vouch for them.

An archive unpacks only if every member is a regular file or a folder with a plain
relative path (no ``..``, not absolute, not twice); links of either kind, devices and
FIFOs are refused, as is a tree whose manifest does not verify once unpacked. Output is
written into a temporary folder next to the target and renamed at the end, so a refused
archive leaves nothing behind. Without benchpipe::

    mkdir out && zstd -dc x.tar.zst | tar -x -C out && benchpipe verify out
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


def _members(files: list[str]) -> list[str]:
    """The files and every folder above them, sorted so that a folder comes before its contents."""
    folders = {str(parent) for rel in files for parent in PurePosixPath(rel).parents if str(parent) != "."}
    return sorted(folders | set(files))


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
    listed: dict[str, str | None] = dict(read_manifest(tree)["files"])
    listed[MANIFEST] = None  # not listed in itself; verification above read it
    try:
        with atomic_file(out, "wb") as raw:
            sink = _HashingWriter(raw)
            with _compressor().stream_writer(sink, closefd=False) as zst:
                with tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for name in _members(list(listed)):
                        if name in listed:
                            _add_file(tar, tree, name, listed[name])
                        else:
                            tar.addfile(_info(name, folder=True))
    except OSError as exc:  # a file that shrank after verification ends up here too
        raise ArchiveError(f"{out}: cannot pack {tree}: {exc}") from exc
    return Packed(out, verified, sink.size, sink.digest.hexdigest())


def _add_file(tar: tarfile.TarFile, tree: Path, name: str, expected: str | None) -> None:
    path = tree / name
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
                verified = _verify_unpacked(tmp, archive)
    except OSError as exc:
        raise ArchiveError(f"{archive}: cannot unpack: {exc}") from exc
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise ArchiveError(f"{archive}: not a readable tar.zst: {exc}") from exc
    return Verified(dest, verified.format, verified.files, verified.root_sha256, verified.tools)


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
