"""The ``:::MLLOG {json}`` line format shared by training logs and LoadGen detail logs.

Which lines hold a record follows MLCommons' training log parser (mlperf_logging's
``compliance_checker.mlp_parser``), so that a log it reads is read here the same way:

* a record is whatever follows the *last* ``":::MLLOG "`` on a line (its
  ``re.sub(".*:::MLLOG ", ...)`` is greedy), so launcher prefixes such as ``[1,0]<stdout>:``
  or ``0: `` and a UTF-8 byte order mark before the first record are ignored;
* lines end at LF, CRLF or a lone CR (it reads in universal-newline mode);
* trailing whitespace is stripped before the JSON is decoded; lines without the marker
  are other output, skipped.

It reads the file as latin-1, so it never fails on bytes; a record here must be UTF-8 (JSON
is), and one that is not is an error naming its line rather than a silently garbled value.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchpipe.errors import ParseError

PREFIX = ":::MLLOG "
MARKER = PREFIX.encode("ascii")
# What str.strip() removes among ASCII bytes: the official parser strips these after the record.
_TRAILING_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def read_records(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every MLLOG line; other lines are interleaved output, skipped.

    Streams the file: memory stays flat whatever the log's size. Line numbers count LF-ended
    lines, as ``sed -n Np`` and editors do.
    """
    try:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, start=1):
                # Most lines of a chatty log hold no record: one C-level search rejects them.
                if MARKER not in raw:
                    continue
                for payload in _payloads(raw):
                    yield n, _decode(payload, path, n, what, complete=raw.endswith(b"\n"))
    except OSError as exc:
        raise ParseError(f"{path}: cannot read: {exc}") from exc


def _payloads(raw: bytes) -> Sequence[bytes]:
    """The JSON text after the last marker of each CR-separated piece of ``raw``."""
    cr = raw.find(b"\r")
    # A CR other than the one of a CRLF ending (a progress bar redrawing itself) ends a line
    # for the official reader, so each piece can hold a record of its own.
    pieces = (raw,) if cr < 0 or raw.endswith(b"\r\n") and cr == len(raw) - 2 else raw.split(b"\r")
    found = []
    for piece in pieces:
        at = piece.rfind(MARKER)
        if at >= 0:
            found.append(piece[at + len(MARKER):].rstrip(_TRAILING_SPACE))
    return found


def _decode(payload: bytes, path: Path, n: int, what: str, complete: bool) -> dict[str, Any]:
    where = f"{path}: line {n}: malformed {what} record"
    cut = "" if complete else " (the last line has no newline: the log was cut off mid-write?)"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{where}: not UTF-8: {exc}{cut}") from exc
    try:
        record = json.loads(text)
    except RecursionError as exc:
        raise ParseError(f"{where}: JSON nested too deeply{cut}") from exc
    except ValueError as exc:  # JSONDecodeError, and integers past Python's digit limit
        raise ParseError(f"{where}: {exc}{cut}") from exc
    if not isinstance(record, dict):
        raise ParseError(f"{where}: not a JSON object")
    return record


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a log's records pile up.

    Every record is a fresh dict that survives, so on a long log each full collection
    rescans all those read so far: about a third of the parse time, for nothing, since
    decoded JSON holds no reference cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
