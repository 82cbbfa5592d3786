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

from benchpipe.errors import ParseError
from benchpipe.package.official import TRAINING_RULESET
from benchpipe.results.loadgen_parser import parse_detail_log
from benchpipe.results.mllog_parser import parse_mllog, summarize_run
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
