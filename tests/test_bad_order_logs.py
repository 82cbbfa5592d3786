"""Training logs out of order are refused at parse time, naming the file and the line.

A second run_start or run_stop, a run_stop before run_start (in the log or in time), an
eval_accuracy that is NaN or infinite, and a log without run_stop: each is a ParseError, the
same one on every path that reads a log (its Events through summarize_run; streamed batches
through read_run; batches of a few rows; ranges read by worker processes whose summaries
merge), and the audit fails naming it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from benchpipe.contracts.errors import ParseError
from benchpipe.contracts.layout import MLLOG_FILE
from benchpipe.results import mllog_parser, records
from benchpipe.results.mllog_parser import RunSummary, TrainingRun, event_batches, parse_mllog, read_run, summarize_run

TOKEN = ":::MLLOG "
RUN_START_LINE = 9
PUBLISHED = Path("/work/shared/data/published/training_results_v5.1/AMD/results")
TRAINING_LOG = Path("benchpipe/training/benchpipe-ci/results/local-cpu/digits/result_1.txt")


def record(key: str, value=None, time_ms: int = 1_000, event_type: str = "POINT_IN_TIME", **metadata) -> str:
    body = {"namespace": "", "time_ms": time_ms, "event_type": event_type, "key": key, "value": value,
            "metadata": {"file": "train.py", "lineno": 3, **metadata}}
    return TOKEN + json.dumps(body)


def good_lines(epochs: int = 4) -> list[str]:
    """A finished run: header, run_start on line 9, a block and an evaluation per epoch, run_stop last."""
    lines = [record(k, v) for k, v in (("submission_benchmark", "digits"), ("submission_org", "o"),
                                       ("submission_platform", "p"), ("submission_division", "closed"),
                                       ("seed", 5))]
    lines += [record("init_start", event_type="INTERVAL_START"), "framework chatter, no record",
              record("init_stop", event_type="INTERVAL_END"),
              record("run_start", time_ms=10_000, event_type="INTERVAL_START")]
    assert len(lines) == RUN_START_LINE
    for epoch in range(1, epochs + 1):
        t = 10_000 + epoch * 1_000
        lines += [record("block_start", time_ms=t, event_type="INTERVAL_START", first_epoch_num=epoch, epoch_count=1),
                  record("eval_accuracy", 0.5 + epoch / 10, time_ms=t + 500, epoch_num=epoch),
                  record("block_stop", time_ms=t + 900, event_type="INTERVAL_END", first_epoch_num=epoch)]
    lines.append(record("run_stop", time_ms=70_000, event_type="INTERVAL_END", status="success"))
    return lines


def set_accuracy(lines: list[str], epoch: int, text: str) -> None:
    """Epoch ``epoch``'s eval_accuracy (on line 9 + 3 * epoch - 1) made ``text``."""
    n = RUN_START_LINE + 3 * epoch - 1
    lines[n - 1] = lines[n - 1].replace(f'"value": {0.5 + epoch / 10}', f'"value": {text}')
    assert text in lines[n - 1]


# --- the hostile logs: (edit of good_lines, what the error says) ----------------------------------

def second_run_start(lines: list[str]) -> None:
    lines.insert(14, record("run_start", time_ms=12_000, event_type="INTERVAL_START"))


def run_stop_first(lines: list[str]) -> None:
    lines.insert(RUN_START_LINE - 1, lines.pop())


def run_stop_earlier_in_time(lines: list[str]) -> None:
    lines[-1] = record("run_stop", time_ms=9_000, event_type="INTERVAL_END", status="success")


def nan_accuracy(lines: list[str]) -> None:
    set_accuracy(lines, 3, "NaN")


def infinite_accuracy(lines: list[str]) -> None:
    set_accuracy(lines, 2, "-Infinity")


def no_run_stop(lines: list[str]) -> None:
    lines.pop()


def no_run_start_or_stop(lines: list[str]) -> None:
    lines.pop()
    del lines[RUN_START_LINE - 1]


def second_run_stop(lines: list[str]) -> None:
    lines += ["chatter after the run", record("run_stop", time_ms=80_000, event_type="INTERVAL_END", status="aborted")]


