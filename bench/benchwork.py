"""What both bench scripts need around their measurements: a work directory and the data."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BENCHMARK = "digits"


@contextmanager
def work_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary directory, removed afterwards unless ``keep`` (then its path is printed)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def prepared_data(data: Path | None, work: Path) -> Path:
    """``data`` if given (a prepared dataset to reuse), else digits prepared under ``work``."""
    if data is not None:
        return data.resolve()
    from benchpipe import benchmarks
    from benchpipe.datasets.prepare import prepare

    out = work / "data" / BENCHMARK
    prepare(benchmarks.get(BENCHMARK), out)
    return out
