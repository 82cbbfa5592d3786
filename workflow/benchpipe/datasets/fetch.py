"""Fetch a dataset source into a directory, verified against its declared sha256.

The file at ``dest_dir/<source.name>`` exists only once its content has been verified:
downloads go to a hidden ``.partial`` file in the same directory and are moved into place
with ``os.replace``, so an interrupted, truncated or corrupt download never looks like a
finished one, and two processes fetching the same source cannot see each other's halves.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import importlib.resources
import logging
import os
import queue
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlsplit

from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import DatasetError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.datasets.progress import DownloadProgress

logger = logging.getLogger("benchpipe.datasets")

# Each chunk is written by the receiving thread and hashed by another; _BUFFERS of them
# circulate between the two, which bounds memory at _BUFFERS * _CHUNK. Chunks small
# enough to still be in cache when hashed: on loopback, 256 KiB and 1 MiB chunks ran at
# curl's rate, 4 MiB ones at half of it (bench/download_vs_curl.py).
_CHUNK = 256 * 1024
_BUFFERS = 8
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(?:\d+/(\d+))?")


class _Readable(Protocol):
    def readinto(self, buffer: bytearray, /) -> int | None: ...


class _RetryableError(Exception):
    """A transient failure; the message says why the attempt failed."""


def fetch_source(
    source: Source,
    dest_dir: Path,
    *,
    dest_name: str | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 0.5,
) -> Path:
    """Place ``source`` at ``dest_dir/source.name`` (or ``dest_name``), verified; return that path.

    ``retries`` is the total number of HTTP attempts (at least 1); the n-th retry waits
    ``backoff * 2**(n-1)`` seconds. ``timeout`` bounds each blocking socket operation,
    not the whole download. Raises DatasetError when the source cannot be fetched or
    its sha256 differs from ``source.sha256``. With ``source.size`` set, a mirror that
    announces or delivers another number of bytes fails as one serving wrong bytes does.
    """
    if retries < 1:
        raise DatasetError(f"source {source.name!r}: retries must be at least 1, got {retries}")
    target = _target_path(dest_name or source.name, Path(dest_dir))
    expected = source.sha256.strip().lower()
    if target.is_file():
        if sha256_file(target) == expected:
            logger.info("%s: cached at %s", source.name, target)
            return target
        # Removed before fetching, so a failed re-fetch cannot leave a bad file behind.
        logger.warning("%s: %s has the wrong sha256; fetching again", source.name, target)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_partials(target)
    failures: list[DatasetError] = []
    for url in source.urls:
        # A fresh partial per mirror: bytes from one server never seed a resume on another.
        partial = _Partial.create(target)
        try:
            _fill(url, partial, size=source.size, retries=retries, timeout=timeout, backoff=backoff)
            _verify(source, url, partial, expected)
            _move_into_place(partial.path, target)
        except DatasetError as exc:
            partial.path.unlink(missing_ok=True)
            failures.append(exc)
            if url != source.urls[-1]:
                logger.warning("%s: %s; trying the next mirror", source.name, exc)
            continue
        except BaseException:
            # BaseException too: Ctrl-C in the middle of a download must not leave litter.
            partial.path.unlink(missing_ok=True)
            raise
        logger.info("%s: fetched %d bytes from %s to %s", source.name, partial.size, url, target)
        return target
    if len(failures) == 1:
        raise failures[0]
    raise DatasetError(
        f"source {source.name!r}: all {len(failures)} mirrors failed: " + "; ".join(map(str, failures))
    )


# A partial file untouched this long belongs to a download that was killed (a live one
# writes every few seconds at worst); younger ones may be another process's, on a shared cache.
ABANDONED_AFTER_S = 24 * 3600


def _remove_abandoned_partials(target: Path) -> None:
    """Delete partial files of ``target`` that killed downloads left behind."""
    cutoff = time.time() - ABANDONED_AFTER_S
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                logger.info("removed %s, left by a download that did not finish", leftover)
        except OSError:
            pass  # gone already (another process cleaned it), or not ours to remove


def _target_path(name: str, dest_dir: Path) -> Path:
    # A name with separators or dots would write outside dest_dir or onto it.
    if name in ("", ".", "..") or Path(name).name != name:
        raise DatasetError(f"source name {name!r} is not a plain file name")
    return dest_dir / name


def _fill(
    url: str, partial: _Partial, *, size: int | None, retries: int, timeout: float, backoff: float
) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "package":
        _copy_package_resource(url, partial)
    elif scheme == "file":
        _copy_file(url, partial, size)
    elif scheme in ("http", "https"):
        _download(url, partial, size=size, retries=retries, timeout=timeout, backoff=backoff)
    else:
        raise DatasetError(f"{url}: unsupported URL scheme {scheme!r} (use https, http, file or package)")


def _verify(source: Source, url: str, partial: _Partial, expected: str) -> None:
    if source.size is not None and partial.size != source.size:
        raise DatasetError(
            f"source {source.name!r} from {url}: got {partial.size} bytes, declared size {source.size}"
        )
    actual = partial.hexdigest()
    if actual != expected:
        raise DatasetError(
            f"source {source.name!r} from {url}: sha256 mismatch: "
            f"expected {expected}, got {actual}"
        )


def _move_into_place(path: Path, target: Path) -> None:
    try:
        # mkstemp creates 0600; a dataset is for every user and container that reads it.
        os.chmod(path, 0o644)
        os.replace(path, target)
    except OSError as exc:
        raise DatasetError(f"cannot move verified download to {target}: {exc}") from exc


class _Partial:
    """The temporary file a fetch writes to, with the sha256 and size of what it holds.

    Hashing as bytes arrive spares a second read of the file. ``size`` and the digest
    advance only when an appender closes, once its hashing has caught up, and each
    appender first cuts the file back to ``size``: so file and digest always describe
    the same bytes, whatever a failed attempt wrote past them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self.digest = hashlib.sha256()

    @classmethod
    def create(cls, target: Path) -> _Partial:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        except OSError as exc:
            raise DatasetError(f"cannot create a temporary file in {target.parent}: {exc}") from exc
        os.close(fd)
        return cls(Path(name))

    def restart(self) -> None:
        self.size = 0
        self.digest = hashlib.sha256()

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


