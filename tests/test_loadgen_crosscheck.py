"""LoadGen's summary against its detail log, and the detail log's claimed min duration against its
own timestamps: on real logs (tests/loadgen_logs.py), on edited copies of them, at packaging and in
the audit of the tree the workflow wrote (conftest `submitted`)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from loadgen_logs import run_loadgen

from benchpipe.audit import audit
from benchpipe.contracts.errors import ValidationError
from benchpipe.infer.crosscheck import AGREE, DURATION_RULE, check_run_logs
from benchpipe.package.inference import ScenarioResults, check_scenario
from benchpipe.package.manifest import write_manifest
from benchpipe.results.loadgen_parser import parse_detail_times, parse_summary_log

SUMMARY, DETAIL = "mlperf_log_summary.txt", "mlperf_log_detail.txt"
SCENARIO = Path("benchpipe/inference/closed/benchpipe-ci/results/local-cpu/digits/Offline")
RUN = SCENARIO / "performance" / "run_1"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One real LoadGen run per scenario, each in its own process (about a second in all)."""
    tmp = tmp_path_factory.mktemp("crosscheck")
    plan = {
        "SingleStream": dict(delay_s=1e-3, extra_conf={"target_latency": 0.25}),
        "Offline": dict(delay_s=1e-4, extra_conf={"target_qps": 20000, "min_query_count": 1}),
        # Too few queries for Server's early stopping: an INVALID run, whose "NO" lines must agree too.
        "Server": dict(delay_s=2e-4, extra_conf={"target_qps": 500, "target_latency": 20}),
        "MultiStream": dict(delay_s=1e-4),
    }
    return {scenario: run_loadgen(tmp / scenario, scenario=scenario, min_duration_ms=200, **kwargs)
            for scenario, kwargs in plan.items()}


def _copy(runs, scenario: str, tmp_path: Path) -> Path:
    out = tmp_path / scenario
    shutil.copytree(runs[scenario], out)
    return out


def _edit(path: Path, pattern: str, replacement: str) -> None:
    text = path.read_text()
    edited, n = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert n == 1, f"{pattern!r} not in {path}"
    path.write_text(edited)


def _detail_value(run: Path, key: str, value: str) -> None:
    _edit(run / DETAIL, rf'("key": "{key}", "value": )[^,]+,', rf"\g<1>{value},")


# --- the parser, on real summaries -----------------------------------------------------------------

def test_the_summary_parser_reads_what_loadgen_wrote(runs):
    single = parse_summary_log(runs["SingleStream"] / SUMMARY)
    assert (single.validity, single.scenario, single.mode) == ("VALID", "SingleStream", "PerformanceOnly")
    assert single.results["Min duration satisfied"] == "Yes"
    assert single.parameters["min_duration (ms)"] == "200"
    assert single.processed_queries is not None and single.processed_queries > 64
    assert single.early_stopping_value("Early stopping 90.0th percentile estimate").isdigit()
    assert (single.errors, single.warnings) == (0, 0)
    server = parse_summary_log(runs["Server"] / SUMMARY)
    assert server.validity == "INVALID" and "Completed samples per second" in server.results
    times = parse_detail_times(runs["SingleStream"] / DETAIL)
    assert times.span_ms >= 200 and times.power_ms >= 200 - 1


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline", "Server", "MultiStream"])
def test_genuine_logs_agree(runs, scenario):
    assert check_run_logs(runs[scenario]) == []


# --- the summary against the detail log --------------------------------------------------------------

def test_a_summary_saying_invalid_over_a_valid_detail_log_is_caught(runs, tmp_path):
    run = _copy(runs, "SingleStream", tmp_path)
    _edit(run / SUMMARY, r"^Result is : VALID$", "Result is : INVALID")
    assert check_run_logs(run) == [
        f"{run / SUMMARY}: summary says the result is INVALID, {DETAIL} says result_validity VALID "
        f"(rule '{AGREE}: result_validity')"
    ]


def test_a_detail_log_turned_valid_under_an_invalid_summary_is_caught(runs, tmp_path):
    run = _copy(runs, "Server", tmp_path)
    _detail_value(run, "result_validity", '"VALID"')
    problems = check_run_logs(run)
    assert any(f"rule '{AGREE}: result_validity'" in p and p.startswith(str(run / SUMMARY)) for p in problems)


