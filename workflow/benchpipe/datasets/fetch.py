"""Fetch a dataset source into a directory, verified against its declared sha256.

The file at ``dest_dir/<source.name>`` exists only once its content has been verified:
downloads go to a hidden ``.partial`` file in the same directory and are moved into place
with ``os.replace``, so an interrupted, truncated or corrupt download never looks like a
finished one, and two processes fetching the same source cannot see each other's halves.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from benchpipe.errors import DatasetError
from benchpipe.hashing import sha256_file

from .progress import DownloadProgress
from .source import Source

logger = logging.getLogger("benchpipe.datasets")

_CHUNK = 1024 * 1024
_CONTENT_RANGE_START = re.compile(r"bytes\s+(\d+)-")


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


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
    its sha256 differs from ``source.sha256``.
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
    failures: list[DatasetError] = []
    for url in source.urls:
        # A fresh partial per mirror: bytes from one server never seed a resume on another.
        partial = _Partial.create(target)
        try:
            _fill(url, partial, retries=retries, timeout=timeout, backoff=backoff)
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


def _target_path(name: str, dest_dir: Path) -> Path:
    # A name with separators or dots would write outside dest_dir or onto it.
    if name in ("", ".", "..") or Path(name).name != name:
        raise DatasetError(f"source name {name!r} is not a plain file name")
    return dest_dir / name


def _fill(url: str, partial: _Partial, *, retries: int, timeout: float, backoff: float) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "package":
        _copy_package_resource(url, partial)
    elif scheme in ("http", "https"):
        _download(url, partial, retries=retries, timeout=timeout, backoff=backoff)
    else:
        raise DatasetError(f"{url}: unsupported URL scheme {scheme!r} (use http, https or package)")


def _verify(source: Source, url: str, partial: _Partial, expected: str) -> None:
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

    Hashing as bytes arrive spares a second read of the file; on resume the file is cut
    back to the bytes already hashed, so file and digest always describe the same bytes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._digest = hashlib.sha256()

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
        self._digest = hashlib.sha256()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def open_for_append(self) -> BinaryIO:
        try:
            out = open(self.path, "r+b")
            out.truncate(self.size)
            out.seek(self.size)
        except OSError as exc:
            raise DatasetError(f"cannot write {self.path}: {exc}") from exc
        return out

    def append(self, out: BinaryIO, chunk: bytes) -> None:
        try:
            out.write(chunk)
            # Flushed per chunk so that a local write error surfaces here, as final,
            # and not later at close() where it could pass for a network failure.
            out.flush()
        except OSError as exc:
            raise DatasetError(f"cannot write {self.path}: {exc}") from exc
        self._digest.update(chunk)
        self.size += len(chunk)


def _stream_into(stream: _Readable, partial: _Partial, progress: DownloadProgress | None = None) -> int:
    """Append everything ``stream`` yields to ``partial``; return the number of bytes.

    Read errors propagate unchanged (the caller decides whether they are transient);
    write errors are DatasetError, since retrying would not fix a full disk.
    """
    received = 0
    out = partial.open_for_append()
    try:
        while chunk := stream.read(_CHUNK):
            partial.append(out, chunk)
            received += len(chunk)
            if progress is not None:
                progress.advance(len(chunk))
    finally:
        out.close()
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


def _download(url: str, partial: _Partial, *, retries: int, timeout: float, backoff: float) -> None:
    if not urlsplit(url).netloc:
        raise DatasetError(f"{url}: no host in URL")
    logger.info("downloading %s", url)
    for attempt in range(1, retries + 1):
        try:
            _http_attempt(url, partial, timeout)
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


def _http_attempt(url: str, partial: _Partial, timeout: float) -> None:
    headers = {"Range": f"bytes={partial.size}-"} if partial.size else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            _receive(url, response, partial)
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


def _receive(url: str, response: http.client.HTTPResponse, partial: _Partial) -> None:
    offset = partial.size
    if response.status == 206:
        start = _content_range_start(response)
        if start != offset:
            partial.restart()
            raise _RetryableError(f"206 for bytes {start}- but {offset} bytes are kept")
        if offset:
            logger.info("%s: resuming at byte %d", url, offset)
    elif offset:
        logger.info("%s: server ignored Range (HTTP %d); restarting from zero", url, response.status)
        partial.restart()
    expected = _content_length(response)
    total = None if expected is None else partial.size + expected
    received = _stream_into(response, partial, DownloadProgress(url.rsplit("/", 1)[-1] or url, total, partial.size))
    # http.client returns b"" at an early EOF instead of raising, so check the length here.
    if expected is not None and received < expected:
        raise _RetryableError(f"truncated body: {received} of {expected} bytes")


def _content_range_start(response: http.client.HTTPResponse) -> int | None:
    match = _CONTENT_RANGE_START.match(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def cached_source(source: Source, cache_dir: Path, **fetch_options) -> Path:
    """The verified file of ``source`` in the content-addressed cache, fetched if missing.

    ``<cache_dir>/sha256/<hash>``: one copy per content, whichever benchmark, checkout or
    user asks. Two processes fetching it at once each write their own partial file and
    move it into place whole, so the cache ends with one verified copy and nothing torn.
    """
    digest = source.sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise DatasetError(f"source {source.name!r}: sha256 {source.sha256!r} is not 64 hex digits")
    return fetch_source(source, cache_dir / "sha256", dest_name=digest, **fetch_options)


def default_cache_dir() -> Path:
    """The user's cache (XDG): shared by every checkout and work directory of this user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "benchpipe"