class _Appender:
    """Appends chunks to a partial file: written on the receiving thread, hashed on another.

    With sha256 on the receiving thread, receiving and hashing took turns, and a fast link
    ran at 0.42 of curl's rate; hashlib releases the GIL for large buffers, so here they
    overlap. A fixed set of buffers circulates: the receiver takes a free one, fills it,
    writes it and queues it for hashing; the hasher hands it back. When every buffer waits
    to be hashed the receiver waits too, so memory stays at _BUFFERS * _CHUNK however
    fast bytes arrive.
    """

    def __init__(self, partial: _Partial) -> None:
        self._partial = partial
        self._written = 0
        self._hash_error: BaseException | None = None
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._queued: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        for _ in range(_BUFFERS):
            self._free.put(bytearray(_CHUNK))
        self._fd = _open_at(partial.path, partial.size)
        self._hasher = threading.Thread(target=self._hash, args=(partial.digest,), name="sha256", daemon=True)
        self._hasher.start()

    def __enter__(self) -> _Appender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def buffer(self) -> bytearray:
        """A buffer to fill; waits while all of them are queued for hashing."""
        return self._free.get()

    def append(self, buffer: bytearray, count: int) -> None:
        """Write the first ``count`` bytes of ``buffer`` and queue them for hashing."""
        try:
            _write_all(self._fd, memoryview(buffer)[:count])
        except OSError as exc:
            # Final, not transient: retrying would not fix a full disk.
            raise DatasetError(f"cannot write {self._partial.path}: {exc}") from exc
        self._written += count
        self._queued.put((buffer, count))

    def close(self) -> None:
        """Wait until everything written is hashed, then account for it in the partial."""
        self._queued.put(None)
        self._hasher.join()
        try:
            os.close(self._fd)
        except OSError as exc:
            # Some filesystems (NFS) report a failed write only here.
            raise DatasetError(f"cannot write {self._partial.path}: {exc}") from exc
        if self._hash_error is not None:
            raise DatasetError(f"cannot hash {self._partial.path}: {self._hash_error}") from self._hash_error
        self._partial.size += self._written

    def _hash(self, digest: hashlib._Hash) -> None:
        while (item := self._queued.get()) is not None:
            buffer, count = item
            try:
                if self._hash_error is None:
                    digest.update(memoryview(buffer)[:count])
            except BaseException as exc:
                # Kept for close(): a hasher that died would leave the receiver waiting for buffers.
                self._hash_error = exc
            self._free.put(buffer)


