"""MLLOG training logs: events, and the summary of one run derived from them alone."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from json import encoder as _json_encoder
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import ParseError, TrainingError
from benchpipe.contracts.layout import MLLOG_FILE, MODEL_DIR
from benchpipe.results.records import (
    MARKER,
    TRAILING_SPACE,
    collection_paused,
    decode,
    line_blocks,
    line_ranges,
    record_batches,
    record_payloads,
)


@dataclass(frozen=True, slots=True)
class Event:
    line: int
    time_ms: int
    event_type: str
    key: str
    value: Any
    metadata: dict[str, Any]


# Each field's slot, written directly: what Event() does, at half its cost (its frozen
# __init__ goes through object.__setattr__ for each field). Used where a log's records
# become Events, after the checks that Event() would not make either.
_EVENT_SLOTS = tuple(getattr(Event, f.name).__set__ for f in fields(Event))


@dataclass(frozen=True)
class TrainingRun:
    """One run as its log tells it. ``time_to_train_min`` is None unless it succeeded."""

    benchmark: str
    org: str
    platform: str
    division: str
    seed: int | None
    status: str
    run_start_ms: int | None
    run_stop_ms: int | None
    epochs: int
    best_eval_accuracy: float | None  # the highest eval_accuracy
    events: int
    # The lowest: the best where eval_accuracy is a loss (llama2_70b_lora).
    lowest_eval_accuracy: float | None = None

    @property
    def time_to_train_min(self) -> float | None:
        if self.status != "success" or self.run_start_ms is None or self.run_stop_ms is None:
            return None
        return (self.run_stop_ms - self.run_start_ms) / 60000.0


def parse_mllog(path: Path) -> list[Event]:
    events: list[Event] = []
    add, new = events.append, object.__new__
    set_line, set_time, set_type, set_key, set_value, set_metadata = _EVENT_SLOTS
    with collection_paused():
        for batch in record_batches(path, "MLLOG"):
            for n, record in batch:
                get = record.get
                t, e, k, m = get("time_ms"), get("event_type"), get("key"), get("metadata")
                if type(m) is dict and type(t) is int and type(e) is str and type(k) is str:
                    # The shape every logger writes: _event's Event, with nothing to convert.
                    event = new(Event)
                    set_line(event, n)
                    set_time(event, t)
                    set_type(event, e)
                    set_key(event, k)
                    set_value(event, get("value"))
                    set_metadata(event, m)
                    add(event)
                else:
                    add(_event(n, record, path))
    if not events:
        raise ParseError(f"{path}: no MLLOG records")
    return events


# --- the training_events columns, straight from a log ----------------------------------------

def _encoder(sort_keys: bool) -> Any:
    """json.dumps(obj, sort_keys=...) for decoded JSON, without building an encoder per call.

    json.dumps makes a fresh C encoder for every value it is given (and a fresh JSONEncoder
    too when sort_keys is set): most of its cost for a small value. This is the same C
    encoder with the same settings, made once; only the check for reference cycles is left
    out, and decoded JSON has none.
    """
    make = _json_encoder.c_make_encoder
    if make is None:  # no C accelerator in this interpreter: the plain call, as slow as it is
        return lambda obj: json.dumps(obj, sort_keys=sort_keys)
    encode = make(None, json.JSONEncoder().default, _json_encoder.encode_basestring_ascii, None,
                  ": ", ", ", sort_keys, False, True)
    join = "".join
    return lambda obj: join(encode(obj, 0))


# What training_events keeps of a record's value and metadata (metadata with its keys sorted).
value_json = _encoder(sort_keys=False)
metadata_json = _encoder(sort_keys=True)

EVENT_COLUMNS = ("line", "time_ms", "event_type", "key", "value_json", "metadata_json")

# The record as mlperf_logging's mllog writes it (json.dumps of its six fields in this order),
# when every value in it is one whose JSON text json.dumps writes back unchanged: null, true,
# false, an integer without sign of zero or leading zeros (18 digits at most), a float whose
# text is its repr (checked after the match), a string of printable ASCII without quote or
# backslash. Its columns are then slices of the line's bytes, with no decoding and re-encoding.
# Matched from just after the line's last marker to its end; quantifiers are possessive, as
# nothing in this pattern needs to backtrack.
_STR = rb'[ !#-\[\]-~]*+'
# Metadata strings leave out the comma too, and its keys the space and "!" as well: so a pair
# starts after every ', "' and nowhere else, and sorting the pairs' text sorts them by key
# (after a key comes its closing quote, which sorts before every character left in a key).
_META_STR = rb'[ !#-+\--\[\]-~]*+'
_META_KEY = rb'[#-+\--\[\]-~]*+'
_INT = rb'(?:0|-?[1-9][0-9]{0,17}+)'
_FLOAT = rb'-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++(?:[eE][-+]?[0-9]++)?|[eE][-+]?[0-9]++)'
_META_PAIR = rb'"' + _META_KEY + rb'": (?:null|true|false|' + _INT + rb'|"' + _META_STR + rb'")'
_CANONICAL = re.compile(
    rb'\{"namespace": "' + _STR + rb'", "time_ms": (' + _INT + rb'), "event_type": "(' + _STR
    + rb')", "key": "(' + _STR + rb')", "value": (?:(null|true|false|' + _INT + rb'|"' + _STR + rb'")|('
    + _FLOAT + rb')), "metadata": \{(' + _META_PAIR + rb'(?:, ' + _META_PAIR + rb')*+)?\}\}'
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# A log this large is read by several processes, a range of lines each (see event_batches).
PARALLEL_MIN_BYTES = 32 << 20
_RANGE_BYTES = 1 << 20


def event_columns(path: Path, rows: int = 50_000) -> Iterator[dict[str, list[Any]]]:
    """The EVENT_COLUMNS of every record of a log, streamed, in batches of about ``rows`` records.

    Each batch holds what the events of parse_mllog give, encoded as training_log_rows
    encodes them, without an Event or a row dict per record: a log of any size goes to a
    table with the memory of one batch. Text columns hold str, or ASCII bytes where the
    record took the fast path (Arrow takes both as strings; see event_batches). Raises what
    parse_mllog raises, naming the line.
    """
    seen = 0
    for columns in _range_columns(path, 0, None, 1, rows):
        seen += len(columns["line"])
        yield columns
    if not seen:
        raise ParseError(f"{path}: no MLLOG records")


def event_batches(path: Path, rows: int = 50_000, workers: int | None = None,
                  summary: RunSummary | None = None) -> Iterator[Any]:
    """event_columns as Arrow record batches (EVENT_COLUMNS, typed as training_events types them).

    A log of PARALLEL_MIN_BYTES or more is read by ``workers`` processes (default: one per
    usable CPU), a range of lines each, and its batches come back in the log's order; at most
    two ranges a process are in flight, so memory stays flat. The same batches, the same
    errors (the first bad line of the log is the one named) as one process reading it all.
    ``summary``, if given, takes every batch (in the worker that read it, then merged in order).
    """
    if workers is None:
        workers = _usable_cpus() if path.stat().st_size >= PARALLEL_MIN_BYTES else 1
    if workers > 1:
        for batch, part in _parallel_batches(path, workers, summary is not None):
            if summary is not None:
                summary.merge(part)
            yield batch
        return
    for columns in event_columns(path, rows):
        batch = _record_batch(columns, path)
        if summary is not None:
            summary.add_batch(batch)
        yield batch


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, under SLURM its allocation); 1 where
    processes cannot be forked."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _record_batch(columns: dict[str, list[Any]], path: Path) -> Any:
    import pyarrow as pa

    names = list(EVENT_COLUMNS)
    try:
        arrays = [int_array(columns["line"], pa.int32()), int_array(columns["time_ms"], pa.int64())]
    except OverflowError:
        n, t = next(((n, t) for n, t in zip(columns["line"], columns["time_ms"])
                     if not _INT64_MIN <= t <= _INT64_MAX), (columns["line"][-1], None))
        if t is None:
            raise ParseError(f"{path}: line {n}: past the events table's int32 line numbers") from None
        raise ParseError(f"{path}: line {n}: time_ms {t} does not fit the events table's int64") from None
    for name in names[2:]:
        try:
            arrays.append(string_array(columns[name]))
        except UnicodeEncodeError:
            n = next(n for n, v in zip(columns["line"], columns[name]) if not _encodes(v))
            raise ParseError(f"{path}: line {n}: {name.removesuffix('_json')} holds a lone surrogate "
                             "(a \\ud800-\\udfff escape), which is not Unicode text") from None
    return pa.record_batch(arrays, names=names)


# Arrow arrays built from their buffers, not by pa.array: pa.array (and pa.scalar) on Python
# objects imports pandas, to ask whether the input is a pandas object. That costs 55 MB and
# half a second in every process that parses, workers included, for no use; this is as fast.
def int_array(values: list[int], type_: Any) -> Any:
    """An int32 or int64 Arrow array of ``values``; OverflowError where one does not fit."""
    from array import array

    import pyarrow as pa

    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(array(_TYPECODES[type_.bit_width], values))])


def string_array(values: list[bytes | str]) -> Any:
    """A string Arrow array of ``values``: UTF-8 bytes, or str (UnicodeEncodeError where one
    is not Unicode text)."""
    from array import array
    from itertools import accumulate

    import pyarrow as pa

    try:
        data = b"".join(values)  # type: ignore[arg-type]
    except TypeError:  # some str among them
        values = [v if type(v) is bytes else v.encode() for v in values]  # type: ignore[union-attr]
        data = b"".join(values)  # type: ignore[arg-type]
    offsets = array("i", accumulate(map(len, values), initial=0))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


_TYPECODES = {32: "i", 64: "q"}


def _encodes(value: bytes | str) -> bool:
    if type(value) is bytes:
        return True
    try:
        value.encode()  # type: ignore[union-attr]
    except UnicodeEncodeError:
        return False
    return True


def _parallel_batches(path: Path, workers: int, summarize: bool) -> Iterator[tuple[Any, RunSummary | None]]:
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    # fork: a worker needs nothing but this module, already loaded, and imports nothing anew.
    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"))
    try:
        ranges = line_ranges(path, _RANGE_BYTES)
        running = deque(pool.submit(_range_batch, path, *r, summarize) for _, r in zip(range(2 * workers), ranges))
        seen = 0
        while running:
            batch, part = running.popleft().result()
            following = next(ranges, None)
            if following is not None:
                running.append(pool.submit(_range_batch, path, *following, summarize))
            if batch is not None:
                seen += batch.num_rows
                yield batch, part
        if not seen:
            raise ParseError(f"{path}: no MLLOG records")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _range_batch(path: Path, start: int, end: int, first: int,
                 summarize: bool) -> tuple[Any, RunSummary | None]:
    """One range of a log as one record batch, and its summary if asked (a worker's share);
    no batch where the range holds no record."""
    for columns in _range_columns(path, start, end, first, 0):
        batch = _record_batch(columns, path)
        part = None
        if summarize:
            part = RunSummary(path, part=True)
            part.add_batch(batch)
        return batch, part
    return None, None


def _range_columns(path: Path, start: int, end: int | None, first: int,
                   rows: int) -> Iterator[dict[str, list[Any]]]:
    """The columns of the records in a byte range of a log, in batches of ``rows`` or more (0: one)."""
    names = EVENT_COLUMNS
    columns: dict[str, list[Any]] = {name: [] for name in names}
    with collection_paused():
        for lines, number, complete, has_cr in line_blocks(path, start, end, first):
            numbered: Iterable[tuple[int, bytes]] = enumerate(lines, number)
            if has_cr:  # lines that a CR cuts: each piece's record, after the marker it followed
                numbered = [(n, MARKER + payload) for n, raw in numbered if MARKER in raw
                            for payload in record_payloads(raw)]
            _add_columns(numbered, complete, path, *(columns[name].append for name in names))
            if rows and len(columns["line"]) >= rows:
                yield columns
                columns = {name: [] for name in names}
    if columns["line"]:
        yield columns


def _add_columns(numbered: Iterable[tuple[int, bytes]], complete: bool, path: Path, line: Any, time_ms: Any,
                 event_type: Any, key: Any, value: Any, metadata: Any) -> None:
    """The columns of each (line number, line) that holds a record: a canonical one's from its
    bytes, any other's from its decoded JSON, encoded as training_log_rows encodes an Event."""
    canonical, marker, skip, space = _CANONICAL.fullmatch, MARKER, len(MARKER), TRAILING_SPACE
    encode_value, encode_metadata = value_json, metadata_json
    for n, raw in numbered:
        at = raw.rfind(marker)
        if at < 0:
            continue
        at += skip
        found = canonical(raw, at)
        if found is None and raw[-1:] in space:  # trailing whitespace: the official parser strips it
            found = canonical(raw[at:].rstrip(space))
        if found is not None:
            t, e, k, v, f, meta = found.groups()
            if f is not None:
                v = f if repr(float(f)).encode() == f else None
            if meta is None:
                m = b"{}"
            elif b', "' not in meta:
                m = b"{" + meta + b"}"
            else:
                pairs = meta[1:].split(b', "')
                pairs.sort()
                # A key twice: json.loads keeps the last value. Not this path's business.
                m = (b'{"' + b', "'.join(pairs) + b"}"
                     if len({p[:p.index(b'"')] for p in pairs}) == len(pairs) else None)
            if v is not None and m is not None:
                line(n)
                time_ms(int(t))
                event_type(e)
                key(k)
                value(v)
                metadata(m)
                continue
        record = decode(raw[at:].rstrip(space), path, n, "MLLOG", complete)
        get = record.get
        t, e, k, m = get("time_ms"), get("event_type"), get("key"), get("metadata")
        if type(m) is not dict or type(t) is not int or type(e) is not str or type(k) is not str:
            # Not the shape every logger writes: what parse_mllog makes of it, or its error.
            event = _event(n, record, path)
            t, e, k, m = event.time_ms, event.event_type, event.key, event.metadata
        line(n)
        time_ms(t)
        event_type(e)
        key(k)
        value(encode_value(get("value")))
        metadata(encode_metadata(m))


def _event(n: int, record: dict[str, Any], path: Path) -> Event:
    try:
        metadata = record.get("metadata") or {}
        return Event(n, _time_ms(record["time_ms"]), str(record["event_type"]), str(record["key"]),
                     record.get("value"), metadata if type(metadata) is dict else dict(metadata))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ParseError(f"{path}: line {n}: malformed MLLOG record: {exc!r}") from exc


def _time_ms(value: Any) -> int:
    if type(value) is int:  # what every logger writes: no conversion to pay for
        return value
    # The official parser takes any float()-able time ("1.5e12", 12.0); NaN and inf cannot be a time.
    return int(float(value))


class RunSummary:
    """What summarize_run derives, taken an event or a batch of events at a time: what it
    keeps does not grow with the log (the first event of each key it reads, two maxima; a
    part, up to three run_start and run_stop events). Summaries of consecutive parts of a log
    merge into the whole log's.

    A log out of order is refused, naming the line: a second run_start or run_stop, a
    run_stop before run_start (in the log or in time), an eval_accuracy that is NaN or
    infinite, and, once the log is read, a run that never stopped. The official compliance
    checker only warns about some of these; a result table must not count such a run.
    """

    # The keys whose first event the summary reads.
    FIRST = ("submission_benchmark", "submission_org", "submission_platform", "submission_division", "seed",
             "run_start", "run_stop")
    # The keys of every event the summary looks at.
    READ = (*FIRST, "eval_accuracy", "block_start")

    def __init__(self, path: Path, part: bool = False) -> None:
        self.path = path
        # A part (a worker's range of lines) cannot judge its run_start and run_stop without
        # the parts before it: it keeps them for merge, and keeps its first error for merge
        # to raise after them, so that the first bad line of the whole log is the one named.
        self.part = part
        self.first: dict[str, Event] = {}
        self.best_accuracy: float | None = None
        self.lowest_accuracy: float | None = None
        self.epochs: int | None = None
        self.count = 0
        self.last_line: int | None = None
        self.pending: list[Event] = []
        self.error: ParseError | None = None
        self.stopped_at: int | None = None  # a part: the line after which nothing it read matters

    def add(self, e: Event) -> None:
        self.count += 1
        self.last_line = e.line
        self._take(e)

    def add_batch(self, batch: Any) -> None:
        """The events of an event_batches batch: the few it reads decoded back, the rest counted."""
        import pyarrow.compute as pc

        if not batch.num_rows:
            return
        self.count += batch.num_rows
        self.last_line = batch.column("line")[-1].as_py()
        read = batch.filter(pc.is_in(batch.column("key"), value_set=string_array(list(self.READ)))).to_pydict()
        loads = json.loads
        # In the log's order, through what add does: both paths judge the same events alike.
        for n, t, event_type, key, value, metadata in zip(*(read[name] for name in EVENT_COLUMNS)):
            self._take(Event(n, t, event_type, key, loads(value), loads(metadata)))

    def merge(self, later: RunSummary) -> None:
        """Take the summary of the part of the log that follows this one's."""
        if self.stopped_at is not None:  # a part already failed: what follows it cannot matter
            return
        self.count += later.count
        if later.last_line is not None:
            self.last_line = later.last_line
        for e in later.pending:
            self._take(e)
        if later.error is not None:
            self._fail(later.error, later.stopped_at)
        if self.stopped_at is None:
            # A part that stopped at its second run_start or run_stop: its events above are
            # refused, whatever came before them (a whole log raised there).
            self.stopped_at = later.stopped_at
        if self.stopped_at is not None:
            return
        for key, event in later.first.items():
            self.first.setdefault(key, event)
        if later.best_accuracy is not None:
            self._best(later.best_accuracy)
        if later.lowest_accuracy is not None:
            self._best(later.lowest_accuracy)
        if later.epochs is not None and (self.epochs is None or later.epochs > self.epochs):
            self.epochs = later.epochs

    def _take(self, e: Event) -> None:
        if self.stopped_at is not None:
            return
        try:
            if e.key in ("run_start", "run_stop"):
                self._order(e)
            elif e.key in self.FIRST:
                self.first.setdefault(e.key, e)
            elif e.key == "eval_accuracy":
                self._accuracy(e.line, e.value)
            elif e.key == "block_start" and "first_epoch_num" in e.metadata:
                self._block(e.line, e.metadata)
        except ParseError as exc:
            self._fail(exc, e.line)

    def _fail(self, error: ParseError, line: int | None) -> None:
        if not self.part:
            raise error
        if self.stopped_at is None:
            self.error, self.stopped_at = error, line

    def _order(self, e: Event) -> None:
        if self.part:
            self.pending.append(e)
            if sum(p.key == e.key for p in self.pending) == 2:
                # Refused on merge, at this line or before: nothing after it can matter.
                self.stopped_at = e.line
            return
        first, where = self.first, f"{self.path}: line {e.line}"
        earlier = first.get(e.key)
        if earlier is not None:
            raise ParseError(f"{where}: second {e.key} (the first is on line {earlier.line})")
        if e.key == "run_stop":
            start = first.get("run_start")
            if start is None:
                raise ParseError(f"{where}: run_stop before run_start")
            if e.time_ms < start.time_ms:
                raise ParseError(f"{where}: run_stop before run_start: its time_ms {e.time_ms} is earlier "
                                 f"than run_start's {start.time_ms} (line {start.line})")
        first[e.key] = e

    def _accuracy(self, n: int, value: Any) -> None:
        try:
            accuracy = float(value)
        except (TypeError, ValueError):
            raise ParseError(f"{self.path}: line {n}: eval_accuracy {value!r} is not a number") from None
        if not math.isfinite(accuracy):
            # A diverged evaluation: no accuracy to compare, and the official checker takes it
            # as one. NaN and the infinities shown as the log writes them.
            shown = json.dumps(value) if isinstance(value, float) else repr(value)
            what = "a number" if accuracy != accuracy else "a finite number"
            raise ParseError(f"{self.path}: line {n}: eval_accuracy {shown} is not {what}")
        self._best(accuracy)

    def _best(self, accuracy: float) -> None:
        if self.best_accuracy is None or accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
        if self.lowest_accuracy is None or accuracy < self.lowest_accuracy:
            self.lowest_accuracy = accuracy

    def _block(self, n: int, metadata: dict[str, Any]) -> None:
        try:
            last = int(metadata["first_epoch_num"]) + int(metadata.get("epoch_count", 1)) - 1
        except (TypeError, ValueError, OverflowError):
            raise ParseError(f"{self.path}: line {n}: block_start metadata {metadata!r}: first_epoch_num "
                             "and epoch_count must be integers") from None
        if self.epochs is None or last > self.epochs:
            self.epochs = last

    def run(self) -> TrainingRun:
        """The run, once every part of the log is in; ParseError where it did not finish."""
        first, path = self.first, self.path
        if self.error is not None:
            raise self.error

        def value(key: str) -> Any:
            if key not in first:
                raise ParseError(f"{path}: required key '{key}' missing")
            return first[key].value

        benchmark, org, platform, division = (str(value(k)) for k in self.FIRST[:4])
        start, stop = first.get("run_start"), first.get("run_stop")
        ends = f"the log ends on line {self.last_line}"
        # A run killed on the way has no run_stop: its log is no result, and the workflow never
        # keeps one (a run's folder appears only once it has finished).
        if start is None:
            raise ParseError(f"{path}: no run_start or run_stop ({ends}): the run never started")
        if stop is None:
            raise ParseError(f"{path}: no run_stop: the run did not finish (run_start on line {start.line}, {ends})")
        return TrainingRun(
            benchmark=benchmark,
            org=org,
            platform=platform,
            division=division,
            seed=int(first["seed"].value) if "seed" in first else None,
            # run_stop's own status: aborted is a run that stopped short of the target.
            status=str(stop.metadata.get("status", "aborted")),
            run_start_ms=start.time_ms,
            run_stop_ms=stop.time_ms,
            epochs=self.epochs or 0,
            best_eval_accuracy=self.best_accuracy,
            events=self.count,
            lowest_eval_accuracy=self.lowest_accuracy,
        )


def summarize_run(events: list[Event], path: Path) -> TrainingRun:
    summary = RunSummary(path)
    for e in events:
        summary.add(e)
    return summary.run()


def read_run(run_dir: Path) -> TrainingRun:
    """The run a run folder's log tells, read streamed: memory does not grow with the log.

    ParseError where the log is out of order or has no run_stop: a run folder holds a finished
    run only (train_run writes it whole or not at all), so that is a log to look at, not a run.
    """
    path = run_dir / MLLOG_FILE
    summary = RunSummary(path)
    for _ in event_batches(path, summary=summary):
        pass
    return summary.run()


def select_model(run_dirs: list[Path]) -> Path:
    """The model of the lowest-numbered successful run: inference serves a converged model.

    The open division's rules do not require the quality target: when no open run reached
    it, the run with the best evaluation accuracy is served (the lowest-numbered of equals).
    """
    ordered = sorted(run_dirs, key=lambda p: (len(p.name), p.name))
    runs = [(run_dir, read_run(run_dir)) for run_dir in ordered]
    chosen = next((d for d, run in runs if run.status == "success"), None)
    if chosen is None and runs and all(run.division == "open" for _, run in runs):
        scored = [(d, run.best_eval_accuracy) for d, run in runs if run.best_eval_accuracy is not None]
        if scored:
            best = max(accuracy for _, accuracy in scored)
            chosen = next(d for d, accuracy in scored if accuracy == best)
    if chosen is None:
        raise TrainingError(
            f"no successful training run among {', '.join(str(p) for p in run_dirs)}: nothing to serve"
        )
    model = chosen / MODEL_DIR
    if not model.is_dir():
        raise TrainingError(f"{model}: the run chosen to serve has no exported model")
    return model
