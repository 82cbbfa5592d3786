"""Our MLLOG and LoadGen parsers against the official ones, on the same logs.

The training side compares with mlperf_logging's compliance-checker parser (the one the
package checker runs) record by record: key, value, time, event type, metadata, and which
lines hold a record. The corpus: logs written by our own RunLog (through mlperf_logging's
mllog), hand-written hostile logs (launcher prefixes, BOM, CRLF, lone CRs, chatter,
unicode), and logs the official parser rejects or crashes on, where ours must name the line.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchpipe.contracts.errors import ParseError
from benchpipe.contracts.rounds import TRAINING_RULESET
from benchpipe.results import records
from benchpipe.results.loadgen_parser import parse_detail_log
from benchpipe.results.mllog_parser import (
    EVENT_COLUMNS,
    event_batches,
    event_columns,
    metadata_json,
    parse_mllog,
    summarize_run,
    value_json,
)
from benchpipe.results.tables import training_log_rows
from benchpipe.train.mllog import RunLog

# The ruleset the package checker runs, and the newest mlperf_logging knows: one parser since 3.1.0.
RULESETS = sorted({TRAINING_RULESET, "6.1.0"})
TOKEN = ":::MLLOG "


def official_parse(path: Path, ruleset: str) -> tuple[list[Any], list[Any]]:
    module = importlib.import_module(
        f"mlperf_logging.compliance_checker.mlp_parser.ruleset_{ruleset.replace('.', '')}"
    )
    return module.parse_file(str(path))


def official_events(path: Path, ruleset: str) -> list[tuple]:
    """(key, value, time_ms, event_type, metadata) per record the official parser accepts."""
    loglines, errors = official_parse(path, ruleset)
    assert errors == [], errors
    events = []
    for ll in loglines:
        # It keeps no event type: that is read back from the record text it accepted.
        record = json.loads(ll.full_string[len(TOKEN):])
        events.append((ll.key, ll.value["value"], ll.timestamp, record["event_type"], ll.value["metadata"]))
    return events


def our_events(path: Path) -> list[tuple]:
    return [(e.key, e.value, e.time_ms, e.event_type, e.metadata) for e in parse_mllog(path)]


def record(key: str, value: Any = None, time_ms: int = 1_700_000_000_000, event_type: str = "POINT_IN_TIME",
           **metadata: Any) -> bytes:
    body = {"namespace": "", "time_ms": time_ms, "event_type": event_type, "key": key,
            "value": value, "metadata": {"file": "train.py", "lineno": 7, **metadata}}
    return (TOKEN + json.dumps(body)).encode()


def write(tmp_path: Path, data: bytes, name: str = "mllog.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- logs written by our own logger -------------------------------------------------------------

def our_run_log(path: Path, epochs: int = 4) -> Path:
    log = RunLog(path)
    for key, value in (("submission_benchmark", "digits"), ("submission_org", "benchpipe"),
                       ("submission_platform", "local-cpu"), ("submission_division", "closed"),
                       ("submission_status", "research"), ("seed", 7), ("global_batch_size", 64),
                       ("opt_base_learning_rate", 0.05), ("train_samples", 1437)):
        log.event(key, value)
    log.start("init_start")
    log.end("init_stop")
    log.start("run_start")
    for epoch in range(1, epochs + 1):
        log.start("block_start", metadata={"first_epoch_num": epoch, "epoch_count": 1})
        log.start("epoch_start", metadata={"epoch_num": epoch})
        log.end("epoch_stop", metadata={"epoch_num": epoch})
        log.end("block_stop", metadata={"first_epoch_num": epoch})
        log.event("eval_accuracy", 0.9 + epoch / 100, metadata={"epoch_num": epoch})
    log.end("run_stop", metadata={"status": "success"})
    log.close()
    return path


@pytest.mark.parametrize("ruleset", RULESETS)
def test_our_logger_output_reads_the_same_as_the_official_parser(tmp_path, ruleset):
    path = our_run_log(tmp_path / "mllog.txt")
    ours = our_events(path)
    assert ours == official_events(path, ruleset)
    assert len(ours) == 9 + 3 + 5 * 4 + 1
    assert summarize_run(parse_mllog(path), path).best_eval_accuracy == pytest.approx(0.94)


@pytest.mark.parametrize("prefix", [b"[1,0]<stdout>:", b"0: ", b"\xef\xbb\xbf", b"rank 3 | "])
def test_our_logger_output_behind_a_prefix_reads_the_same(tmp_path, prefix):
    plain = our_run_log(tmp_path / "plain.txt").read_bytes()
    path = write(tmp_path, b"".join(prefix + line for line in plain.splitlines(keepends=True)))
    assert our_events(path) == our_events(tmp_path / "plain.txt") == official_events(path, TRAINING_RULESET)


# --- hand-written logs both parsers accept ------------------------------------------------------

BOM = b"\xef\xbb\xbf"
ACCEPTED = {
    # case: (log bytes, the line number of each record)
    "multi-node prefixes": (
        b"[1,0]<stdout>:" + record("seed", 5) + b"\n0: " + record("run_start", event_type="INTERVAL_START")
        + b"\n[1,1]<stderr>:NCCL INFO ring 0\n", [1, 2]),
    "BOM before the first record": (BOM + record("seed", 5) + b"\n" + record("run_stop") + b"\n", [1, 2]),
    "BOM before chatter": (BOM + b"starting\n" + record("seed", 5) + b"\n", [2]),
    "CRLF line ends": (record("seed", 5) + b"\r\n\r\n" + record("eval_accuracy", 0.5) + b"\r\n", [1, 3]),
    "interleaved output and blank lines": (
        b"\n\nEpoch 1/3\n" + record("seed", 5) + b"\n   \nloss: 0.3\n:::MLLOG{\"no space\": 1}\n"
        + b"::MLLOG " + b"{not a record\n" + record("eval_accuracy", 0.5) + b"\n\n", [4, 9]),
    "progress bar redrawn with lone CRs before a record": (
        b"step 1/9\rstep 5/9\rstep 9/9\r" + record("eval_accuracy", 0.5) + b"\n", [1]),
    "record followed by a CR and a redraw": (record("eval_accuracy", 0.5) + b"\rstep 2/9 :::MLLOG? no\n", [1]),
    "two records in one LF line, split by a CR": (record("seed", 5) + b"\r" + record("seed", 6) + b"\n", [1, 1]),
    "the marker inside the prefix: the last one counts": (b"echo ':::MLLOG ' " + record("seed", 5) + b"\n", [1]),
    "escaped unicode values": (record("submission_platform", "caf\u00e9 \u2713 \U0001f680") + b"\n", [1]),
    "trailing tabs, spaces and form feeds": (record("seed", 5) + b" \t\x0c\x0b  \n", [1]),
    "a complete last record without a newline": (b"x\n" + record("seed", 5), [2]),
    "a float time": (record("seed", 5, time_ms=1.7e12) + b"\n", [1]),
    "chatter that is not UTF-8": (b"caf\xe9 \xff\xfe\n" + record("seed", 5) + b"\n", [2]),
}


@pytest.mark.parametrize("case", ACCEPTED)
def test_hostile_logs_both_parsers_accept_read_the_same(tmp_path, case):
    data, lines = ACCEPTED[case]
    path = write(tmp_path, data)
    assert our_events(path) == official_events(path, TRAINING_RULESET)
    assert [e.line for e in parse_mllog(path)] == lines


def test_raw_utf8_values_are_read_as_utf8_where_the_official_parser_sees_latin1(tmp_path):
    value = "caf\u00e9 \u2713 \U0001f680"
    body = json.dumps({"time_ms": 1, "event_type": "POINT_IN_TIME", "key": "submission_platform",
                       "value": value, "metadata": {"note": "\u00e9t\u00e9"}}, ensure_ascii=False)
    path = write(tmp_path, b"0: " + (TOKEN + body).encode() + b"\n")
    [event] = parse_mllog(path)
    assert (event.value, event.metadata) == (value, {"note": "\u00e9t\u00e9"})
    # The official parser decodes the file as latin-1: the same bytes, as mojibake.
    [(_, official_value, _, _, official_metadata)] = official_events(path, TRAINING_RULESET)
    assert official_value != value
    assert official_value.encode("latin-1").decode("utf-8") == value
    assert official_metadata["note"].encode("latin-1").decode("utf-8") == "\u00e9t\u00e9"


def test_records_without_value_or_metadata_are_read_where_the_official_parser_crashes(tmp_path):
    path = write(tmp_path, b'0: :::MLLOG {"time_ms": 5, "event_type": "POINT_IN_TIME", "key": "run_start"}\n')
    with pytest.raises(KeyError):
        official_parse(path, TRAINING_RULESET)
    [event] = parse_mllog(path)
    assert (event.key, event.value, event.metadata, event.time_ms) == ("run_start", None, {}, 5)


# --- logs the official parser rejects or crashes on: ours names the file and line ---------------

def garbled(text: str) -> bytes:
    return TOKEN.encode() + text.encode()


REJECTED = {
    # case: (log bytes, the line ours names, what the official parser does)
    "truncated last line": (record("seed", 5) + b"\n" + record("eval_accuracy", 0.5)[:40], 2, "rejects"),
    "garbled JSON mid-file": (record("seed", 5) + b"\n" + garbled('{"key": "x",, }') + b"\n"
                              + record("run_stop") + b"\n", 2, "rejects"),
    "the marker inside a value: the last one counts": (
        b"\n\n" + record("note", "see :::MLLOG lines above") + b"\n", 3, "rejects"),
    "the marker and nothing else": (record("seed", 5) + b"\n" + TOKEN.encode() + b"  \n", 2, "rejects"),
    "more after the record": (record("seed", 5) + b"\n\n" + record("seed", 6) + b' {"seed": 7}\n', 3, "rejects"),
    "an integer past Python's digit limit": (garbled('{"time_ms": ' + "9" * 5000 + "}") + b"\n", 1, "rejects"),
    "a time that is no number": (record("seed", 5) + b"\n" + record("seed", 5, time_ms="soon") + b"\n", 2, "rejects"),
    "a record that is a JSON list": (b"0: " + garbled("[1, 2]") + b"\n", 1, "crashes"),
    "a record without a time": (garbled('{"key": "seed", "value": 1, "metadata": {}}') + b"\n", 1, "crashes"),
    "JSON nested past the recursion limit": (b"x\n" + garbled("[" * 5_000 + "]" * 5_000) + b"\n", 2, "crashes"),
}


@pytest.mark.parametrize("case", REJECTED)
def test_logs_the_official_parser_refuses_are_parse_errors_naming_the_line(tmp_path, case):
    data, line, official = REJECTED[case]
    path = write(tmp_path, data)
    if official == "rejects":
        _, errors = official_parse(path, TRAINING_RULESET)
        assert len(errors) == 1
    else:
        with pytest.raises(Exception) as crash:
            official_parse(path, TRAINING_RULESET)
        assert not isinstance(crash.value, ParseError)
    with pytest.raises(ParseError, match=rf"^{re.escape(str(path))}: line {line}: malformed MLLOG record"):
        parse_mllog(path)


def test_a_truncated_last_line_is_named_as_cut_off(tmp_path):
    path = write(tmp_path, record("seed", 5) + b"\r\n" + record("eval_accuracy", 0.5)[:-3])
    with pytest.raises(ParseError, match=r"line 2: malformed MLLOG record: .*cut off mid-write"):
        parse_mllog(path)


def test_invalid_utf8_in_a_record_mid_file_is_a_parse_error(tmp_path):
    path = write(tmp_path, record("seed", 5) + b"\nnoise\n" + garbled('{"key": "caf\xe9"}').replace(b"\xc3\xa9", b"\xe9")
                 + b"\n" + record("run_stop") + b"\n")
    # The official parser reads latin-1 and accepts any byte; a record here must be UTF-8.
    with pytest.raises(ParseError, match=rf"{re.escape(str(path))}: line 3: malformed MLLOG record: not UTF-8"):
        parse_mllog(path)


def test_a_record_without_event_type_is_refused(tmp_path):
    # The official parser never reads the event type; ours keeps it in every Event, so it is required.
    path = write(tmp_path, garbled('{"time_ms": 1, "key": "seed", "value": 1, "metadata": {}}') + b"\n")
    assert len(official_parse(path, TRAINING_RULESET)[0]) == 1
    with pytest.raises(ParseError, match=r"line 1: malformed MLLOG record: KeyError\('event_type'\)"):
        parse_mllog(path)


def test_a_log_without_records_is_a_parse_error(tmp_path):
    path = write(tmp_path, BOM + b"only chatter\r\n:::MLLOG{}\n")
    with pytest.raises(ParseError, match="no MLLOG records"):
        parse_mllog(path)


def test_an_unreadable_log_is_a_parse_error(tmp_path):
    with pytest.raises(ParseError, match=r"missing.txt: cannot read"):
        parse_mllog(tmp_path / "missing.txt")


# --- the fast paths: proven equal to the exact ones ---------------------------------------------
#
# records.record_batches decodes with json's C scanner directly where json.loads would give the
# same object; mllog_parser.event_columns takes the columns of a record in mllog's own shape
# straight from its text; parse_mllog builds Events without Event(). Each falls back to the
# exact path on anything else. The logs below sit on either side of every line they draw.

def canonical(value_text: str, metadata_text: str = '{"file": "train.py", "lineno": 7}', *,
              time_text: str = "1700000000000", key: str = "eval_accuracy") -> bytes:
    """A record as mllog writes it, with the value, metadata and time given as JSON text."""
    return (f'{TOKEN}{{"namespace": "", "time_ms": {time_text}, "event_type": "POINT_IN_TIME", '
            f'"key": "{key}", "value": {value_text}, "metadata": {metadata_text}}}').encode()


EDGE_RECORDS = [
    # values json.dumps writes back as they are (the columns come from the text) ...
    canonical("null"), canonical("true"), canonical("false"), canonical("0"), canonical("-7"),
    canonical("123456789012345678"), canonical("0.5"), canonical("-0.0"), canonical("1e-05"),
    canonical("1e+16"), canonical("0.036392037611485795"), canonical('"caf e, x"'),
    canonical('"a, "'), canonical('"~!#[]{}:,"'),
    # ... and ones it does not: big and huge integers (exact ints, never floats), non-canonical
    # numbers, NaN and the infinities (accepted, as json.loads and the official parser do)
    canonical("1234567890123456789"), canonical(str(2**64 + 1)), canonical("-" + "9" * 400),
    canonical("-0"), canonical("1.50"), canonical("1E5"), canonical("1e400"), canonical("-1e400"),
    canonical("0.1e1"), canonical("NaN"), canonical("Infinity"), canonical("-Infinity"),
    canonical('"caf\\u00e9"'), canonical('"\\u2713 \\ud83d\\ude80"'), canonical('"tab\\there"'),
    canonical('"line\\nbreak"'), canonical('"back\\\\slash"'), canonical('"quote\\"d"'), canonical('"del\x7f"'),
    canonical('"\\ud800 lone surrogate"'), canonical("[1, 2, 3]"), canonical('{"b": 1, "a": [2.5, null]}'),
    canonical('"x"', key='key with spaces, and \\"quotes\\"'),
    # metadata: sorted, unsorted, nested, duplicate keys, floats, keys that sort around the quote
    canonical("1", "{}"), canonical("1", '{"z": 1}'), canonical("1", '{"b": 1, "a": 2, "c": "x"}'),
    canonical("1", '{"a": 1, "a": 2}'), canonical("1", '{"b": 1, "a": 2, "b": 3}'),
    canonical("1", '{"a": {"z": 1, "y": [1, {"x": 2}]}, "b": null}'), canonical("1", '{"a": 0.25, "b": 1e5}'),
    canonical("1", '{"a": 1, "a b": 2, "a!": 3, "a#": 4, "": 5}'), canonical("1", '{"ab": 1, "a": 2, "a,": 3}'),
    canonical("1", '{"status": "success, mostly", "epoch_num": 3}'), canonical("1", '{"b": "x, ", "a": "y"}'), canonical("1", '{"file": "caf\\u00e9.py"}'),
    canonical("1", '{"n": ' + str(2**70) + ', "m": -0, "k": true, "j": false}'),
    canonical("1", '{"n": NaN}'), canonical("1", '{"s": "\\u0041"}'), canonical("1", "[]"),
    canonical("1", "null"), canonical("1", '[["k", "v"]]'),
    # times: float, huge, negative, as text the official parser takes
    canonical("1", time_text="1.7e12"), canonical("1", time_text="12.0"), canonical("1", time_text="-5"),
    canonical("1", time_text="123456789012345678901234"), canonical("1", time_text='"1700000000000"'),
    # other shapes: other key orders (LoadGen's), missing or extra fields, other spacing, duplicates
    (TOKEN + '{"key": "seed", "value": 1, "time_ms": 5, "namespace": "", "event_type": "POINT_IN_TIME", '
     '"metadata": {"is_error": false}}').encode(),
    (TOKEN + '{"time_ms": 5, "event_type": "POINT_IN_TIME", "key": "run_start"}').encode(),
    (TOKEN + '{"time_ms": 5, "event_type": "X", "key": "k", "value": 1, "metadata": {}, "extra": [1]}').encode(),
    (TOKEN + '{"namespace":"","time_ms":5,"event_type":"X","key":"k","value":1,"metadata":{"b":1,"a":2}}').encode(),
    (TOKEN + '{"namespace": "", "time_ms": 5, "time_ms": 6, "event_type": "X", "key": "k", "value": 1, '
     '"metadata": {}}').encode(),
    (TOKEN + ' {"time_ms": 5, "event_type": "X", "key": "k", "value": 1, "metadata": {}}').encode(),
    canonical("1") + b" \t\x0c\x1f",
    "0: ".encode() + canonical('"caf\u00e9 raw"'), b"\xef\xbb\xbf" + canonical("2"),
    canonical("3") + b"\r" + canonical("4"), b"progress 1/9\r" + canonical("5") + b"\r",
]


def edge_log(tmp_path: Path, name: str = "edge.txt") -> Path:
    chatter = [b"", b"Epoch 1/3", b"caf\xe9 \xff", b":::MLLOG", b"x ::MLLOG {not json"]
    lines = []
    for i, line in enumerate(EDGE_RECORDS):
        lines += [line, chatter[i % len(chatter)]]
    return write(tmp_path, b"\n".join(lines) + b"\n", name)


def columns_of(path: Path, rows: int = 50_000, workers: int = 1) -> dict[str, list]:
    """event_columns' columns as str, checked against event_batches' Arrow batches: the same
    values, or, where a time does not fit the table's int64, an error naming its line."""
    columns: dict[str, list] = {name: [] for name in EVENT_COLUMNS}
    for batch in event_columns(path, rows):
        assert list(batch) == list(EVENT_COLUMNS)
        for name in EVENT_COLUMNS:
            columns[name] += [v.decode() if type(v) is bytes else v for v in batch[name]]
    too_big = [n for n, t in zip(columns["line"], columns["time_ms"]) if not -2**63 <= t < 2**63]
    if too_big:
        with pytest.raises(ParseError, match=rf"{re.escape(str(path))}: line {too_big[0]}: time_ms .* int64"):
            list(event_batches(path, rows, workers))
        return columns
    arrow: dict[str, list] = {name: [] for name in EVENT_COLUMNS}
    for batch in event_batches(path, rows, workers):
        assert batch.schema.names == list(EVENT_COLUMNS)
        for name, values in batch.to_pydict().items():
            arrow[name] += values
    assert arrow == columns
    return columns


