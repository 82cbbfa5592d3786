"""LoadGen detail logs (``:::MLLOG {json}`` per event) and the accuracy script's output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import ParseError
from benchpipe.results.records import collection_paused, read_records

# The detail-log key that holds each scenario's result (samples/s, or a latency in ns), as
# TEST01's verify_performance.py and the submission checker read it.
RESULT_KEY = {
    "Offline": "result_samples_per_second",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
    "Server": "result_completed_samples_per_sec",
}
_ACCURACY = re.compile(r"^accuracy=([0-9.]+)%")


@dataclass(frozen=True)
class DetailLog:
    values: dict[str, Any]  # last value logged for each key
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def require(self, key: str, path: Path) -> Any:
        if key not in self.values:
            raise ParseError(f"{path}: key '{key}' missing")
        return self.values[key]


def parse_detail_log(path: Path) -> DetailLog:
    values: dict[str, Any] = {}
    errors: list[str] = []
    warnings: list[str] = []
    with collection_paused():
        for n, record in read_records(path, "LoadGen"):
            key, value, meta = _fields(record, path, n)
            values[key] = value
            if meta.get("is_error"):
                errors.append(f"line {n}: {key}: {value}")
            elif meta.get("is_warning"):
                warnings.append(f"line {n}: {key}: {value}")
    if not values:
        raise ParseError(f"{path}: no LoadGen records")
    return DetailLog(values, errors, warnings)


def _fields(record: dict[str, Any], path: Path, n: int) -> tuple[str, Any, dict[str, Any]]:
    where = f"{path}: line {n}: malformed LoadGen record"
    if "key" not in record:
        raise ParseError(f"{where}: no 'key'")
    key, meta = record["key"], record.get("metadata") or {}
    # Checked here: a list key or metadata would otherwise fail later as a bare TypeError.
    if not isinstance(key, str):
        raise ParseError(f"{where}: key {key!r} is not a string")
    if not isinstance(meta, dict):
        raise ParseError(f"{where}: metadata {meta!r} is not an object")
    return key, record.get("value"), meta


def parse_accuracy_txt(path: Path) -> float:
    """Top-1 as a fraction, from the first line the accuracy script wrote."""
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise ParseError(f"{path}: cannot read accuracy result: {exc}") from exc
    match = _ACCURACY.match(first)
    if not match:
        raise ParseError(f"{path}: line 1: expected 'accuracy=<percent>%', found {first!r}")
    return float(match.group(1)) / 100.0
