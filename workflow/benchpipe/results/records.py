"""The ``:::MLLOG {json}`` line format shared by training logs and LoadGen detail logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchpipe.errors import ParseError

PREFIX = ":::MLLOG "


def read_records(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every MLLOG line; other lines are interleaved output, skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"{path}: cannot read: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.startswith(PREFIX):
            continue
        try:
            record = json.loads(line[len(PREFIX):])
        except json.JSONDecodeError as exc:
            raise ParseError(f"{path}: line {n}: malformed {what} record: {exc}") from exc
        if not isinstance(record, dict):
            raise ParseError(f"{path}: line {n}: malformed {what} record: not a JSON object")
        yield n, record