def columns_from_events(path: Path) -> dict[str, list]:
    """The columns as the exact path encodes them: plain json.dumps of every Event."""
    events = parse_mllog(path)
    return {"line": [e.line for e in events], "time_ms": [e.time_ms for e in events],
            "event_type": [e.event_type for e in events], "key": [e.key for e in events],
            "value_json": [json.dumps(e.value) for e in events],
            "metadata_json": [json.dumps(e.metadata, sort_keys=True) for e in events]}


def exact_events(path: Path) -> list[tuple]:
    """What the reader did before its fast paths: line by line, json.loads on every record."""
    found = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            for payload in records.record_payloads(raw.removesuffix(b"\n")):
                record = json.loads(payload.decode())
                metadata = record.get("metadata") or {}
                time_ms = record["time_ms"]
                found.append((n, time_ms if type(time_ms) is int else int(float(time_ms)), str(record["event_type"]),
                              str(record["key"]), record.get("value"), metadata if type(metadata) is dict else dict(metadata)))
    return found


def test_the_edge_records_read_as_json_loads_reads_them(tmp_path):
    path = edge_log(tmp_path)
    ours = [(e.line, e.time_ms, e.event_type, e.key, e.value, e.metadata) for e in parse_mllog(path)]
    # repr: NaN is not equal to itself, and an int must stay an int (2**64 + 1 as a float would differ).
    assert repr(ours) == repr(exact_events(path))
    assert len(ours) == len(EDGE_RECORDS) + 1  # one line holds two records (a lone CR between them)
    big = next(e for e in parse_mllog(path) if e.value == 2**64 + 1)
    assert type(big.value) is int


