"""What a benchmark declares about each file its dataset is built from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One raw dataset file: where it comes from and the sha256 it must have.

    ``url`` is ``http://``, ``https://`` or ``package://<python.package>/<path inside it>``
    for data shipped inside an installed Python package. ``mirrors`` are further URLs of
    the same bytes, tried in order when one fails or serves other bytes.
    """

    name: str
    url: str
    sha256: str
    mirrors: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)
