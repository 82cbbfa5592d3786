"""LoadGen detail logs (``:::MLLOG {json}`` per event), its summary text, and the accuracy script's output."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from datetime import datetime
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
# An LLM's (a log with token latencies on): the checker's RESULT_FIELD_BENCHMARK_OVERWRITE for
# llama3.1-8b and llama3.1-8b-edge (v6.1), tokens/s or the p90 latency. Interactive is LoadGen's
# Server scenario, ranked as the checker ranks a Server log.
TOKEN_RESULT_KEY = {
    "Offline": "result_tokens_per_second",
    "SingleStream": "result_90.00_percentile_latency_ns",
    "Server": "result_completed_tokens_per_second",
    "Interactive": "result_completed_tokens_per_second",
}
# The token latencies the checker's llm_check compares with the round's TTFT and TPOT limits.
TTFT_P99 = "result_first_token_99.00_percentile_latency_ns"
TPOT_P99 = "result_time_per_output_token_99.00_percentile_ns"
# Tokens/s of a run: Offline logs its one figure, the scenarios that time each query their completed tokens.
TOKENS_PER_SECOND = ("result_tokens_per_second", "result_completed_tokens_per_second")
USES_TOKEN_LATENCIES = "requested_use_token_latencies"
_ACCURACY = re.compile(r"^accuracy=([0-9.]+)%")
# What an LLM's accuracy.txt must state (the reference's evaluation.py keys).
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "gen_num")
# The summary's "=====" framed section titles, as LoadGen's results.cc writes them.
SUMMARY_SECTIONS = {"MLPerf Results Summary": "results", "Additional Stats": "stats",
                    "Test Parameters Used": "parameters"}
# Its closing lines: "No errors encountered during test." or "3 ERRORS encountered. See detailed log."
_TALLY = re.compile(r"^(no|\d+) (warning|error)s? encountered", re.IGNORECASE)
# "Processed at least 64 queries (1579)."; the count in brackets is the run's result_query_count.
_PROCESSED = re.compile(r"^Processed at least \d+ queries \((\d+)\)")
# The wall-clock format of power_begin / power_end ("12-05-2026 21:28:07.722").
POWER_TIME_FORMAT = "%m-%d-%Y %H:%M:%S.%f"


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


@dataclass(frozen=True)
class SummaryLog:
    """mlperf_log_summary.txt, as written: every "label : value" line of each section, as text.

    ``results`` holds the top section ("Result is", "Scenario", "Mode", the scenario's metric,
    "Min duration satisfied", ...), ``stats`` "Additional Stats", ``parameters`` "Test
    Parameters Used" ("min_duration (ms)", "min_query_count", "target_qps", ...).
    """

    results: dict[str, str]
    stats: dict[str, str]
    parameters: dict[str, str]
    early_stopping: list[str]  # the " * ..." lines under "Early Stopping Result:"
    errors: int | None  # from the closing "... error(s) encountered" line; None: no such line
    warnings: int | None

    @property
    def validity(self) -> str | None:
        return self.results.get("Result is")

    @property
    def scenario(self) -> str | None:
        return self.results.get("Scenario")

    @property
    def mode(self) -> str | None:
        return self.results.get("Mode")

    def early_stopping_value(self, label: str) -> str | None:
        """The value of an early-stopping line "<label>: <value>" (e.g. "Early stopping 90.0th percentile estimate")."""
        for line in self.early_stopping:
            found, sep, value = line.partition(":")
            if sep and found.strip() == label:
                return value.strip()
        return None

    @property
    def processed_queries(self) -> int | None:
        """The query count of the early-stopping line "Processed at least N queries (count)."."""
        for line in self.early_stopping:
            if match := _PROCESSED.match(line):
                return int(match.group(1))
        return None


def parse_summary_log(path: Path) -> SummaryLog:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ParseError(f"{path}: cannot read LoadGen summary: {exc}") from exc
    sections: dict[str, dict[str, str]] = {name: {} for name in SUMMARY_SECTIONS.values()}
    early: list[str] = []
    tally: dict[str, int] = {}
    section = None
    for line in lines:
        text = line.strip()
        if text in SUMMARY_SECTIONS:
            section = SUMMARY_SECTIONS[text]
        elif match := _TALLY.match(text):
            count = match.group(1)
            tally[match.group(2).lower()] = 0 if count.lower() == "no" else int(count)
        elif text.startswith("* ") and section == "results":
            early.append(text[2:].strip())
        elif section is not None and ":" in text:
            label, _, value = text.partition(":")
            # The first line wins: a second "Result is" further down must not hide the first.
            sections[section].setdefault(label.strip(), value.strip())
    if section is None:
        raise ParseError(f"{path}: not a LoadGen summary: no 'MLPerf Results Summary' section")
    return SummaryLog(sections["results"], sections["stats"], sections["parameters"], early,
                      tally.get("error"), tally.get("warning"))


@dataclass(frozen=True)
class DetailTimes:
    """When things happened in a detail log: LoadGen's ``time_ms`` since the test began, and
    the wall-clock power window it logs around the performance run."""

    started_ms: float | None  # the "Starting performance mode" message
    results_ms: float | None  # the first result_* record, logged once the run had ended
    power_begin: datetime | None
    power_end: datetime | None

    @property
    def span_ms(self) -> float | None:
        if self.started_ms is None or self.results_ms is None:
            return None
        return self.results_ms - self.started_ms

    @property
    def power_ms(self) -> float | None:
        if self.power_begin is None or self.power_end is None:
            return None
        return (self.power_end - self.power_begin).total_seconds() * 1000.0


def parse_detail_times(path: Path) -> DetailTimes:
    started = results = None
    power: dict[str, datetime | None] = {}
    with collection_paused():
        for n, record in read_records(path, "LoadGen"):
            key, value, _ = _fields(record, path, n)
            when = _time_ms(record)
            if key == "generic_message" and value == "Starting performance mode" and started is None:
                started = when
            elif key.startswith("result_") and results is None:
                results = when
            elif key in ("power_begin", "power_end"):
                power[key] = _power_time(value)
    return DetailTimes(started, results, power.get("power_begin"), power.get("power_end"))


def _time_ms(record: dict[str, Any]) -> float | None:
    # LoadGen writes "time_ms"; MLLOG records of other writers carry "time" (ms since the epoch).
    value = record.get("time_ms", record.get("time"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _power_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), POWER_TIME_FORMAT)
    except ValueError:
        return None


def uses_token_latencies(detail: DetailLog) -> bool:
    """Whether LoadGen timed tokens in this run: an LLM's, whose figures are tokens."""
    return detail.get(USES_TOKEN_LATENCIES) is True


def tokens_per_second(detail: DetailLog) -> float | None:
    for key in TOKENS_PER_SECOND:
        if (value := detail.get(key)) is not None:
            return float(value)
    return None


def parse_rouge_txt(path: Path) -> dict[str, float]:
    """The scores of an LLM's accuracy.txt: its first line, the reference's evaluation.py dict
    (``{'rouge1': '38.7792', ..., 'gen_len': 8167644, 'gen_num': 13368}``), as numbers."""
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise ParseError(f"{path}: cannot read accuracy result: {exc}") from exc
    try:
        found = ast.literal_eval(first)
        scores = {str(name): float(value) for name, value in found.items()}
    except (ValueError, SyntaxError, TypeError, AttributeError) as exc:
        raise ParseError(f"{path}: line 1: expected the reference's dict of ROUGE scores, found {first!r}") from exc
    missing = [name for name in ROUGE_KEYS if name not in scores]
    if missing:
        raise ParseError(f"{path}: line 1: no {', '.join(missing)} in {first!r}")
    return scores


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