def test_the_edge_records_read_as_the_official_parser_reads_them(tmp_path):
    # Without the records it reads otherwise: raw UTF-8 (it reads latin-1), no metadata (it
    # crashes), metadata that is no object (kept as it is; ours makes it a dict).
    kept = [r for r in EDGE_RECORDS if r.isascii() and re.search(rb'"metadata": ?\{', r)]
    path = write(tmp_path, b"\n".join(kept) + b"\n")

    def exactly(events: list[tuple]) -> list[tuple]:
        # repr for values and metadata: NaN is not equal to itself, and 2**64 + 1 must not
        # have become a float. Times compare as floats: the official parser floats them.
        return [(key, repr(value), float(time_ms), event_type, repr(metadata))
                for key, value, time_ms, event_type, metadata in events]

    assert exactly(our_events(path)) == exactly(official_events(path, TRAINING_RULESET))
    assert len(kept) > 50


def test_event_columns_are_the_events_as_json_dumps_writes_them(tmp_path):
    path = edge_log(tmp_path)
    expected = columns_from_events(path)
    assert columns_of(path) == expected
    # Batches cut anywhere: the same columns, in batches of at least the size asked.
    assert columns_of(path, rows=1) == expected


@pytest.mark.parametrize("ruleset", RULESETS)
def test_event_columns_of_our_logger_output_match_the_tables_rows(tmp_path, ruleset):
    path = our_run_log(tmp_path / "mllog.txt")
    rows, _ = training_log_rows("local-cpu", "digits", 1, path)
    columns = columns_of(path)
    assert [{name: row[name] for name in EVENT_COLUMNS} for row in rows] == [
        dict(zip(EVENT_COLUMNS, values)) for values in zip(*(columns[name] for name in EVENT_COLUMNS))]
    assert columns == columns_from_events(path)
    assert [(k, json.loads(v), t) for k, v, t in zip(columns["key"], columns["value_json"], columns["time_ms"])] == [
        (k, v, t) for k, v, t, _, _ in official_events(path, ruleset)]


