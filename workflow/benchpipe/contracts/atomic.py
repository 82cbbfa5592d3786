"""Write outputs under a temporary name and rename on success.

A job killed mid-way then leaves only a dot-prefixed ``.partial`` path, which neither
Snakemake nor benchpipe takes for a finished output; the next attempt removes it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _partial_name(final: Path) -> Path:
    return final.parent / f".{final.name}.partial-{os.getpid()}"


def _remove_stale(final: Path) -> None:
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``final`` if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = _partial_name(final)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


@contextmanager
def atomic_file(final: Path, mode: str = "w") -> Iterator:
    """Open a temporary file that replaces ``final`` once closed without error."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = _partial_name(final)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
