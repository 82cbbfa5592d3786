"""Air-gapped use: every source must already be in the cache, and nothing is downloaded."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import DatasetError
from benchpipe.datasets.fetch import cache_entry


def missing_from_cache(
    sources_by_benchmark: Mapping[str, Sequence[Source]], cache_dir: Path
) -> dict[str, list[Source]]:
    """Per benchmark, the sources with no cache entry (entries are only ever moved in verified)."""
    missing = {}
    for benchmark, sources in sources_by_benchmark.items():
        absent = [s for s in sources if not cache_entry(s, cache_dir).is_file()]
        if absent:
            missing[benchmark] = absent
    return missing


def require_cached(
    sources_by_benchmark: Mapping[str, Sequence[Source]],
    cache_dir: Path,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Raise one DatasetError naming every missing file, its sha256, and how to bundle it.

    ``overrides`` (datasets.sources, per benchmark) go into the suggested bundle command,
    since without them a connected machine would fetch the declared bytes, not these.
    """
    missing = missing_from_cache(sources_by_benchmark, cache_dir)
    if not missing:
        return
    files = "; ".join(
        f"{benchmark}/{s.name} (sha256 {s.sha256})" for benchmark, sources in missing.items() for s in sources
    )
    command = f"benchpipe datasets bundle --benchmarks {' '.join(sorted(missing))} --out datasets.tar"
    relevant = {b: o for b, o in (overrides or {}).items() if b in missing and o}
    if relevant:
        command += f" --sources-json {shlex.quote(json.dumps(relevant, sort_keys=True))}"
    raise DatasetError(
        f"datasets.offline is set and the cache {cache_dir} lacks {files}; on a connected machine run "
        f"`{command}`, copy datasets.tar here and run "
        f"`benchpipe datasets import datasets.tar --cache-dir {shlex.quote(str(cache_dir))}`"
    )