def test_the_tables_rows_encode_values_as_json_dumps_does(tmp_path):
    events = parse_mllog(edge_log(tmp_path))
    assert [value_json(e.value) for e in events] == [json.dumps(e.value) for e in events]
    assert [metadata_json(e.metadata) for e in events] == [json.dumps(e.metadata, sort_keys=True) for e in events]


def test_a_fuzzed_log_reads_the_same_on_every_path(tmp_path):
    import random

    rng = random.Random(9)
    pieces = ["null", "true", "false", "0", "-0", "7", "-12", "1.5", "1.50", "2e3", "1e+16", "NaN", "-Infinity",
              str(2**63), str(-(2**80)), '""', '"a, b"', '"a\\"b"', '"\\u00e9"', '"\u00e9"', "[]", '{"a": 1}']
    keys = ["a", "b", "ab", "a b", "a!", "a,", "file", "lineno", "", "z"]
    lines = []
    for i in range(3000):
        meta = ", ".join(f'"{rng.choice(keys)}": {rng.choice(pieces)}' for _ in range(rng.randint(0, 4)))
        time_text = rng.choice(["1700000000000", "5", "1.5e3", "-3"])
        line = canonical(rng.choice(pieces), "{" + meta + "}", time_text=time_text, key=rng.choice(keys))
        if rng.random() < 0.1:
            line = line.replace(b", ", b",")
        lines.append(rng.choice([b"", b"0: ", b"[1,0]<stdout>:"]) + line + rng.choice([b"", b" ", b"\r"]))
    path = write(tmp_path, b"\n".join(lines) + b"\n")
    ours = [(e.line, e.time_ms, e.event_type, e.key, e.value, e.metadata) for e in parse_mllog(path)]
    assert repr(ours) == repr(exact_events(path))
    assert columns_of(path, rows=97) == columns_from_events(path)


