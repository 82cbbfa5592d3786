"""What a benchmark declares about each file its dataset is built from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchpipe.errors import ConfigError


@dataclass(frozen=True)
class Source:
    """One raw dataset file: where it comes from, and the size and sha256 it must have.

    ``url`` is ``https://``, ``http://``, ``file://<absolute path>`` or
    ``package://<python.package>/<path inside it>`` for data shipped inside an installed
    Python package. ``mirrors`` are further URLs of the same bytes, tried in order when one
    fails or serves other bytes. ``size`` (bytes), when known, lets a fetch refuse a wrong
    file before reading all of it.
    """

    name: str
    url: str
    sha256: str
    mirrors: tuple[str, ...] = ()
    size: int | None = None

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)


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
