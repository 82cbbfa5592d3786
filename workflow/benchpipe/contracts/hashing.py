"""sha256 of files, the one digest every manifest in benchpipe uses.

``sha256_file`` is the only place a file is hashed; ``sha256_files`` runs it over many
files on every core. One sha256 cannot be split across cores, but hashlib releases the
GIL while it digests a large buffer, so threads hashing different files run in parallel
(a tree with one huge file still hashes on one core).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

# Large enough that the per-read Python overhead is lost in the digest time, small enough
# that one buffer per worker keeps memory flat however large the files are.
_CHUNK = 1 << 20
# Each thread's reusable chunk buffer: a fresh bytearray is zeroed when made, which for a
# 1 MiB buffer costs about as much as hashing 50 KiB.
_buffers = threading.local()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size < _CHUNK:
            # A small file (most files of a tree): one read fills a buffer of its size, the
            # next one finds the end. A file that grew meanwhile is still read to its end.
            buffer = bytearray(size + 1)
        else:
            buffer = getattr(_buffers, "chunk", None)
            if buffer is None:
                buffer = _buffers.chunk = bytearray(_CHUNK)
        view = memoryview(buffer)
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def default_workers() -> int:
    """The cores this process may run on (a cgroup or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sha256_files(paths: Sequence[Path], workers: int | None = None) -> list[str]:
    """The sha256 of each path, in the order given, hashed on ``workers`` threads (default: every core).

    The threads take the next file from one shared list as they finish one, rather than
    through an executor: a future per file costs as much as hashing a small file, and with
    many small files that overhead, run under the GIL, held back the other thread.
    """
    workers = min(workers or default_workers(), len(paths))
    if workers <= 1:
        return [sha256_file(p) for p in paths]
    # Largest first: a big file started last would leave the other cores idle at the end.
    order = sorted(range(len(paths)), key=lambda i: _size(paths[i]), reverse=True)
    digests: list[str] = [""] * len(paths)
    todo = iter(enumerate(order))  # next() on it is atomic under the GIL: each file goes to one thread
    failed: list[tuple[int, BaseException]] = []

    def work() -> None:
        for rank, i in todo:
            if failed:
                return
            try:
                digests[i] = sha256_file(paths[i])
            except BaseException as exc:  # noqa: BLE001 - raised again below, in the caller's thread
                failed.append((rank, exc))
                return

    threads = [threading.Thread(target=work, name=f"sha256-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        # The failure of the file hashed first among those that failed, as a loop over them would raise.
        raise min(failed, key=lambda item: item[0])[1]
    return digests


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # hashing it will raise, with the path in the message


class HashingReader:
    """A file that hashes what is read from it, so that the bytes written into an archive are
    the bytes checked (tarfile reads its members through ``read``)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self.digest.update(chunk)
        return chunk
