"""LoadGen's two logs of one performance run checked against each other, and the detail log's
claimed duration against its own timestamps.

The rules of infer.validity read the detail log alone, and the official checker reads the
detail log too; a summary that says INVALID over a detail log that says VALID, or a detail log
whose ``effective_min_duration_ms`` was raised after the run, passes both. LoadGen writes both
files from the same numbers, so any disagreement means one of them was edited.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import ParseError
from benchpipe.contracts.layout import DETAIL_LOG, SUMMARY_LOG
from benchpipe.results.loadgen_parser import (
    RESULT_KEY,
    DetailLog,
    DetailTimes,
    SummaryLog,
    parse_detail_log,
    parse_detail_times,
    parse_summary_log,
    uses_token_latencies,
)

AGREE = "summary agrees with detail"
DURATION_RULE = "claimed min duration within the log's own timestamps"
# The summary prints a double with about 6 significant digits (Server's rate with 2 decimals),
# the detail log with 6: two honest prints of one number differ by less than these.
REL_TOL = 2e-5
ABS_TOL = 0.01
# power_begin/power_end are wall-clock times cut to the millisecond, and the wall clock is not
# LoadGen's steady clock: a run that met its minimum may show a few ms less. A forged minimum
# (600 s claimed over a 6 s run) is far outside this.
DURATION_SLACK_MS = 5.0
DURATION_SLACK_REL = 0.01

# "Test Parameters Used" label -> the detail log's key holding the same setting.
PARAMETER_KEYS = {
    "samples_per_query": "effective_samples_per_query",
    "target_qps": "effective_target_qps",
    "target_latency (ns)": "effective_target_latency_ns",
    "max_async_queries": "effective_max_async_queries",
    "min_duration (ms)": "effective_min_duration_ms",
    "max_duration (ms)": "effective_max_duration_ms",
    "min_query_count": "effective_min_query_count",
    "max_query_count": "effective_max_query_count",
    "qsl_rng_seed": "effective_qsl_rng_seed",
    "sample_index_rng_seed": "effective_sample_index_rng_seed",
    "schedule_rng_seed": "effective_schedule_rng_seed",
    "performance_sample_count": "effective_performance_sample_count",
}
# A Server run timing tokens (an LLM's) states its TTFT and TPOT bounds instead of target_latency,
# which LoadGen then leaves at 0 in the detail log and out of the summary.
TOKEN_PARAMETER_KEYS = {
    "ttft_latency (ns)": "requested_server_ttft_latency",
    "tpot_latency (ns)": "requested_server_tpot_latency",
}
TARGET_LATENCY_LABEL = "target_latency (ns)"
# The summary's Yes/No lines -> the detail log's flags.
SATISFIED_KEYS = {
    "Min duration satisfied": "result_min_duration_met",
    "Min queries satisfied": "result_min_queries_met",
    "Early stopping satisfied": "early_stopping_met",
    "Performance constraints satisfied": "result_perf_constraints_met",
}
# The throughput scenarios' metric line in the summary (LoadGen's results.cc).
RATE_LABEL = {"Offline": "Samples per second", "Server": "Completed samples per second"}
# The latency scenarios' RESULT_KEY is the early-stopping estimate at their target percentile.
ESTIMATE_LABEL = {
    "SingleStream": "Early stopping 90.0th percentile estimate",
    "MultiStream": "Early stopping 99.0th percentile estimate",
}
_PERCENTILE = re.compile(r"^([0-9.]+)th percentile latency \(ns\)$")


class _Problems:
    def __init__(self, summary_path: Path, detail_path: Path) -> None:
        self.summary_path = summary_path
        self.detail_path = detail_path
        self.lines: list[str] = []

    def disagree(self, what: str, summary: Any, detail: Any, key: str) -> None:
        self.lines.append(
            f"{self.summary_path}: summary says {what} {summary}, {self.detail_path.name} says {key} {detail} "
            f"(rule '{AGREE}: {key}')"
        )

    def missing(self, what: str, key: str) -> None:
        self.lines.append(f"{self.summary_path}: {what} (rule '{AGREE}: {key}')")


def check_run_logs(test_dir: Path) -> list[str]:
    """Problems of one performance run's folder: its summary against its detail log, and the
    detail log's claimed duration against its timestamps (empty: none)."""
    summary_path, detail_path = test_dir / SUMMARY_LOG, test_dir / DETAIL_LOG
    if not summary_path.is_file():
        return [f"{summary_path}: missing beside {DETAIL_LOG} (rule '{AGREE}: present')"]
    try:
        summary = parse_summary_log(summary_path)
        detail = parse_detail_log(detail_path)
        times = parse_detail_times(detail_path)
    except ParseError as exc:
        return [f"{exc} (rule '{AGREE}: readable')"]
    return (check_summary_agrees(summary, detail, summary_path, detail_path)
            + check_claimed_duration(detail, times, detail_path))


def check_summary_agrees(summary: SummaryLog, detail: DetailLog, summary_path: Path, detail_path: Path) -> list[str]:
    """Problems where the summary and the detail log of one performance run say different things."""
    p = _Problems(summary_path, detail_path)
    _agree_text(p, "the result is", summary.validity, detail, "result_validity")
    _agree_text(p, "the scenario is", summary.scenario, detail, "effective_scenario")
    _agree_text(p, "the mode is", summary.mode, detail, "effective_test_mode")
    _agree_flags(p, summary, detail)
    _agree_metric(p, summary, detail)
    _agree_parameters(p, summary, detail)
    _agree_counts(p, summary, detail)
    return p.lines