@pytest.mark.parametrize("index", range(len(EDGE_RECORDS)))
def test_one_edge_record_among_mllogs_own_lines_reads_the_same(tmp_path, index):
    """Each edge record between lines of mllog's own shape: the fast path must let it, and only it, pass by."""
    clean = [canonical(str(i), '{"epoch_num": %d, "file": "t.py"}' % i) for i in range(3)]
    path = write(tmp_path, b"\n".join([*clean, b"Epoch 1/3", EDGE_RECORDS[index], *clean]) + b"\n")
    assert columns_of(path) == columns_from_events(path)


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_blocks_cut_anywhere_read_the_same(tmp_path, monkeypatch, block):
    path = edge_log(tmp_path)
    whole_events, whole_columns = parse_mllog(path), columns_of(path)
    monkeypatch.setattr(records, "_BLOCK", block)
    assert repr(parse_mllog(path)) == repr(whole_events)
    assert columns_of(path) == whole_columns
    # A last line without a newline, cut across blocks.
    cut = write(tmp_path, path.read_bytes() + canonical("9"), "cut.txt")
    assert parse_mllog(cut)[-1].value == 9 and parse_mllog(cut)[-1].line == len(EDGE_RECORDS) * 2 + 1


@pytest.mark.parametrize("case", REJECTED)
def test_event_columns_refuse_what_parse_mllog_refuses_with_the_same_message(tmp_path, case):
    path = write(tmp_path, REJECTED[case][0])
    with pytest.raises(ParseError) as theirs:
        parse_mllog(path)
    with pytest.raises(ParseError) as ours:
        columns_of(path)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("first_bad, second_bad", [
    (garbled('{"key": "seed", "value": 1, "metadata": {}}'), garbled('{"key": "x",, }')),
    (garbled('{"key": "x",, }'), garbled('{"key": "seed", "value": 1, "metadata": {}}')),
])
def test_the_first_bad_record_in_the_file_is_the_one_named(tmp_path, first_bad, second_bad):
    # One is refused when decoded, the other when made an Event: the earlier line is named,
    # though the fast reader decodes a whole block before its records become Events.
    path = write(tmp_path, record("seed", 5) + b"\n" + first_bad + b"\n" + second_bad + b"\n")
    for parse in (parse_mllog, columns_of):
        with pytest.raises(ParseError, match=r"line 2: malformed MLLOG record"):
            parse(path)