def nan_before_second_run_start(lines: list[str]) -> None:
    set_accuracy(lines, 1, "NaN")
    second_run_start(lines)


def second_run_start_before_nan(lines: list[str]) -> None:
    set_accuracy(lines, 4, "NaN")
    second_run_start(lines)


CASES: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "second run_start": (second_run_start, r"line 15: second run_start \(the first is on line 9\)$"),
    "run_stop before run_start in the log": (run_stop_first, r"line 9: run_stop before run_start$"),
    "run_stop before run_start in time": (
        run_stop_earlier_in_time,
        r"line 22: run_stop before run_start: its time_ms 9000 is earlier than run_start's 10000 \(line 9\)$"),
    "NaN accuracy": (nan_accuracy, r"line 17: eval_accuracy NaN is not a number$"),
    "infinite accuracy": (infinite_accuracy, r"line 14: eval_accuracy -Infinity is not a finite number$"),
    "no run_stop": (no_run_stop,
                    r": no run_stop: the run did not finish \(run_start on line 9, the log ends on line 21\)$"),
    "no run_start or run_stop": (no_run_start_or_stop,
                                 r": no run_start or run_stop \(the log ends on line 20\): the run never started$"),
    "second run_stop": (second_run_stop, r"line 24: second run_stop \(the first is on line 22\)$"),
    # Two faults: the first line is the one named, on every path.
    "NaN, then a second run_start": (nan_before_second_run_start, r"line 11: eval_accuracy NaN is not a number$"),
    "a second run_start, then NaN": (second_run_start_before_nan,
                                     r"line 15: second run_start \(the first is on line 9\)$"),
}


