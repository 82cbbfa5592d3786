"""sha256 of files, the one digest every manifest in benchpipe uses.

``sha256_file`` is the only place a file is hashed; ``sha256_files`` runs it over many
files on every core. One sha256 cannot be split across cores, but hashlib releases the
GIL while it digests a large buffer, so threads hashing different files run in parallel
(a tree with one huge file still hashes on one core).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Large enough that the per-read Python overhead is lost in the digest time, small enough
# that one buffer per worker keeps memory flat however large the files are.
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    # One reused buffer: reading into it avoids allocating (and zeroing) a fresh chunk per read.
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
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
    """The sha256 of each path, in the order given, hashed on ``workers`` threads (default: every core)."""
    workers = workers or default_workers()
    if workers == 1 or len(paths) < 2:
        return [sha256_file(p) for p in paths]
    # Largest first: a big file started last would leave the other cores idle at the end.
    order = sorted(range(len(paths)), key=lambda i: _size(paths[i]), reverse=True)
    digests: list[str] = [""] * len(paths)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256") as pool:
        for i, digest in zip(order, pool.map(sha256_file, [paths[i] for i in order])):
            digests[i] = digest
    return digests


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # hashing it will raise, with the path in the message