def _open_at(path: Path, offset: int) -> int:
    """A descriptor writing ``path`` at ``offset``, the file cut back to that length."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        raise DatasetError(f"cannot write {path}: {exc}") from exc
    try:
        # Bytes past the offset come from a failed attempt and were never hashed. Cut only
        # when there are some: ext4 takes a truncation to zero for a file being replaced
        # and writes the whole file back at close (0.18 s of 0.6 s for 400 MB).
        if os.fstat(fd).st_size != offset:
            os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
    except OSError as exc:
        os.close(fd)
        raise DatasetError(f"cannot write {path}: {exc}") from exc
    return fd


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _stream_into(stream: _Readable, partial: _Partial, progress: DownloadProgress | None = None) -> int:
    """Append everything ``stream`` yields to ``partial``; return the number of bytes.

    Read errors propagate unchanged (the caller decides whether they are transient);
    write errors are DatasetError.
    """
    received = 0
    try:
        with _Appender(partial) as appender:
            while True:
                buffer = appender.buffer()
                # readinto, not read: a new bytes object per chunk costs an allocation and page faults.
                count = stream.readinto(buffer)
                if not count:
                    break
                appender.append(buffer, count)
                received += count
                if progress is not None:
                    progress.advance(count)
    finally:
        if progress is not None:
            progress.close()
    return received


def _copy_package_resource(url: str, partial: _Partial) -> None:
    resource = _package_resource(url)
    logger.info("copying %s", url)
    try:
        with resource.open("rb") as stream:
            _stream_into(stream, partial)
    except OSError as exc:
        raise DatasetError(f"{url}: cannot read package resource: {exc}") from exc


def _package_resource(url: str) -> Traversable:
    package, _, relative = url[len("package://") :].partition("/")
    parts = PurePosixPath(relative).parts
    if not package or not parts or ".." in parts or relative.startswith("/"):
        raise DatasetError(f"{url}: expected package://<python.package>/<relative/path>")
    try:
        root = importlib.resources.files(package)
    except (ImportError, TypeError, ValueError) as exc:
        # TypeError: the name is a plain module, which has no resources on 3.11.
        raise DatasetError(f"{url}: cannot locate package {package!r}: {exc}") from exc
    resource = root.joinpath(relative)
    if not resource.is_file():
        raise DatasetError(f"{url}: package {package!r} has no file {relative!r}")
    return resource


def _copy_file(url: str, partial: _Partial, size: int | None) -> None:
    path = _file_url_path(url)
    logger.info("copying %s", url)
    try:
        # Unbuffered: readinto then fills the chunk straight from the file, with no copy between.
        stream = open(path, "rb", buffering=0)
    except FileNotFoundError as exc:
        raise DatasetError(f"{url}: no such file {path}") from exc
    except OSError as exc:
        raise DatasetError(f"{url}: cannot open {path}: {exc}") from exc
    with stream:
        try:
            actual = os.fstat(stream.fileno()).st_size
            if size is not None and actual != size:
                raise DatasetError(f"{url}: the file has {actual} bytes, declared size {size}")
            # A mirror on a shared filesystem can be as slow as a network: show progress.
            _stream_into(stream, partial, DownloadProgress(path.name, actual))
        except OSError as exc:
            raise DatasetError(f"{url}: cannot read {path}: {exc}") from exc


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    path = unquote(parts.path)
    # A host would mean another machine's file; "file://data/x" is usually a relative path gone wrong.
    if parts.netloc or not path.startswith("/") or parts.query or parts.fragment:
        raise DatasetError(f"{url}: expected file:///absolute/path (no host, no relative path)")
    return Path(path)


def _download(
    url: str, partial: _Partial, *, size: int | None, retries: int, timeout: float, backoff: float
) -> None:
    if not urlsplit(url).netloc:
        raise DatasetError(f"{url}: no host in URL")
    logger.info("downloading %s", url)
    for attempt in range(1, retries + 1):
        try:
            _http_attempt(url, partial, size, timeout)
            return
        except _RetryableError as exc:
            if attempt == retries:
                raise DatasetError(f"{url}: giving up after {retries} attempts: {exc}") from exc
            delay = backoff * 2 ** (attempt - 1)
            logger.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.2fs with %d bytes kept",
                url, attempt, retries, exc, delay, partial.size,
            )
            time.sleep(delay)


def _http_attempt(url: str, partial: _Partial, size: int | None, timeout: float) -> None:
    headers = {"Range": f"bytes={partial.size}-"} if partial.size else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            _receive(url, response, partial, size)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _http_error(url, exc, partial) from exc
    except (http.client.InvalidURL, ValueError) as exc:
        raise DatasetError(f"{url}: invalid URL: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        # OSError covers URLError, refused/reset connections and socket timeouts;
        # HTTPException covers IncompleteRead and malformed responses.
        raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc


def _http_error(url: str, exc: urllib.error.HTTPError, partial: _Partial) -> Exception:
    if exc.code >= 500:
        return _RetryableError(f"HTTP {exc.code} {exc.reason}")
    if exc.code == 416 and partial.size:
        # Our own Range header caused it (e.g. the file changed size): start over.
        partial.restart()
        return _RetryableError("HTTP 416 for the resume request; restarting from zero")
    return DatasetError(f"{url}: HTTP {exc.code} {exc.reason}")


def _receive(url: str, response: http.client.HTTPResponse, partial: _Partial, size: int | None) -> None:
    offset = partial.size
    content_range = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if response.status == 206:
        start = int(content_range.group(1)) if content_range else None
        if start != offset:
            partial.restart()
            raise _RetryableError(f"206 for bytes {start}- but {offset} bytes are kept")
        if offset:
            logger.info("%s: resuming at byte %d", url, offset)
    elif offset:
        logger.info("%s: server ignored Range (HTTP %d); restarting from zero", url, response.status)
        partial.restart()
    length = _content_length(response)
    announced = _announced_size(content_range if response.status == 206 else None, partial.size, length)
    if size is not None and announced is not None and announced != size:
        # Refused before reading a byte of it: another file, or another version of it.
        raise DatasetError(f"{url}: the server announces {announced} bytes, declared size {size}")
    total = size if size is not None else announced
    received = _stream_into(response, partial, DownloadProgress(url.rsplit("/", 1)[-1] or url, total, partial.size))
    # http.client returns 0 at an early EOF instead of raising, so check the length here.
    if length is not None and received < length:
        raise _RetryableError(f"truncated body: {received} of {length} bytes")


def _announced_size(content_range: re.Match[str] | None, offset: int, length: int | None) -> int | None:
    """The whole file's size as a response gives it: Content-Range's total, else offset + Content-Length."""
    if content_range is not None and content_range.group(2) is not None:
        return int(content_range.group(2))
    return None if length is None else offset + length


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def cache_store(cache_dir: Path) -> Path:
    """The cache's folder of verified entries, one file per content: ``<cache_dir>/sha256/<hash>``."""
    return Path(cache_dir) / "sha256"


