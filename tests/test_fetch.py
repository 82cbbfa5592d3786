"""fetch_source against a real local HTTP server with injectable faults."""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from http_server import GROWTH, PAYLOAD, PAYLOAD_SHA, Served

from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import DatasetError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.datasets import fetch
from benchpipe.datasets.fetch import cached_source, fetch_source
from benchpipe.datasets.progress import DownloadProgress

FAST = {"backoff": 0.0, "timeout": 5.0}


def _assert_only(dest: Path, *names: str) -> None:
    assert sorted(p.name for p in dest.iterdir()) == sorted(names)


def test_download_then_cache_hit(served: Served, tmp_path: Path) -> None:
    path = fetch_source(served.source(), tmp_path, **FAST)
    assert path == tmp_path / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert served.state.range_headers == [None]

    again = fetch_source(served.source(), tmp_path, **FAST)
    assert again == path
    assert served.state.requests == 1
    _assert_only(tmp_path, "data.bin")


def test_dest_dir_is_created(served: Served, tmp_path: Path) -> None:
    path = fetch_source(served.source(), tmp_path / "a" / "b", **FAST)
    assert sha256_file(path) == PAYLOAD_SHA


@pytest.mark.parametrize("status", ["500", "503"])
def test_server_error_then_success(status: str, served: Served, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    served.state.actions = [status, status]
    with caplog.at_level(logging.WARNING, logger="benchpipe.datasets"):
        path = fetch_source(served.source(), tmp_path, retries=3, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert served.state.requests == 3
    assert sum(f"HTTP {status}" in r.getMessage() for r in caplog.records) == 2
    _assert_only(tmp_path, "data.bin")


def test_truncated_body_resumes_with_range(served: Served, tmp_path: Path) -> None:
    served.state.actions = ["truncate"]
    path = fetch_source(served.source(), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert served.state.range_headers == [None, f"bytes={len(PAYLOAD) // 2}-"]
    _assert_only(tmp_path, "data.bin")


def test_server_ignoring_range_restarts_from_zero(served: Served, tmp_path: Path) -> None:
    served.state.actions = ["truncate"]
    served.state.honor_range = False
    path = fetch_source(served.source(), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert served.state.requests == 2
    assert served.state.range_headers[1] is not None  # a resume was tried, answered with 200
    _assert_only(tmp_path, "data.bin")


def test_truncated_twice_resumes_twice(served: Served, tmp_path: Path) -> None:
    served.state.actions = ["truncate", "truncate"]
    path = fetch_source(served.source(), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert served.state.range_headers == [
        None, f"bytes={half}-", f"bytes={half + (len(PAYLOAD) - half) // 2}-"
    ]


def test_416_on_resume_restarts_from_zero(served: Served, tmp_path: Path) -> None:
    served.state.actions = ["truncate", "416"]
    path = fetch_source(served.source(), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert served.state.range_headers[2] is None


def test_timeout_is_retried(served: Served, tmp_path: Path) -> None:
    served.state.actions = ["stall"]
    path = fetch_source(served.source(), tmp_path, backoff=0.0, timeout=0.1)
    assert path.read_bytes() == PAYLOAD
    assert served.state.requests == 2


def test_slow_server_is_waited_for_not_retried(served: Served, tmp_path: Path) -> None:
    # Each piece arrives well within the timeout, though the whole body takes longer than it.
    served.state.default = "slow"
    served.state.slow_piece, served.state.slow_delay = 512, 0.02
    started = time.monotonic()
    path = fetch_source(served.source(), tmp_path, backoff=0.0, timeout=0.1)
    assert time.monotonic() - started > 0.1
    assert path.read_bytes() == PAYLOAD
    assert served.state.requests == 1


def test_404_is_final(served: Served, tmp_path: Path) -> None:
    served.state.default = "404"
    with pytest.raises(DatasetError) as caught:
        fetch_source(served.source(), tmp_path, retries=3, **FAST)
    assert "404" in str(caught.value)
    assert served.url in str(caught.value)
    assert served.state.requests == 1
    _assert_only(tmp_path)


def test_wrong_sha256_leaves_nothing(served: Served, tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(DatasetError) as caught:
        fetch_source(served.source(sha256=wrong), tmp_path, **FAST)
    message = str(caught.value)
    assert wrong in message and PAYLOAD_SHA in message
    assert "data.bin" in message and served.url in message
    _assert_only(tmp_path)


def test_retries_exhausted(served: Served, tmp_path: Path) -> None:
    served.state.default = "503"
    with pytest.raises(DatasetError, match="3 attempts"):
        fetch_source(served.source(), tmp_path, retries=3, **FAST)
    assert served.state.requests == 3
    _assert_only(tmp_path)


def test_partial_removed_when_retries_exhausted_mid_body(served: Served, tmp_path: Path) -> None:
    served.state.default = "truncate"
    with pytest.raises(DatasetError, match="truncated"):
        fetch_source(served.source(), tmp_path, retries=2, **FAST)
    assert served.state.requests == 2
    _assert_only(tmp_path)


def test_connection_refused_is_retried_then_fails(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = Source("data.bin", f"http://127.0.0.1:{port}/data.bin", PAYLOAD_SHA)
    with pytest.raises(DatasetError, match="2 attempts"):
        fetch_source(source, tmp_path, retries=2, **FAST)
    _assert_only(tmp_path)


def test_wrong_existing_file_is_replaced(served: Served, tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"stale or corrupt")
    path = fetch_source(served.source(), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert served.state.requests == 1
    _assert_only(tmp_path, "data.bin")


def test_wrong_existing_file_is_removed_even_if_refetch_fails(served: Served, tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"stale or corrupt")
    served.state.default = "404"
    with pytest.raises(DatasetError):
        fetch_source(served.source(), tmp_path, **FAST)
    _assert_only(tmp_path)


DIGITS_URL = "package://sklearn.datasets/data/digits.csv.gz"


def _digits_sha256() -> str:
    data = importlib.resources.files("sklearn.datasets").joinpath("data/digits.csv.gz").read_bytes()
    return hashlib.sha256(data).hexdigest()


def test_package_source_is_copied_and_cached(tmp_path: Path) -> None:
    source = Source("digits.csv.gz", DIGITS_URL, _digits_sha256())
    path = fetch_source(source, tmp_path)
    assert sha256_file(path) == source.sha256
    mtime = path.stat().st_mtime_ns
    assert fetch_source(source, tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    _assert_only(tmp_path, "digits.csv.gz")


@pytest.mark.parametrize(
    "url",
    [
        "package://sklearn.datasets/data/no_such_file.csv",
        "package://benchpipe_no_such_package/data/x.csv",
        "package://sklearn.datasets/",
        "package://sklearn.datasets/../base.py",
    ],
)
def test_bad_package_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        fetch_source(Source("x.csv", url, "0" * 64), tmp_path)
    assert url in str(caught.value)
    _assert_only(tmp_path)


def test_package_sha256_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        fetch_source(Source("digits.csv.gz", DIGITS_URL, "0" * 64), tmp_path)
    _assert_only(tmp_path)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "s3://bucket/x", "data.bin"])
def test_unsupported_scheme(url: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"unsupported URL scheme .* \(use https, http, file or package\)"):
        fetch_source(Source("x", url, PAYLOAD_SHA), tmp_path)
    _assert_only(tmp_path)


@pytest.mark.parametrize("name", ["", ".", "..", "sub/x", "../x"])
def test_name_must_be_a_plain_file_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="plain file name"):
        fetch_source(Source(name, "package://sklearn.datasets/data/digits.csv.gz", "0" * 64), tmp_path)


def test_wrong_bytes_on_first_mirror_then_good_on_second(served: Served, mirror: Served, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    served.state.data = b"not the file" * 100
    source = Source("data.bin", served.url, PAYLOAD_SHA, mirrors=(mirror.url,))
    with caplog.at_level(logging.WARNING, logger="benchpipe.datasets"):
        path = fetch_source(source, tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert served.state.requests == 1 and mirror.state.range_headers == [None]  # no resume across servers
    assert any(served.url in r.message and "trying the next mirror" in r.message for r in caplog.records)
    _assert_only(tmp_path, "data.bin")


def test_dead_first_mirror_is_skipped(served: Served, mirror: Served, tmp_path: Path) -> None:
    served.state.default = "404"
    source = Source("data.bin", served.url, PAYLOAD_SHA, mirrors=(mirror.url,))
    assert fetch_source(source, tmp_path, **FAST).read_bytes() == PAYLOAD


def test_404_on_every_mirror_names_each(served: Served, mirror: Served, tmp_path: Path) -> None:
    served.state.default = mirror.state.default = "404"
    source = Source("data.bin", served.url, PAYLOAD_SHA, mirrors=(mirror.url,))
    with pytest.raises(DatasetError, match="all 2 mirrors failed") as caught:
        fetch_source(source, tmp_path, **FAST)
    assert f"{served.url}: HTTP 404" in str(caught.value) and f"{mirror.url}: HTTP 404" in str(caught.value)
    assert (served.state.requests, mirror.state.requests) == (1, 1)  # a 404 is final: no retries
    _assert_only(tmp_path)


def test_every_mirror_failing_names_each(served: Served, mirror: Served, tmp_path: Path) -> None:
    served.state.default = "404"
    mirror.state.data = b"other bytes"
    source = Source("data.bin", served.url, PAYLOAD_SHA, mirrors=(mirror.url,))
    with pytest.raises(DatasetError) as caught:
        fetch_source(source, tmp_path, **FAST)
    message = str(caught.value)
    assert "all 2 mirrors failed" in message
    assert f"{served.url}: HTTP 404" in message
    assert f"from {mirror.url}: sha256 mismatch" in message and PAYLOAD_SHA in message
    _assert_only(tmp_path)


def test_cache_is_content_addressed_and_shared_by_concurrent_fetches(served: Served, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Two benchmarks naming the same bytes differently, fetched at the same moment.
    sources = [Source("a.bin", served.url, PAYLOAD_SHA), Source("b.bin", served.url, PAYLOAD_SHA.upper())]
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda s: cached_source(s, tmp_path, **FAST), sources))
    assert paths == [tmp_path / "sha256" / PAYLOAD_SHA] * 2
    assert paths[0].read_bytes() == PAYLOAD
    _assert_only(tmp_path / "sha256", PAYLOAD_SHA)  # one copy, no partial left behind
    served.state.default = "404"  # a third asker downloads nothing
    assert cached_source(Source("c.bin", served.url, PAYLOAD_SHA), tmp_path, **FAST) == paths[0]


def test_cache_refuses_a_malformed_sha256(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="'x.bin': sha256 '../../etc' is not 64 hex digits"):
        cached_source(Source("x.bin", "http://127.0.0.1:9/x", "../../etc"), tmp_path)


# file:// sources: a mirror on a shared filesystem, or a local copy.


def _local_copy(tmp_path: Path, data: bytes = PAYLOAD, name: str = "mirror copy.bin") -> Path:
    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir(exist_ok=True)
    path = mirror_dir / name
    path.write_bytes(data)
    return path


def test_file_url_is_copied_verified(tmp_path: Path) -> None:
    local = _local_copy(tmp_path)  # the space in its name is percent-encoded in the URL
    dest = tmp_path / "dest"
    path = fetch_source(Source("data.bin", local.as_uri(), PAYLOAD_SHA, size=len(PAYLOAD)), dest)
    assert path.read_bytes() == PAYLOAD
    assert local.read_bytes() == PAYLOAD
    _assert_only(dest, "data.bin")


def test_file_mirror_after_a_dead_http_server(served: Served, tmp_path: Path) -> None:
    served.state.default = "404"
    local = _local_copy(tmp_path)
    source = Source("data.bin", served.url, PAYLOAD_SHA, mirrors=(local.as_uri(),))
    assert fetch_source(source, tmp_path / "dest", **FAST).read_bytes() == PAYLOAD


def test_missing_file_url_names_it(tmp_path: Path) -> None:
    url = (tmp_path / "no_such.bin").as_uri()
    with pytest.raises(DatasetError, match=f"{url}: no such file"):
        fetch_source(Source("data.bin", url, PAYLOAD_SHA), tmp_path / "dest")
    _assert_only(tmp_path / "dest")


def test_file_url_of_a_directory(tmp_path: Path) -> None:
    url = tmp_path.as_uri()
    with pytest.raises(DatasetError, match=f"{url}: cannot open"):
        fetch_source(Source("data.bin", url, PAYLOAD_SHA), tmp_path / "dest")
    _assert_only(tmp_path / "dest")


@pytest.mark.parametrize("url", ["file:data.bin", "file://data/x.bin", "file://fileserver/srv/x.bin",
                                 "file:///srv/x.bin?version=2"])
def test_file_url_must_be_an_absolute_local_path(url: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        fetch_source(Source("data.bin", url, PAYLOAD_SHA), tmp_path)
    assert str(caught.value) == f"{url}: expected file:///absolute/path (no host, no relative path)"
    _assert_only(tmp_path)


def test_file_url_sha256_mismatch(tmp_path: Path) -> None:
    local = _local_copy(tmp_path, b"other bytes")
    with pytest.raises(DatasetError, match=f"from {local.as_uri()}: sha256 mismatch"):
        fetch_source(Source("data.bin", local.as_uri(), PAYLOAD_SHA), tmp_path / "dest")
    _assert_only(tmp_path / "dest")


# Declared sizes.


class _RecordingProgress(DownloadProgress):
    totals: list[int | None] = []

    def __init__(self, label: str, total: int | None, done: int = 0, **kwargs: object) -> None:
        super().__init__(label, total, done, interactive=False)
        self.totals.append(total)


def test_declared_size_matching(served: Served, tmp_path: Path) -> None:
    source = Source("data.bin", served.url, PAYLOAD_SHA, size=len(PAYLOAD))
    assert fetch_source(source, tmp_path, **FAST).read_bytes() == PAYLOAD


def test_announced_size_differing_from_declared_fails_the_mirror_unread(served: Served, mirror: Served,
                                                                         tmp_path: Path) -> None:
    served.state.data = PAYLOAD[:-1]
    # Stalled after 10 bytes: reading the body would time out and retry, not fail at once.
    served.state.default = "stall"
    source = Source("data.bin", served.url, PAYLOAD_SHA, mirrors=(mirror.url,), size=len(PAYLOAD))
    assert fetch_source(source, tmp_path, backoff=0.0, timeout=0.1).read_bytes() == PAYLOAD
    assert served.state.requests == 1

    (tmp_path / "data.bin").unlink()
    source = Source("data.bin", served.url, PAYLOAD_SHA, size=len(PAYLOAD))
    with pytest.raises(DatasetError) as caught:
        fetch_source(source, tmp_path, backoff=0.0, timeout=0.1)
    assert str(caught.value) == (
        f"{served.url}: the server announces {len(PAYLOAD) - 1} bytes, declared size {len(PAYLOAD)}"
    )
    _assert_only(tmp_path)


def test_resume_whose_content_range_total_changed_fails_the_mirror(served: Served, tmp_path: Path) -> None:
    served.state.actions = ["truncate", "grown"]
    source = Source("data.bin", served.url, PAYLOAD_SHA, size=len(PAYLOAD))
    with pytest.raises(DatasetError) as caught:
        fetch_source(source, tmp_path, **FAST)
    assert str(caught.value) == (
        f"{served.url}: the server announces {len(PAYLOAD) + len(GROWTH)} bytes, declared size {len(PAYLOAD)}"
    )
    assert served.state.range_headers == [None, f"bytes={len(PAYLOAD) // 2}-"]
    _assert_only(tmp_path)


def test_delivered_size_differing_from_declared_fails_the_mirror(served: Served, mirror: Served,
                                                                  tmp_path: Path) -> None:
    served.state.default = "no-length"
    served.state.data = PAYLOAD + b"trailing"
    source = Source("data.bin", served.url, PAYLOAD_SHA, size=len(PAYLOAD), mirrors=(mirror.url,))
    mirror.state.default = "404"
    with pytest.raises(DatasetError) as caught:
        fetch_source(source, tmp_path, **FAST)
    assert f"from {served.url}: got {len(PAYLOAD) + 8} bytes, declared size {len(PAYLOAD)}" in str(caught.value)
    _assert_only(tmp_path)


def test_body_without_length_is_checked_against_the_declared_size(served: Served, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "DownloadProgress", _RecordingProgress)
    monkeypatch.setattr(_RecordingProgress, "totals", [])
    served.state.default = "no-length"
    source = Source("data.bin", served.url, PAYLOAD_SHA, size=len(PAYLOAD))
    assert fetch_source(source, tmp_path, **FAST).read_bytes() == PAYLOAD
    assert _RecordingProgress.totals == [len(PAYLOAD)]  # the bar's total, though the server sent none


def test_file_url_of_another_size_fails_before_copying(tmp_path: Path) -> None:
    local = _local_copy(tmp_path, PAYLOAD + b"x")
    with pytest.raises(DatasetError) as caught:
        fetch_source(Source("data.bin", local.as_uri(), PAYLOAD_SHA, size=len(PAYLOAD)), tmp_path / "dest")
    assert str(caught.value) == f"{local.as_uri()}: the file has {len(PAYLOAD) + 1} bytes, declared size {len(PAYLOAD)}"
    _assert_only(tmp_path / "dest")


def test_package_source_of_another_size(tmp_path: Path) -> None:
    source = Source("digits.csv.gz", DIGITS_URL, _digits_sha256(), size=1)
    with pytest.raises(DatasetError, match=r"got \d+ bytes, declared size 1$"):
        fetch_source(source, tmp_path)
    _assert_only(tmp_path)


# Receiving and hashing overlap; file and digest must still describe the same bytes.


def test_many_chunks_with_resume(served: Served, tmp_path: Path) -> None:
    # More chunks than buffers, so buffers circulate and the receiver waits for the hasher.
    data = os.urandom(fetch._CHUNK * (fetch._BUFFERS + 2) + 12345)
    served.state.data = data
    served.state.actions = ["truncate"]
    source = Source("big.bin", served.url, hashlib.sha256(data).hexdigest(), size=len(data))
    path = fetch_source(source, tmp_path, **FAST)
    assert path.read_bytes() == data
    assert served.state.range_headers == [None, f"bytes={len(data) // 2}-"]
    _assert_only(tmp_path, "big.bin")


def test_resumes_ask_for_exactly_what_was_written_and_hashed(served: Served, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks, so every cut falls inside a chunk; the stalled read times out holding
    # 10 bytes it never wrote, which the next resume must ask for again.
    monkeypatch.setattr(fetch, "_CHUNK", 1000)
    monkeypatch.setattr(fetch, "_BUFFERS", 2)
    served.state.actions = ["truncate", "truncate", "stall"]
    path = fetch_source(served.source(), tmp_path, retries=4, backoff=0.0, timeout=0.2)
    assert path.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    quarter = half + (len(PAYLOAD) - half) // 2
    assert served.state.range_headers == [None, f"bytes={half}-", f"bytes={quarter}-", f"bytes={quarter}-"]


class _InterruptingProgress(DownloadProgress):
    def __init__(self, label: str, total: int | None, done: int = 0, **kwargs: object) -> None:
        super().__init__(label, total, done, interactive=False)

    def advance(self, count: int) -> None:
        raise KeyboardInterrupt


def test_interrupt_mid_download_leaves_nothing(served: Served, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "DownloadProgress", _InterruptingProgress)
    with pytest.raises(KeyboardInterrupt):
        fetch_source(served.source(), tmp_path, **FAST)
    _assert_only(tmp_path)
    assert not [t for t in threading.enumerate() if t.name == "sha256"]


# Offline: the cache or nothing.


def test_offline_returns_the_verified_entry_without_the_network(served: Served, tmp_path: Path) -> None:
    entry = cached_source(served.source(), tmp_path, **FAST)
    assert served.state.requests == 1
    assert cached_source(served.source(), tmp_path, offline=True) == entry
    assert served.state.requests == 1


def test_offline_without_the_entry(served: Served, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        cached_source(served.source(), tmp_path, offline=True)
    message = str(caught.value)
    assert "datasets.offline is set" in message
    assert str(tmp_path / "sha256" / PAYLOAD_SHA) in message and "'data.bin'" in message
    assert served.state.requests == 0
    assert not (tmp_path / "sha256").exists()


def test_offline_with_a_wrong_entry_removes_it(served: Served, tmp_path: Path) -> None:
    entry = tmp_path / "sha256" / PAYLOAD_SHA
    entry.parent.mkdir()
    entry.write_bytes(b"not the declared bytes")
    with pytest.raises(DatasetError) as caught:
        cached_source(served.source(), tmp_path, offline=True)
    message = str(caught.value)
    assert "datasets.offline is set" in message and str(entry) in message
    assert f"expected {PAYLOAD_SHA}" in message
    assert hashlib.sha256(b"not the declared bytes").hexdigest() in message
    assert served.state.requests == 0
    _assert_only(entry.parent)


def test_partials_abandoned_by_killed_downloads_are_removed(served: Served, tmp_path: Path) -> None:
    old = tmp_path / ".data.bin.k1ll3d.partial"
    young = tmp_path / ".data.bin.l1v3.partial"  # perhaps another process's download, in progress
    other = tmp_path / ".other.bin.k1ll3d.partial"
    for leftover in (old, young, other):
        leftover.write_bytes(b"half")
    a_day_ago = time.time() - fetch.ABANDONED_AFTER_S - 60
    os.utime(old, (a_day_ago, a_day_ago))
    os.utime(other, (a_day_ago, a_day_ago))
    fetch_source(served.source(), tmp_path, **FAST)
    assert not old.exists()
    assert young.exists() and other.exists()