@pytest.mark.parametrize(("scenario", "pattern", "key"), [
    ("Offline", r"^(Samples per second: )(\S+)$", "result_samples_per_second"),
    ("Server", r"^(Completed samples per second\s*: )(\S+)$", "result_completed_samples_per_sec"),
    ("SingleStream", r"^( \* Early stopping 90.0th percentile estimate: )(\S+)$", "early_stopping_latency_ss"),
    ("SingleStream", r"^(90.0th percentile latency \(ns\) : )(\S+)$", "result_90.00_percentile_latency_ns"),
    ("MultiStream", r"^( \* Early stopping 99.0th percentile estimate: )(\S+)$", "early_stopping_latency_ms"),
])
def test_a_metric_the_summary_improved_is_caught(runs, tmp_path, scenario, pattern, key):
    run = _copy(runs, scenario, tmp_path)
    text = (run / SUMMARY).read_text()
    value = float(re.search(pattern, text, re.MULTILINE).group(2))
    better = value * 1.01 if "second" in pattern else value * 0.99  # 1 %: faster, or lower latency
    _edit(run / SUMMARY, pattern, rf"\g<1>{better:.2f}")
    problems = check_run_logs(run)
    assert len(problems) == 1 and f"(rule '{AGREE}: {key}')" in problems[0], problems
    assert problems[0].startswith(f"{run / SUMMARY}: summary says")


def test_a_metric_printed_with_other_rounding_still_agrees(runs, tmp_path):
    run = _copy(runs, "Offline", tmp_path)
    text = (run / SUMMARY).read_text()
    value = float(re.search(r"^Samples per second: (\S+)$", text, re.MULTILINE).group(1))
    _edit(run / SUMMARY, r"^Samples per second: \S+$", f"Samples per second: {value * (1 + 4e-6):.4f}")
    assert check_run_logs(run) == []


@pytest.mark.parametrize(("scenario", "edit", "key"), [
    ("Offline", (SUMMARY, r"^(min_query_count : )\d+$", r"\g<1>24576"), "effective_min_query_count"),
    ("SingleStream", (SUMMARY, r"^( \* Processed at least 64 queries \()\d+", r"\g<1>99999"), "result_query_count"),
    ("SingleStream", (SUMMARY, r"^(  Min duration satisfied : )Yes$", r"\g<1>NO"), "result_min_duration_met"),
    ("SingleStream", (SUMMARY, r"^Scenario : SingleStream$", "Scenario : Offline"), "effective_scenario"),
    # LoadGen logged an error; the summary says there were none.
    ("Offline", (DETAIL, r'("key": "num_errors", "value": )0,', r"\g<1>1,"), "num_errors"),
])
def test_other_disagreements_are_named(runs, tmp_path, scenario, edit, key):
    run = _copy(runs, scenario, tmp_path)
    name, pattern, replacement = edit
    _edit(run / name, pattern, replacement)
    problems = check_run_logs(run)
    assert any(f"(rule '{AGREE}: {key}')" in p for p in problems), problems


def test_a_missing_or_foreign_summary_is_a_problem(runs, tmp_path):
    run = _copy(runs, "Offline", tmp_path)
    (run / SUMMARY).write_text("Samples per second: 1e9\nResult is : VALID\n")
    assert check_run_logs(run) == [
        f"{run / SUMMARY}: not a LoadGen summary: no 'MLPerf Results Summary' section (rule '{AGREE}: readable')"
    ]
    (run / SUMMARY).unlink()
    assert check_run_logs(run) == [f"{run / SUMMARY}: missing beside {DETAIL} (rule '{AGREE}: present')"]


# --- the claimed min duration against the detail log's timestamps -----------------------------------

def test_a_min_duration_raised_in_both_logs_is_caught_by_the_timestamps(runs, tmp_path):
    run = _copy(runs, "Offline", tmp_path)
    _detail_value(run, "effective_min_duration_ms", "600000")
    _edit(run / SUMMARY, r"^(min_duration \(ms\): )\d+$", r"\g<1>600000")
    problems = check_run_logs(run)
    assert len(problems) == 2, problems
    assert all(p.startswith(f"{run / DETAIL}: effective_min_duration_ms claims 600000 ms and the run says it met it")
               and p.endswith(f"(rule '{DURATION_RULE}')") for p in problems)
    assert "its records span" in problems[0] and "power_begin to power_end spans" in problems[1]


def test_a_min_duration_raised_in_the_detail_log_alone_is_caught_twice(runs, tmp_path):
    run = _copy(runs, "SingleStream", tmp_path)
    _detail_value(run, "effective_min_duration_ms", "600000")
    rules = [p.rsplit("(rule ", 1)[1] for p in check_run_logs(run)]
    assert f"'{AGREE}: effective_min_duration_ms')" in rules and f"'{DURATION_RULE}')" in rules


def test_a_log_stripped_of_its_timestamps_cannot_claim_its_duration(runs, tmp_path):
    run = _copy(runs, "Offline", tmp_path)
    text = (run / DETAIL).read_text()
    (run / DETAIL).write_text(re.sub(r'"time_ms": [0-9.]+, ', "", text))
    problems = check_run_logs(run)
    assert any("has no time_ms on its 'Starting performance mode' or result records" in p for p in problems)