def _agree_text(p: _Problems, what: str, found: str | None, detail: DetailLog, key: str) -> None:
    expected = detail.get(key)
    if found is None:
        p.missing(f"no '{what}' line; {p.detail_path.name} says {key} {expected}", key)
    elif found != expected:
        p.disagree(what, found, expected, key)


def _agree_flags(p: _Problems, summary: SummaryLog, detail: DetailLog) -> None:
    for label, key in SATISFIED_KEYS.items():
        found, expected = summary.results.get(label), detail.get(key)
        # Server alone logs result_perf_constraints_met; the summary prints it only then.
        if found is None and expected is None:
            continue
        # LoadGen prints "Yes" and "NO".
        said = {"yes": True, "no": False}.get((found or "").lower())
        if said is None or said is not expected:
            p.disagree(f"'{label}:'", found, expected, key)


def _agree_metric(p: _Problems, summary: SummaryLog, detail: DetailLog) -> None:
    scenario = detail.get("effective_scenario")
    key = RESULT_KEY.get(scenario)
    if key is None:
        return
    if scenario in RATE_LABEL:
        label = RATE_LABEL[scenario]
        _agree_number(p, f"'{label}'", summary.results.get(label), detail, key)
        if scenario == "Server":
            _agree_number(p, "'Scheduled samples per second'", summary.stats.get("Scheduled samples per second"),
                          detail, "result_scheduled_samples_per_sec")
        return
    label = ESTIMATE_LABEL[scenario]
    _agree_number(p, f"'{label}'", summary.early_stopping_value(label), detail, key)
    for line, value in summary.results.items():
        if match := _PERCENTILE.match(line):
            _agree_number(p, f"'{line}'", value, detail, _percentile_key(scenario, float(match.group(1)), detail))


def _percentile_key(scenario: str, percentile: float, detail: DetailLog) -> str:
    # MultiStream's headline percentile is of whole queries; LoadGen logs it as per_query.
    plain = f"result_{percentile:.2f}_percentile_latency_ns"
    per_query = f"result_{percentile:.2f}_percentile_per_query_latency_ns"
    return per_query if scenario == "MultiStream" and detail.get(per_query) is not None else plain


def _agree_parameters(p: _Problems, summary: SummaryLog, detail: DetailLog) -> None:
    token_bounds = uses_token_latencies(detail) and any(label in summary.parameters for label in TOKEN_PARAMETER_KEYS)
    if token_bounds:
        for label, key in TOKEN_PARAMETER_KEYS.items():
            # LoadGen prints them for every scenario, but logs them only for Server (Offline's
            # summary shows mlperf.conf's Server bounds of the model with nothing to compare).
            if detail.get(key) is not None:
                _agree_number(p, f"'{label}'", summary.parameters.get(label), detail, key)
    for label, key in PARAMETER_KEYS.items():
        if token_bounds and label == TARGET_LATENCY_LABEL and label not in summary.parameters:
            continue
        if label in summary.parameters or detail.get(key) is not None:
            _agree_number(p, f"'{label}'", summary.parameters.get(label), detail, key)


def _agree_counts(p: _Problems, summary: SummaryLog, detail: DetailLog) -> None:
    processed = summary.processed_queries
    if processed is not None:
        _agree_number(p, "'Processed at least ... queries'", str(processed), detail, "result_query_count")
    if summary.errors is not None or detail.get("num_errors") is not None:
        _agree_number(p, "errors encountered", None if summary.errors is None else str(summary.errors),
                      detail, "num_errors")


def _agree_number(p: _Problems, what: str, found: str | None, detail: DetailLog, key: str) -> None:
    expected = detail.get(key)
    if found is None:
        p.missing(f"no {what} line; {p.detail_path.name} says {key} {expected}", key)
        return
    value, logged = _number(found), _number(expected)
    if value is None or logged is None or not _close(value, logged):
        p.disagree(what, found, expected, key)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    for parse in (int, float):  # int first: the seeds are 64-bit and a float would round them
        try:
            return parse(str(value))
        except ValueError:
            continue
    return None


def _close(a: float | int, b: float | int) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def check_claimed_duration(detail: DetailLog, times: DetailTimes, path: Path) -> list[str]:
    """Problems where a run that says it met its min duration shows less time in its own records."""
    claimed = _number(detail.get("effective_min_duration_ms"))
    met = detail.get("result_min_duration_met") is True or detail.get("result_validity") == "VALID"
    if not met or claimed is None:
        return []
    problems = []
    measures: list[tuple[str, float | None]] = [
        ("its records span", times.span_ms),
        ("power_begin to power_end spans", times.power_ms),
    ]
    if times.span_ms is None:
        problems.append(f"{path}: the run says it met its min duration of {claimed} ms but has no time_ms on its "
                        f"'Starting performance mode' or result records (rule '{DURATION_RULE}')")
    for what, span in measures:
        if span is not None and span < _least(claimed):
            problems.append(
                f"{path}: effective_min_duration_ms claims {claimed} ms and the run says it met it, but {what} "
                f"{span:.0f} ms (rule '{DURATION_RULE}')"
            )
    return problems


def _least(claimed: float) -> float:
    return claimed * (1 - DURATION_SLACK_REL) - DURATION_SLACK_MS
