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

from benchpipe.contracts.errors import ParseError

PREFIX = ":::MLLOG "
MARKER = PREFIX.encode("ascii")
# What str.strip() removes among ASCII bytes: the official parser strips these after the record.
TRAILING_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


# The file is read in blocks this large and cut into lines with one bytes.split per block:
# far fewer Python-level steps than iterating it line by line, and memory stays flat.
_BLOCK = 1 << 22
# The C scanner that json.loads runs after its checks; see decode for when it may stand in.
_SCAN = json.JSONDecoder().scan_once


def read_records(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every MLLOG line; other lines are interleaved output, skipped.

    Streams the file: memory stays flat whatever the log's size. Line numbers count LF-ended
    lines, as ``sed -n Np`` and editors do.
    """
    for batch in record_batches(path, what):
        yield from batch


def record_batches(path: Path, what: str) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """read_records' (line number, record) pairs, a list per block of the file.

    A malformed record ends its block's list, and its ParseError is raised once that list has
    been taken: a caller that finds fault with an earlier record names it first, as it would
    reading record by record.
    """
    scan = _SCAN
    for payloads, complete in payload_batches(path):
        records = []
        add = records.append
        for n, payload in payloads:
            # decode, inlined: this loop runs once per record of every log.
            try:
                text = payload.decode()
                record, end = scan(text, 0)
                if end == len(text) and type(record) is dict:
                    add((n, record))
                    continue
            except Exception:  # noqa: BLE001 - whatever it was, the exact path says it properly
                pass
            try:
                add((n, _decode(payload, path, n, what, complete)))
            except ParseError:
                if records:
                    yield records
                raise
        if records:
            yield records


def payload_batches(path: Path) -> Iterator[tuple[list[tuple[int, bytes]], bool]]:
    """(line number, JSON text) of every record, a list per block of the file, and whether the
    block's lines are complete (False only for a last line without a newline)."""
    marker, skip, space = MARKER, len(MARKER), TRAILING_SPACE
    for lines, first, complete, has_cr in line_blocks(path):
        found = []
        add = found.append
        if has_cr:  # a lone CR or a CRLF ending somewhere in the block: record_payloads cuts those lines
            for n, raw in enumerate(lines, first):
                if marker in raw:
                    for payload in record_payloads(raw):
                        add((n, payload))
        else:
            for n, raw in enumerate(lines, first):
                at = raw.rfind(marker)
                if at >= 0:
                    add((n, raw[at + skip:].rstrip(space)))
        yield found, complete


def line_blocks(path: Path, start: int = 0, end: int | None = None,
            first: int = 1) -> Iterator[tuple[list[bytes], int, bool, bool]]:
    """The file's lines (without their LF) a block at a time: the lines, the first one's number,
    whether they are complete (all but a last line without a newline), whether any holds a CR.

    start, end: a byte range of the file (a line starts at start; end is the file's end or just
    past a LF), whose first line is line ``first`` of the file.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            if start:
                f.seek(start)
            left = -1 if end is None else end - start  # bytes still to read; -1: to the end
            pending = []  # the start of a line that the block before cut
            while left and (block := f.read(_BLOCK if left < 0 else min(_BLOCK, left))):
                left -= len(block) if left > 0 else 0
                cut = block.rfind(b"\n")
                if cut < 0:  # a line longer than a block: gather it whole
                    pending.append(block)
                    continue
                text = b"".join([*pending, block[:cut]]) if pending else block[:cut]
                pending = [block[cut + 1:]] if cut + 1 < len(block) else []
                lines = text.split(b"\n")
                yield lines, first, True, b"\r" in text
                first += len(lines)
            if pending:  # the last line, without a newline
                yield [b"".join(pending)], first, False, True
    except OSError as exc:
        raise ParseError(f"{path}: cannot read: {exc}") from exc


def line_ranges(path: Path, size: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, first line) of consecutive byte ranges of about ``size`` bytes that cover the
    file and end just past a LF (the last one at the file's end): pieces of a log that separate
    processes can read with line_blocks, each knowing the number of its first line."""
    try:
        with open(path, "rb", buffering=0) as f:
            start, first, offset, newlines = 0, 1, 0, 0  # newlines: before offset
            while block := f.read(_BLOCK):
                counted = 0  # the block's newlines before this are in ``newlines``
                # Every range a block ends, not just one: a range may be far smaller than a block.
                while (cut := block.find(b"\n", max(start + size - 1 - offset, counted))) >= 0:
                    newlines += block.count(b"\n", counted, cut + 1)
                    counted = cut + 1
                    yield start, offset + counted, first
                    start, first = offset + counted, newlines + 1
                newlines += block.count(b"\n", counted)
                offset += len(block)
            if offset > start:
                yield start, offset, first
    except OSError as exc:
        raise ParseError(f"{path}: cannot read: {exc}") from exc


def record_payloads(raw: bytes) -> Sequence[bytes]:
    """The JSON text after the last marker of each CR-separated piece of ``raw`` (one line, its LF cut off)."""
    # A CR ends a line for the official reader (universal newlines): a lone one (a progress bar
    # redrawing itself) starts a new piece that can hold a record of its own; the CR of a CRLF
    # ending leaves an empty last piece.
    found = []
    for piece in raw.split(b"\r"):
        at = piece.rfind(MARKER)
        if at >= 0:
            found.append(piece[at + len(MARKER):].rstrip(TRAILING_SPACE))
    return found


def decode(payload: bytes, path: Path, n: int, what: str, complete: bool) -> dict[str, Any]:
    """The record whose JSON text ``payload`` is; a ParseError naming line ``n`` if it is none.

    What json.loads(payload.decode()) gives, minus its per-call checks where the payload needs
    none: the C scanner decodes from the first character and must end exactly at the last
    (trailing whitespace is already stripped). Anything else (leading whitespace, extra data,
    not UTF-8, not an object, any error at all) takes _decode, the exact path.
    """
    try:
        text = payload.decode()
        record, end = _SCAN(text, 0)
        if end == len(text) and type(record) is dict:
            return record
    except Exception:  # noqa: BLE001 - whatever it was, the exact path says it properly
        pass
    return _decode(payload, path, n, what, complete)


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