def test_a_run_that_says_it_missed_its_duration_is_not_held_to_it(runs, tmp_path):
    # The validity rules refuse such a run; the timestamps have nothing to contradict.
    run = _copy(runs, "Offline", tmp_path)
    for name, pattern, replacement in [
        (DETAIL, r'("key": "effective_min_duration_ms", "value": )\d+,', r"\g<1>600000,"),
        (DETAIL, r'("key": "result_validity", "value": )"VALID",', r'\g<1>"INVALID",'),
        (DETAIL, r'("key": "result_min_duration_met", "value": )true,', r"\g<1>false,"),
        (SUMMARY, r"^(min_duration \(ms\): )\d+$", r"\g<1>600000"),
        (SUMMARY, r"^Result is : VALID$", "Result is : INVALID"),
        (SUMMARY, r"^(  Min duration satisfied : )Yes$", r"\g<1>NO"),
    ]:
        _edit(run / name, pattern, replacement)
    assert check_run_logs(run) == []


# --- at packaging ----------------------------------------------------------------------------------

def test_packaging_refuses_a_summary_that_disagrees(submitted, tmp_path):
    infer = tmp_path / "infer"
    shutil.copytree(submitted / "runs" / "local-cpu" / "digits" / "infer" / "Offline", infer)
    settings = json.loads((submitted / "submissions" / "ci" / "benchpipe" / "config.json").read_text())
    _edit(infer / "performance" / SUMMARY, r"^Result is : VALID$", "Result is : INVALID")
    official = bool(settings["inference"].get("official"))
    group = ScenarioResults("local-cpu", "digits", "Offline", tests={"performance": infer / "performance"},
                            rows={"performance": {"official_run": official}})
    with pytest.raises(ValidationError, match=re.escape(
            f"{infer / 'performance' / SUMMARY}: summary says the result is INVALID, {DETAIL} says result_validity "
            f"VALID (rule '{AGREE}: result_validity')")):
        check_scenario(group, settings, staging=tmp_path / "staging")


# --- in the audit ----------------------------------------------------------------------------------

@pytest.fixture
def tree(submitted, tmp_path) -> Path:
    copy = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", copy, symlinks=True)
    return copy


def _checkers(tree: Path) -> tuple[set[str], list[str]]:
    report = audit(tree)
    items = {item.name: item for item in report.items}
    # Without a checkout, the checkers item notes that MLCommons' checker was not re-run: not a failure.
    reasons = [r for r in items["checkers"].reasons if "inference checker not re-run" not in r]
    return {name for name, item in items.items() if item.status == "fail"}, reasons


def test_the_audit_catches_a_summary_saying_invalid_over_a_valid_detail_log(tree):
    _edit(tree / RUN / SUMMARY, r"^Result is : VALID$", "Result is : INVALID")
    write_manifest(tree)
    failed, reasons = _checkers(tree)
    # The manifest was rebuilt to match: the deeper checks must see it (other items may, too).
    assert "checkers" in failed and "manifest" not in failed, reasons
    assert reasons == [f"{RUN.as_posix()}/{SUMMARY}: summary says the result is INVALID, {DETAIL} says "
                       f"result_validity VALID (rule '{AGREE}: result_validity')"]


def test_the_audit_catches_a_min_duration_the_timestamps_deny(tree):
    _detail_value(tree / RUN, "effective_min_duration_ms", "600000")
    write_manifest(tree)
    failed, reasons = _checkers(tree)
    assert "checkers" in failed and "manifest" not in failed, reasons
    assert any(r.startswith(f"{RUN.as_posix()}/{DETAIL}: effective_min_duration_ms claims 600000 ms")
               and r.endswith(f"(rule '{DURATION_RULE}')") for r in reasons), reasons
    assert any(r.startswith(f"{RUN.as_posix()}/{SUMMARY}: summary says")
               and f"(rule '{AGREE}: effective_min_duration_ms')" in r for r in reasons), reasons


def test_the_audit_catches_a_metric_the_summary_changed(tree):
    _edit(tree / RUN / SUMMARY, r"^(Samples per second: )\S+$", r"\g<1>999999.9")
    write_manifest(tree)
    failed, reasons = _checkers(tree)
    # The manifest was rebuilt to match: the deeper checks must see it (other items may, too).
    assert "checkers" in failed and "manifest" not in failed, reasons
    assert len(reasons) == 1 and reasons[0].startswith(f"{RUN.as_posix()}/{SUMMARY}: summary says "
                                                       "'Samples per second' 999999.9")
    assert reasons[0].endswith(f"(rule '{AGREE}: result_samples_per_second')")