def test_event_columns_of_a_log_without_records_is_a_parse_error(tmp_path):
    with pytest.raises(ParseError, match="no MLLOG records"):
        columns_of(write(tmp_path, b"only chatter\n"))


# --- a large log, read by several processes --------------------------------------------------

def fuzzed_log(tmp_path: Path, seed: int = 9, count: int = 3000) -> Path:
    import random

    rng = random.Random(seed)
    pieces = ["null", "true", "false", "0", "-0", "7", "-12", "1.5", "1.50", "2e3", "1e+16", "NaN", "-Infinity",
              str(2**63), str(-(2**80)), '""', '"a, b"', '"a:b"', '"a\\"b"', '"\\u00e9"', '"\u00e9"', "[]", '{"a": 1}']
    keys = ["a", "b", "ab", "a b", "a!", "a,", "a:", "file", "lineno", "", "z"]
    lines = []
    for i in range(count):
        meta = ", ".join(f'"{rng.choice(keys)}": {rng.choice(pieces)}' for _ in range(rng.randint(0, 4)))
        time_text = rng.choice(["1700000000000", "5", "1.5e3", "-3"])
        line = canonical(rng.choice(pieces), "{" + meta + "}", time_text=time_text, key=rng.choice(keys))
        if rng.random() < 0.1:
            line = line.replace(b", ", b",")
        lines.append(rng.choice([b"", b"", b"0: ", b"[1,0]<stdout>:", b"chatter\n"]) + line
                     + rng.choice([b"", b"", b"", b" ", b"\r"]))
    return write(tmp_path, b"\n".join(lines) + b"\n")


def small_ranges(monkeypatch, block: int = 512, range_bytes: int = 2000) -> None:
    """Blocks and worker ranges small enough that a test log is cut into many of each."""
    from benchpipe.results import mllog_parser

    monkeypatch.setattr(records, "_BLOCK", block)
    monkeypatch.setattr(mllog_parser, "_RANGE_BYTES", range_bytes)


@pytest.mark.parametrize("block, range_bytes", [(64, 100), (512, 2000), (4096, 5000), (8192, 300)])
def test_line_ranges_cover_the_file_at_line_starts_with_their_line_numbers(tmp_path, monkeypatch, block, range_bytes):
    path = fuzzed_log(tmp_path, count=500)
    data = path.read_bytes() + b"no newline at the end"
    path.write_bytes(data)
    small_ranges(monkeypatch, block, range_bytes)
    ranges = list(records.line_ranges(path, range_bytes))
    assert len(ranges) > 5
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    longest = max(len(line) + 1 for line in data.split(b"\n"))
    for (start, end, first), following in zip(ranges, [*ranges[1:], None]):
        assert start == 0 or data[start - 1:start] == b"\n"
        assert first == data.count(b"\n", 0, start) + 1
        if following is not None:
            assert following[0] == end
            # About range_bytes each, however large a block is: a worker's memory follows its range.
            assert range_bytes <= end - start < range_bytes + longest


def test_several_processes_read_a_log_as_one_does(tmp_path, monkeypatch):
    path = fuzzed_log(tmp_path, seed=3)
    small_ranges(monkeypatch)
    one = columns_of(path, rows=97)
    assert columns_of(path, rows=97, workers=2) == one == columns_from_events(path)
    assert len(one["line"]) > 2000
    # The edge records hold a time past int64: the same error, from whichever process meets it.
    assert columns_of(edge_log(tmp_path), workers=3) == columns_from_events(edge_log(tmp_path))


def test_several_processes_name_the_first_bad_line_of_the_log(tmp_path, monkeypatch):
    good = [record("eval_accuracy", i / 100, epoch_num=i) for i in range(400)]
    bad = garbled('{"key": "x",, }')
    good[120] = good[330] = bad  # two ranges apart, the later one likely read first
    path = write(tmp_path, b"\n".join(good) + b"\n")
    small_ranges(monkeypatch)
    assert len(list(records.line_ranges(path, 2000))) > 10
    with pytest.raises(ParseError, match=r"line 121: malformed MLLOG record"):
        list(event_batches(path, workers=2))