def cache_entry(source: Source, cache_dir: Path) -> Path:
    """Where the verified bytes of ``source`` live in the content-addressed cache."""
    return cache_store(cache_dir) / source.sha256.strip().lower()


def cached_source(source: Source, cache_dir: Path, offline: bool = False, **fetch_options) -> Path:
    """The verified file of ``source`` in the content-addressed cache, fetched if missing.

    ``<cache_dir>/sha256/<hash>``: one copy per content, whichever benchmark, checkout or
    user asks. Two processes fetching it at once each write their own partial file and
    move it into place whole, so the cache ends with one verified copy and nothing torn.
    ``offline``: never touch the network; the entry must be there with the right sha256.
    """
    digest = source.sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise DatasetError(f"source {source.name!r}: sha256 {source.sha256!r} is not 64 hex digits")
    if offline:
        return _verified_entry(source, Path(cache_dir), digest)
    return fetch_source(source, cache_store(cache_dir), dest_name=digest, **fetch_options)


def _verified_entry(source: Source, cache_dir: Path, digest: str) -> Path:
    entry = cache_entry(source, cache_dir)
    if not entry.is_file():
        raise DatasetError(
            f"datasets.offline is set and the cache has no entry {entry} for source {source.name!r} "
            f"(sha256 {digest}); import it with `benchpipe datasets import`"
        )
    try:
        actual = sha256_file(entry)
    except OSError as exc:
        raise DatasetError(f"cannot read cache entry {entry}: {exc}") from exc
    if actual != digest:
        # Not the declared bytes: left in place, it would fail every later run the same way.
        entry.unlink(missing_ok=True)
        raise DatasetError(
            f"datasets.offline is set and the cache entry {entry} for source {source.name!r} has "
            f"sha256 {actual}, expected {digest}; removed it: import the file again with "
            f"`benchpipe datasets import`"
        )
    return entry


def default_cache_dir() -> Path:
    """The user's cache (XDG): shared by every checkout and work directory of this user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "benchpipe"
