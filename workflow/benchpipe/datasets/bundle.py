"""Carry verified dataset sources to an air-gapped machine in one tar, and import them there.

A bundle is an uncompressed tar whose first member is ``manifest.json``::

    {"format": "benchpipe-datasets-bundle", "version": 1,
     "entries": [{"benchmark": ..., "source": ..., "sha256": ..., "size": ..., "urls": [...]}]}

followed by one ``sha256/<hash>`` member per distinct content, the same layout as the
cache (``<cache_dir>/sha256/<hash>``). The manifest comes first so that an import knows
what to expect before it reads any data. Members are written in hash order with mtime 0,
uid/gid 0 and mode 0644, so the same sources always give the same bytes.

Import also takes a bundle that was repacked or compressed (gzip, bzip2, xz) on the way:
the names and hashes are what count, not the container. It is all or nothing: every
member is hashed (and, if new to the cache, written to a temporary file beside its final
place) before any of them is moved in, so a corrupt or tampered bundle adds nothing, and
what the cache already holds is never touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchpipe.contracts.atomic import atomic_file
from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import DatasetError
from benchpipe.contracts.hashing import HashingReader
from benchpipe.datasets.fetch import cache_store, cached_source, default_cache_dir

logger = logging.getLogger("benchpipe.datasets")

FORMAT = "benchpipe-datasets-bundle"
VERSION = 1
MANIFEST = "manifest.json"
_MEMBER = re.compile(r"sha256/([0-9a-f]{64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1024 * 1024
# A manifest lists files, not data: anything larger is not one of ours.
_MAX_MANIFEST = 64 * 1024 * 1024


@dataclass(frozen=True)
class BundleEntry:
    """One source of one benchmark, as the manifest records it."""

    benchmark: str
    source: str
    sha256: str
    size: int
    urls: tuple[str, ...]

    @property
    def member(self) -> str:
        return f"sha256/{self.sha256}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "urls": list(self.urls)}


@dataclass(frozen=True)
class ImportReport:
    """What an import did: entries new to the cache, and entries it already held."""

    added: tuple[BundleEntry, ...]
    present: tuple[BundleEntry, ...]


# --- bundle ------------------------------------------------------------------------------


def parse_sources_json(text: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``--sources-json``: per benchmark, per source name, ``{urls, sha256?, size?}``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"--sources-json: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError("--sources-json: expected an object of benchmark names")
    for benchmark, sources in data.items():
        if not isinstance(sources, dict):
            raise DatasetError(f"--sources-json: {benchmark}: expected an object of source names")
        for name, override in sources.items():
            urls = override.get("urls") if isinstance(override, dict) else None
            if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
                raise DatasetError(f"--sources-json: {benchmark}.{name}.urls: expected a non-empty list of URLs")
    return data


def bundle(
    sources_by_benchmark: Mapping[str, Sequence[Source]],
    out: Path,
    cache_dir: Path | None = None,
    **fetch_options: Any,
) -> list[BundleEntry]:
    """Write the verified bytes of every source to the bundle ``out``; return its manifest entries.

    Sources missing from the cache are fetched into it first (``fetch_options`` go to the
    fetch). ``out`` appears only once the tar is complete.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entries = [
        _cache_and_describe(benchmark, source, cache, fetch_options)
        for benchmark, sources in sources_by_benchmark.items()
        for source in sources
    ]
    if not entries:
        raise DatasetError(f"{out}: no sources to bundle")
    entries.sort(key=lambda e: (e.benchmark, e.source))
    _check_consistent(entries, where="sources")
    out = Path(out)
    with atomic_file(out, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        manifest = json.dumps(_manifest(entries), indent=2, sort_keys=True).encode() + b"\n"
        tar.addfile(_member_info(MANIFEST, len(manifest)), io.BytesIO(manifest))
        for entry in _distinct(entries):
            _add_cached(tar, entry, cache_store(cache) / entry.sha256)
    logger.info("bundled %d sources (%d files) into %s", len(entries), len(_distinct(entries)), out)
    return entries


def _cache_and_describe(benchmark: str, source: Source, cache: Path, fetch_options: Mapping[str, Any]) -> BundleEntry:
    path = cached_source(source, cache, **fetch_options)
    size = path.stat().st_size
    if source.size is not None and source.size != size:
        raise DatasetError(
            f"{benchmark}/{source.name}: cache entry {path} has {size} bytes, the source declares {source.size}"
        )
    return BundleEntry(benchmark, source.name, source.sha256.strip().lower(), size, source.urls)


def _manifest(entries: Sequence[BundleEntry]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "entries": [e.to_json() for e in entries]}


def _distinct(entries: Iterable[BundleEntry]) -> list[BundleEntry]:
    """One entry per content, in hash order: each file goes into the tar once."""
    return sorted({e.sha256: e for e in entries}.values(), key=lambda e: e.sha256)


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_cached(tar: tarfile.TarFile, entry: BundleEntry, path: Path) -> None:
    try:
        with open(path, "rb") as raw:
            reader = HashingReader(raw)
            tar.addfile(_member_info(entry.member, entry.size), reader)
    except OSError as exc:
        raise DatasetError(f"cannot add cache entry {path} to the bundle: {exc}") from exc
    # The entry was verified a moment ago; this guards against it changing since.
    actual = reader.digest.hexdigest()
    if actual != entry.sha256:
        raise DatasetError(f"cache entry {path} changed while bundling: expected sha256 {entry.sha256}, got {actual}")


# --- import ------------------------------------------------------------------------------


def import_bundle(bundle_path: Path, cache_dir: Path | None = None) -> ImportReport:
    """Verify every member of ``bundle_path``, then move the new ones into the cache.

    Raises DatasetError naming the member at the first unsafe, unlisted, missing or
    corrupt one; the cache is then exactly as before.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    store = cache_store(cache)
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the cache directory {store}: {exc}") from exc
    staged: dict[str, Path] = {}
    try:
        entries = _read_and_stage(Path(bundle_path), store, staged)
        return _commit(entries, store, staged)
    finally:
        for temp in staged.values():
            temp.unlink(missing_ok=True)


def _read_and_stage(bundle_path: Path, store: Path, staged: dict[str, Path]) -> list[BundleEntry]:
    """Check every member; write those new to the cache to temporary files in ``store``."""
    try:
        with tarfile.open(bundle_path, mode="r:*") as tar:
            entries = _read_manifest(bundle_path, tar)
            expected = {e.sha256: e for e in entries}
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                entry = _listed_member(bundle_path, member, expected, seen)
                if entry is not None:
                    _stage_member(bundle_path, tar, member, entry, store, staged)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{bundle_path}: not a readable tar: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read bundle {bundle_path}: {exc}") from exc
    # A damaged header ends tarfile's listing early and silently: compare with the manifest.
    missing = sorted(set(expected) - seen)
    if missing:
        raise DatasetError(
            f"{bundle_path}: {MANIFEST} lists {', '.join(f'sha256/{h}' for h in missing)} "
            "but the bundle has no such member (truncated or damaged?)"
        )
    return entries


def _read_manifest(bundle_path: Path, tar: tarfile.TarFile) -> list[BundleEntry]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isreg():
        found = "nothing" if first is None else repr(first.name)
        raise DatasetError(f"{bundle_path}: the first member must be {MANIFEST}, found {found}")
    if first.size > _MAX_MANIFEST:
        raise DatasetError(f"{bundle_path}: {MANIFEST} is {first.size} bytes, more than any bundle needs")
    stream = tar.extractfile(first)
    assert stream is not None
    with stream:
        raw = stream.read()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{bundle_path}: {MANIFEST} is not valid JSON: {exc}") from exc
    entries = _parse_manifest(f"{bundle_path}: {MANIFEST}", data)
    _check_consistent(entries, where=f"{bundle_path}: {MANIFEST}")
    return entries


def _parse_manifest(where: str, data: Any) -> list[BundleEntry]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DatasetError(f"{where}: not a benchpipe datasets bundle (format must be {FORMAT!r})")
    if data.get("version") != VERSION:
        raise DatasetError(
            f"{where}: version {data.get('version')!r} is not supported (this benchpipe reads {VERSION})"
        )
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise DatasetError(f"{where}: key 'entries' must be a non-empty list")
    return [_parse_entry(f"{where}: entries[{i}]", raw) for i, raw in enumerate(raw_entries)]


def _parse_entry(where: str, raw: Any) -> BundleEntry:
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: expected an object")
    for key in ("benchmark", "source"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise DatasetError(f"{where}: key {key!r} must be a non-empty string")
    sha256 = raw.get("sha256")
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise DatasetError(f"{where}: key 'sha256' must be 64 lower-case hex digits, got {sha256!r}")
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DatasetError(f"{where}: key 'size' must be a byte count, got {size!r}")
    urls = raw.get("urls")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise DatasetError(f"{where}: key 'urls' must be a list of strings")
    return BundleEntry(raw["benchmark"], raw["source"], sha256, size, tuple(urls))


def _check_consistent(entries: Sequence[BundleEntry], *, where: str) -> None:
    sizes: dict[str, BundleEntry] = {}
    for entry in entries:
        other = sizes.setdefault(entry.sha256, entry)
        if other.size != entry.size:
            raise DatasetError(
                f"{where}: sha256 {entry.sha256} has {other.size} bytes for {other.benchmark}/{other.source} "
                f"but {entry.size} for {entry.benchmark}/{entry.source}"
            )


def _listed_member(
    bundle_path: Path, member: tarfile.TarInfo, expected: Mapping[str, BundleEntry], seen: set[str]
) -> BundleEntry | None:
    """The manifest entry of a data member; None for the ``sha256`` directory; else refuse it."""
    name = member.name
    if member.isdir() and name.rstrip("/") == "sha256":
        return None
    if name == MANIFEST:
        raise _refused(bundle_path, name, "appears twice")
    match = _MEMBER.fullmatch(name)
    if match is None:
        raise _refused(bundle_path, name, f"is not {MANIFEST} or sha256/<64 hex digits>")
    if not member.isreg():
        raise _refused(bundle_path, name, "is not a regular file (a link, device or directory)")
    digest = match.group(1)
    entry = expected.get(digest)
    if entry is None:
        raise _refused(bundle_path, name, f"is not listed in {MANIFEST}")
    if digest in seen:
        raise _refused(bundle_path, name, "appears twice")
    if member.size != entry.size:
        raise _refused(bundle_path, name, f"has {member.size} bytes, {MANIFEST} says {entry.size}")
    seen.add(digest)
    return entry


def _refused(bundle_path: Path, name: str, reason: str) -> DatasetError:
    return DatasetError(f"{bundle_path}: member {name!r} {reason}; refusing the bundle, nothing was imported")


def _temp_in(store: Path, entry: BundleEntry) -> Path:
    try:
        fd, name = tempfile.mkstemp(prefix=f".{entry.sha256}.", suffix=".partial", dir=store)
    except OSError as exc:
        raise DatasetError(f"cannot create a temporary file in {store}: {exc}") from exc
    os.close(fd)
    return Path(name)


def _stage_member(
    bundle_path: Path,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    entry: BundleEntry,
    store: Path,
    staged: dict[str, Path],
) -> None:
    """Hash the member, copying it to a temporary file unless the cache already holds it.

    Members the cache has are hashed all the same: a damaged bundle is reported as such
    whatever the cache on this machine happens to hold.
    """
    stream = tar.extractfile(member)
    assert stream is not None  # _listed_member let only regular files through
    temp = None if (store / entry.sha256).is_file() else _temp_in(store, entry)
    if temp is not None:
        staged[entry.sha256] = temp
    with stream, (_open_temp(temp) if temp is not None else _Discard()) as out:
        digest, size = _copy_hashing(stream, out, temp)
    if digest != entry.sha256:
        raise DatasetError(
            f"{bundle_path}: member {member.name!r} is corrupt: its name and {MANIFEST} say sha256 {entry.sha256}, "
            f"its content has sha256 {digest}; nothing was imported"
        )
    if size != entry.size:
        raise _refused(bundle_path, member.name, f"holds {size} bytes, {MANIFEST} says {entry.size}")


def _open_temp(temp: Path) -> IO[bytes]:
    try:
        return open(temp, "wb")
    except OSError as exc:
        raise DatasetError(f"cannot write {temp}: {exc}") from exc


def _copy_hashing(stream: IO[bytes], out: IO[bytes], temp: Path | None) -> tuple[str, int]:
    """Copy ``stream`` to ``out`` in chunks; return the sha256 and size of what was read."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        try:
            out.write(chunk)
        except OSError as exc:
            raise DatasetError(f"cannot write {temp}: {exc}") from exc
    if temp is not None:
        try:
            out.flush()
            # Durable before it is renamed into the cache, where it counts as verified.
            os.fsync(out.fileno())
        except OSError as exc:
            raise DatasetError(f"cannot write {temp}: {exc}") from exc
    return digest.hexdigest(), size


class _Discard(io.RawIOBase):
    """A sink for members the cache already holds: they are hashed, not stored twice."""

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return len(b)


def _commit(entries: Sequence[BundleEntry], store: Path, staged: dict[str, Path]) -> ImportReport:
    """Move every verified temporary file into place; the cache already had the others."""
    added, present = [], []
    for entry in _distinct(entries):
        target = store / entry.sha256
        temp = staged.pop(entry.sha256, None)
        # Another import or fetch may have placed it since: its copy is verified too, keep it.
        if temp is None or target.is_file():
            if temp is not None:
                temp.unlink(missing_ok=True)
            present.append(entry)
            logger.info("%s: already in the cache at %s", entry.member, target)
            continue
        try:
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        except OSError as exc:
            staged[entry.sha256] = temp
            raise DatasetError(f"cannot move verified {entry.member} into the cache at {target}: {exc}") from exc
        added.append(entry)
        logger.info("%s: added to the cache at %s (%d bytes)", entry.member, target, entry.size)
    return ImportReport(tuple(added), tuple(present))