def test_text_that_is_not_unicode_is_refused_naming_its_line(tmp_path, monkeypatch):
    # JSON may escape a lone surrogate, which no UTF-8 table column can hold.
    good = [record("eval_accuracy", i / 100, epoch_num=i) for i in range(50)]
    good[30] = record("eval_accuracy").replace(b'"key": "eval_accuracy"', b'"key": "\\ud800"')
    path = write(tmp_path, b"\n".join(good) + b"\n")
    assert parse_mllog(path)[30].key == "\ud800"  # a value Python holds, as the official parser does
    with pytest.raises(ParseError, match=r"line 31: key holds a lone surrogate"):
        list(event_batches(path, workers=1))
    small_ranges(monkeypatch, block=256, range_bytes=700)
    with pytest.raises(ParseError, match=r"line 31: key holds a lone surrogate"):
        list(event_batches(path, workers=2))


def test_parsing_a_log_to_its_table_never_loads_pandas(tmp_path):
    """pa.array and pa.scalar load pandas (55 MB a process, workers included) to ask whether
    their input is a pandas object: the parse builds its Arrow arrays without them."""
    import subprocess
    import sys

    fuzz = fuzzed_log(tmp_path, seed=5).read_bytes()  # records on the fast path and off it
    path = our_run_log(tmp_path / "mllog.txt", epochs=20)
    path.write_bytes(path.read_bytes() + fuzz)
    attempts = tmp_path / "pandas-imports"
    script = f"""
import os, sys
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            with open({str(attempts)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
sys.meta_path.insert(0, Watch())
from pathlib import Path
import pyarrow.parquet as pq
from benchpipe.results import mllog_parser, records
from benchpipe.results.tables import EVENTS_SCHEMA, EVENTS_WRITE_OPTIONS, write_training_events
mllog_parser.PARALLEL_MIN_BYTES, mllog_parser._RANGE_BYTES, records._BLOCK = 0, 5000, 4096
mllog_parser.os.sched_getaffinity = lambda pid: {{0, 1}}
with pq.ParquetWriter({str(tmp_path / "t.parquet")!r}, EVENTS_SCHEMA, **EVENTS_WRITE_OPTIONS) as writer:
    write_training_events(writer, "local-cpu", "digits", 0, Path({str(path)!r}))
print(pq.read_metadata({str(tmp_path / "t.parquet")!r}).num_rows)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(parse_mllog(path))
    assert not attempts.exists(), f"pandas imported by processes {attempts.read_text().split()}"


def test_a_large_log_is_read_by_several_processes_by_default(tmp_path, monkeypatch):
    from benchpipe.results import mllog_parser

    path = fuzzed_log(tmp_path, count=300)
    monkeypatch.setattr(mllog_parser, "PARALLEL_MIN_BYTES", path.stat().st_size)
    monkeypatch.setattr(mllog_parser.os, "sched_getaffinity", lambda pid: {0, 1})
    used = []
    monkeypatch.setattr(mllog_parser, "_parallel_batches", lambda p, workers, summarize: used.append(workers) or iter(()))
    list(event_batches(path))
    assert used == [2]
    monkeypatch.setattr(mllog_parser, "PARALLEL_MIN_BYTES", path.stat().st_size + 1)
    assert sum(b.num_rows for b in event_batches(path)) > 0 and used == [2]


def streamed_table(path: Path, out: Path) -> dict:
    import pyarrow.parquet as pq

    from benchpipe.results.tables import EVENTS_SCHEMA, EVENTS_WRITE_OPTIONS, write_training_events

    with pq.ParquetWriter(out, EVENTS_SCHEMA, **EVENTS_WRITE_OPTIONS) as writer:
        return write_training_events(writer, "local-cpu", "digits", 1, path)


@pytest.mark.parametrize("epochs", [0, 4, 60])
def test_a_log_streamed_to_its_table_gives_what_its_events_give(tmp_path, monkeypatch, epochs):
    """write_tables' path (event_batches, run summary from the few events it needs) against
    parse_mllog's (every Event in memory): the same rows and the same run, by one process or
    several, and the same file bytes whichever read it."""
    import pyarrow.parquet as pq

    from benchpipe.results import mllog_parser, tables

    path = our_run_log(tmp_path / "mllog.txt", epochs=epochs)
    with path.open("a") as f:  # chatter and a record after run_stop, which the summary does not read
        f.write("Epoch done\n" + canonical("null", '{"status": "aborted"}', key="cache_clear").decode() + "\n")
    rows, run = training_log_rows("local-cpu", "digits", 1, path)
    monkeypatch.setattr(tables, "EVENTS_ROW_GROUP", 7)
    one = streamed_table(path, tmp_path / "one.parquet")
    monkeypatch.setattr(mllog_parser, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(mllog_parser.os, "sched_getaffinity", lambda pid: {0, 1})
    small_ranges(monkeypatch, block=256, range_bytes=700)
    several = streamed_table(path, tmp_path / "several.parquet")
    assert one == several == run
    assert mllog_parser.read_run(path.parent) == summarize_run(parse_mllog(path), path)
    assert run["status"] == "success" and run["epochs"] == epochs
    assert run["best_eval_accuracy"] == (0.9 + epochs / 100 if epochs else None)
    assert pq.read_table(tmp_path / "one.parquet").to_pylist() == rows
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "several.parquet").read_bytes()
    assert pq.ParquetFile(tmp_path / "one.parquet").metadata.num_row_groups == -(-len(rows) // 7)


def test_a_log_without_a_required_key_is_refused_on_the_streamed_path_too(tmp_path):
    path = write(tmp_path, record("seed", 5) + b"\n" + record("run_start") + b"\n")
    with pytest.raises(ParseError, match=r"mllog.txt: required key 'submission_benchmark' missing"):
        streamed_table(path, tmp_path / "t.parquet")


@pytest.mark.parametrize("bad, message", [
    (record("eval_accuracy", "high"), "line 3: eval_accuracy 'high' is not a number"),
    (record("eval_accuracy", None), "line 3: eval_accuracy None is not a number"),
    (record("block_start", first_epoch_num="one"), "line 3: block_start metadata .* must be integers"),
])
def test_a_summary_value_of_the_wrong_type_is_refused_naming_its_line_on_both_paths(tmp_path, bad, message):
    head = record("submission_benchmark", "digits") + b"\n" + record("eval_accuracy", 0.5) + b"\n"
    path = write(tmp_path, head + bad + b"\n")
    with pytest.raises(ParseError, match=message):
        summarize_run(parse_mllog(path), path)
    with pytest.raises(ParseError, match=message):
        streamed_table(path, tmp_path / "t.parquet")


# --- LoadGen detail logs ------------------------------------------------------------------------

def detail_rows() -> list[dict[str, Any]]:
    meta = {"is_error": False, "is_warning": False, "file": "loadgen.cc", "line_no": 1, "pid": 9, "tid": 9}
    return [
        {"key": "loadgen_version", "value": "5.1 @ abc", "time_ms": 0.01, "namespace": "mlperf::logging",
         "event_type": "POINT_IN_TIME", "metadata": meta},
        {"key": "warning_generic_message", "value": "Coalesced", "time_ms": 0.02, "namespace": "mlperf::logging",
         "event_type": "POINT_IN_TIME", "metadata": {**meta, "is_warning": True}},
        {"key": "result_validity", "value": "VALID", "time_ms": 0.03, "namespace": "mlperf::logging",
         "event_type": "POINT_IN_TIME", "metadata": meta},
    ]


@pytest.mark.parametrize("prefix, first, newline", [
    (b"[1,0]<stdout>:", b"", b"\n"), (b"0: ", BOM, b"\r\n"), (b"", BOM, b"\n"),
])
def test_detail_log_behind_a_prefix_or_bom_reads_the_same(tmp_path, prefix, first, newline):
    lines = [(TOKEN + json.dumps(r)).encode() for r in detail_rows()]
    plain = parse_detail_log(write(tmp_path, b"\n".join(lines) + b"\n", "plain.txt"))
    path = write(tmp_path, first + newline.join(prefix + line for line in lines) + newline, "mlperf_log_detail.txt")
    detail = parse_detail_log(path)
    assert detail == plain
    assert detail.get("result_validity") == "VALID" and detail.warnings == ["line 2: warning_generic_message: Coalesced"]


def test_detail_log_with_a_garbled_line_names_it(tmp_path):
    lines = [(TOKEN + json.dumps(r)).encode() for r in detail_rows()]
    path = write(tmp_path, b"\n".join(lines[:2] + [lines[2][:30]]), "mlperf_log_detail.txt")
    with pytest.raises(ParseError, match=r"mlperf_log_detail.txt: line 3: malformed LoadGen record"):
        parse_detail_log(path)
    path.write_bytes(garbled('{"key": ["a"], "value": 1}'))
    with pytest.raises(ParseError, match=r"line 1: malformed LoadGen record: key \['a'\] is not a string"):
        parse_detail_log(path)


def official_detail_log(checkout: Path, path: Path) -> Any:
    """MLCommons' MLPerfLog (tools/submission/log_parser.py), loaded from the checkout by path."""
    spec = importlib.util.spec_from_file_location("official_log_parser", checkout / "tools" / "submission" / "log_parser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MLPerfLog(str(path))


@pytest.mark.slow
def test_a_real_detail_log_reads_like_the_official_inference_parser(tmp_path, inference_checkout):
    from loadgen_logs import run_loadgen

    out = run_loadgen(tmp_path / "lg", scenario="Offline", min_duration_ms=100)
    path = out / "mlperf_log_detail.txt"
    official = official_detail_log(inference_checkout, path)
    ours = parse_detail_log(path)
    # Ours keeps the last value of a key (as LoadGen's summary does), the official one all of them.
    assert ours.values == {m["key"]: m["value"] for m in official.get_messages()}
    assert len(ours.values) > 50 and ours.get("result_validity") in ("VALID", "INVALID")
    # The same log as a multi-node launcher writes it, with a BOM: the official parser refuses
    # it (no marker at the start of the first line); ours reads the same values.
    lines = path.read_bytes().splitlines(keepends=True)
    prefixed = write(tmp_path, BOM + b"".join(b"[1,0]<stdout>:" + line for line in lines), "prefixed.txt")
    with pytest.raises(RuntimeError, match="Marker not found"):
        official_detail_log(inference_checkout, prefixed)
    assert parse_detail_log(prefixed) == ours
