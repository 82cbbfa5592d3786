"""The published summaries benchpipe knows (``published_sources.json``), declared as dataset sources
are: a URL at a pinned commit of MLCommons' results repository, the sha256 the bytes must have,
mirrors, and the shared content-addressed cache (``datasets.fetch``). Air-gapped, a mirror is a
local copy of the repositories (``file:///path``, holding ``inference_results_v6.1/summary.csv``
as the repository does), or ``--offline`` takes the cache alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import ConfigError

SOURCES_FILE = "published_sources.json"
RAW_BASE = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class PublishedSource:
    name: str
    family: str
    round: str
    repository: str  # mlcommons/inference_results_v6.1
    commit: str
    path: str  # in the repository
    sha256: str

    def source(self, mirrors: tuple[str, ...] = ()) -> Source:
        """As a dataset source: each mirror is a base URL holding the repositories' files under
        the repository's name (<base>/inference_results_v6.1/summary.csv)."""
        folder = self.repository.split("/")[-1]
        return Source(name=f"{folder}/{self.path}", url=f"{RAW_BASE}/{self.repository}/{self.commit}/{self.path}",
                      sha256=self.sha256, mirrors=tuple(f"{m.rstrip('/')}/{folder}/{self.path}" for m in mirrors))


@cache
def known_sources() -> dict[str, PublishedSource]:
    data = json.loads(resources.files("benchpipe.published").joinpath(SOURCES_FILE).read_text())
    return {name: PublishedSource(name=name, **entry) for name, entry in data["sources"].items()}


def chosen(names: list[str]) -> list[PublishedSource]:
    known = known_sources()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown published source {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[n] for n in names]


def fetch(source: PublishedSource, *, cache_dir: Path, mirrors: tuple[str, ...] = (), offline: bool = False) -> Path:
    """The source's verified bytes: its entry in the cache (named by its sha256), fetched if missing."""
    from benchpipe.datasets.fetch import cached_source

    return cached_source(source.source(mirrors), cache_dir, offline=offline)
