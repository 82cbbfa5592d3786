"""A benchmark's declared sources with a config's overrides (``datasets.sources``) applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from benchpipe.contracts import registry
from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import ConfigError


def override_sources(
    benchmark: str, sources: tuple[Source, ...], overrides: Mapping[str, Mapping[str, Any]]
) -> tuple[Source, ...]:
    """``sources`` with the URLs (and, where given, sha256 and size) of ``overrides`` by name.

    An override without a sha256 lists other places for the declared bytes; one with a
    sha256 declares other bytes, and then its size (or none) replaces the declared one.
    """
    by_name = {s.name: s for s in sources}
    unknown = sorted(set(overrides) - set(by_name))
    if unknown:
        raise ConfigError(
            f"datasets.sources.{benchmark}: no source named {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(by_name))})"
        )
    result = []
    for source in sources:
        override = overrides.get(source.name)
        if override is None:
            result.append(source)
            continue
        urls = list(override["urls"])
        changes: dict[str, Any] = {"url": urls[0], "mirrors": tuple(urls[1:])}
        if "sha256" in override:
            changes.update(sha256=override["sha256"].lower(), size=override.get("size"))
        elif "size" in override:
            changes["size"] = override["size"]
        result.append(dataclasses.replace(source, **changes))
    return tuple(result)


def benchmark_sources(
    names: Sequence[str], overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None, key: str
) -> dict[str, tuple[Source, ...]]:
    """Each named benchmark's sources, with its overrides applied (a benchmark without sources
    maps to none); ``key`` names where the overrides came from, for an override of a benchmark
    that is not among ``names``."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ConfigError(f"{key}: {', '.join(map(repr, unknown))} is not among the benchmarks {', '.join(names)}")
    return {
        name: override_sources(name, registry.get(name).sources, overrides.get(name, {}))
        for name in dict.fromkeys(names)
    }