def write_log(folder: Path, lines: list[str]) -> Path:
    """The log as a run folder holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MLLOG_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def hostile_log(tmp_path: Path, case: str) -> tuple[Path, str]:
    edit, message = CASES[case]
    lines = good_lines()
    edit(lines)
    return write_log(tmp_path / "run_1", lines), message


def expected(path: Path, message: str) -> str:
    """The whole message: the file, then the line (or what the log lacks)."""
    return f"^{path}{message}" if message.startswith(":") else f"^{path}: {message}"


def streamed(path: Path, rows: int = 50_000, workers: int = 1) -> TrainingRun:
    summary = RunSummary(path)
    for _ in event_batches(path, rows=rows, workers=workers, summary=summary):
        pass
    return summary.run()


def small_ranges(monkeypatch, range_bytes: int) -> None:
    """Worker ranges of a few lines each: a run_start and its second may fall in different parts."""
    monkeypatch.setattr(records, "_BLOCK", 256)
    monkeypatch.setattr(mllog_parser, "_RANGE_BYTES", range_bytes)


def test_the_good_log_reads_the_same_on_every_path(tmp_path, monkeypatch):
    path = write_log(tmp_path / "run_1", good_lines())
    run = summarize_run(parse_mllog(path), path)
    assert (run.status, run.epochs, run.best_eval_accuracy, run.time_to_train_min) == ("success", 4, 0.9, 1.0)
    assert read_run(path.parent) == streamed(path, rows=2) == run
    for range_bytes in (150, 700, 1 << 20):
        small_ranges(monkeypatch, range_bytes)
        assert streamed(path, workers=2) == run


@pytest.mark.parametrize("case", CASES)
def test_a_bad_order_is_refused_by_the_events_path(tmp_path, case):
    path, message = hostile_log(tmp_path, case)
    with pytest.raises(ParseError, match=expected(path, message)):
        summarize_run(parse_mllog(path), path)


@pytest.mark.parametrize("case", CASES)
def test_a_bad_order_is_refused_by_the_streamed_path(tmp_path, case):
    path, message = hostile_log(tmp_path, case)
    with pytest.raises(ParseError, match=expected(path, message)):
        read_run(path.parent)
    for rows in (1, 2, 5):  # the faults at the edges of batches or inside them
        with pytest.raises(ParseError, match=expected(path, message)):
            streamed(path, rows=rows)


@pytest.mark.parametrize("range_bytes", [150, 400, 900, 1 << 20])
@pytest.mark.parametrize("case", CASES)
def test_a_bad_order_is_refused_when_parts_of_the_log_are_read_by_workers(tmp_path, monkeypatch, case, range_bytes):
    """Each worker's part cannot judge a run_start or run_stop alone: merging the parts in order
    must find a second one in a later part, a run_stop whose run_start is in an earlier one,
    and name the first bad line even where a later fault lies in the same part."""
    path, message = hostile_log(tmp_path, case)
    small_ranges(monkeypatch, range_bytes)
    if range_bytes < 1000:
        assert len(list(records.line_ranges(path, range_bytes))) > 2
    with pytest.raises(ParseError, match=expected(path, message)):
        streamed(path, workers=2)


def test_a_part_keeps_what_it_cannot_judge_bounded(tmp_path):
    """A part with many run_starts stops at its second: memory does not grow with the log."""
    lines = good_lines()
    lines[RUN_START_LINE:RUN_START_LINE] = [record("run_start", time_ms=10_000 + i) for i in range(200)]
    path = write_log(tmp_path / "run_1", lines)
    part = RunSummary(path, part=True)
    for e in parse_mllog(path):
        part.add(e)
    assert [e.line for e in part.pending] == [RUN_START_LINE, RUN_START_LINE + 1]
    whole = RunSummary(path)
    with pytest.raises(ParseError, match=rf"line {RUN_START_LINE + 1}: second run_start \(the first is on line 9\)"):
        whole.merge(part)


def test_an_aborted_run_with_its_run_stop_still_reads_as_aborted(tmp_path):
    lines = good_lines()
    lines[-1] = record("run_stop", time_ms=70_000, event_type="INTERVAL_END", status="aborted")
    path = write_log(tmp_path / "run_1", lines)
    run = summarize_run(parse_mllog(path), path)
    assert run.status == "aborted" and run.time_to_train_min is None and run.run_stop_ms == 70_000
    assert read_run(path.parent) == run


# --- real MLPerf logs ---------------------------------------------------------------------------

def published_logs() -> list[Path]:
    return sorted(PUBLISHED.glob("*/*/result_*.txt"))


@pytest.mark.skipif(not published_logs(), reason=f"no published MLPerf training logs at {PUBLISHED}")
def test_published_training_logs_parse_on_every_path(tmp_path, monkeypatch):
    """MLPerf v5.1 results (AMD's): each is one finished run, read alike on every path."""
    logs = published_logs()
    assert len(logs) >= 10
    small_ranges(monkeypatch, 8192)
    for log in logs:
        run = summarize_run(parse_mllog(log), log)
        assert run.status == "success" and run.time_to_train_min > 0, log
        assert streamed(log) == streamed(log, rows=100) == run, log
    shutil.copy(logs[0], tmp_path / MLLOG_FILE)
    assert read_run(tmp_path) == streamed(logs[0], workers=2) == summarize_run(parse_mllog(logs[0]), logs[0])


# --- the audit ----------------------------------------------------------------------------------

def test_the_audit_names_the_log_and_its_second_run_start(submitted, tmp_path):
    from benchpipe.audit import audit
    from benchpipe.package.manifest import write_manifest

    tree = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", tree, symlinks=True)
    log = tree / TRAINING_LOG
    lines = log.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if '"key": "run_start"' in line)
    lines.insert(start + 2, lines[start])  # the same run_start again, two lines on
    log.write_text("".join(lines))
    write_manifest(tree)  # the manifest matches: only reading the log can tell

    items = {item.name: item for item in audit(tree).items}

    second = rf"{log}: line {start + 3}: second run_start \(the first is on line {start + 1}\)"
    assert items["manifest"].status == "pass"
    assert items["tables"].status == "fail"
    assert any(re_match(second, reason) for reason in items["tables"].reasons), items["tables"].reasons
    # The log's rows are not reported as rows without a log: its failure says why.
    assert not any("has no log" in reason for reason in items["tables"].reasons), items["tables"].reasons
    assert items["scores"].status == "fail"
    assert len(items["scores"].reasons) == 1, items["scores"].reasons
    assert re_match("runs.parquet not re-derived: " + second, items["scores"].reasons[0])


def re_match(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None
