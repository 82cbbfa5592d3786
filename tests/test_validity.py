"""Our validity rules on real LoadGen logs (tests/loadgen_logs.py): each rule fails on a run that breaks it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from loadgen_logs import run_loadgen

from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.rounds import OFFICIAL_MIN_DURATION_MS
from benchpipe.infer.compliance import audit_config
from benchpipe.infer.validity import (
    EARLY_STOPPING_SCENARIOS,
    ROUND_SEEDS,
    check_accuracy,
    check_performance,
    rules_for,
)
from benchpipe.results.loadgen_parser import DetailLog, parse_detail_log

MODEL = "resnet50"
MIN_MS = 200
# A target latency below the SUT's 1 ms: LoadGen generates more queries than it needs.
SINGLE = dict(scenario="SingleStream", min_duration_ms=MIN_MS, delay_s=1e-3, extra_conf={"target_latency": 0.25})


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Every LoadGen run of this module, once, each in its own process (about half a second)."""
    tmp = tmp_path_factory.mktemp("validity")
    audit = tmp / "TEST01.audit.config"
    audit.write_text(audit_config("TEST01", MODEL))
    plan = {
        "valid": SINGLE,
        # mlperf.conf's 10 ms target latency for a 1 ms SUT: LoadGen runs out of queries.
        "out_of_queries": dict(SINGLE, extra_conf={}),
        # user.conf cannot move the seeds (LoadGen keeps mlperf.conf's); code can.
        "seeds": dict(SINGLE, extra_conf={**SINGLE["extra_conf"], "sample_index_rng_seed": 5},
                      settings={"qsl_rng_seed": 1}),
        # max_duration ends the run long before the min query count.
        "few_queries": dict(
            SINGLE, extra_conf={**SINGLE["extra_conf"], "min_query_count": 100000, "max_duration": 250}
        ),
        "offline": dict(scenario="Offline", min_duration_ms=MIN_MS, delay_s=1e-4,
                        extra_conf={"target_qps": 20000, "min_query_count": 1}),
        # ~100 queries are too few for Server's early stopping; 20 ms is above resnet's 15 ms bound.
        "server": dict(scenario="Server", min_duration_ms=MIN_MS, delay_s=2e-4,
                       extra_conf={"target_qps": 500, "target_latency": 20}),
        "TEST01": dict(SINGLE, audit_config=audit),
        "accuracy": dict(SINGLE, mode="accuracy"),
    }
    return {name: run_loadgen(tmp / name, model=MODEL, **kwargs) for name, kwargs in plan.items()}


def _log(runs, name: str) -> tuple[DetailLog, Path]:
    path = runs[name] / "mlperf_log_detail.txt"
    return parse_detail_log(path), path


def _check(runs, name: str, scenario: str = "SingleStream", detail: DetailLog | None = None, **kwargs) -> list[str]:
    """check_performance of a run's log (or of ``detail``, an edited copy of it)."""
    parsed, path = _log(runs, name)
    options = dict(scenario=scenario, official=False, min_duration_ms=MIN_MS, loadgen_model=MODEL)
    return check_performance(detail or parsed, path, **{**options, **kwargs})


def _rules(problems: list[str]) -> list[str]:
    return [p.split("rule '", 1)[1].split("'", 1)[0] for p in problems]


def test_round_constants():
    assert ROUND_SEEDS == {
        "qsl_rng_seed": 2085463073848966840,
        "sample_index_rng_seed": 2747215439041700203,
        "schedule_rng_seed": 16159082839903944936,
    }
    assert OFFICIAL_MIN_DURATION_MS == 600_000
    assert EARLY_STOPPING_SCENARIOS == {"SingleStream", "MultiStream", "Server"}
    assert rules_for("resnet50").offline_min_samples_per_query == 24576
    assert rules_for("resnet50").min_query_count["SingleStream"] == 1024
    assert rules_for("digits").min_query_count == {"SingleStream": 100, "MultiStream": 662, "Server": 100, "Offline": 1}


def test_a_valid_development_run_passes(runs):
    assert _check(runs, "valid") == []
    assert _check(runs, "offline", scenario="Offline") == []
    detail, _ = _log(runs, "valid")
    assert all(detail.get(f"effective_{name}") == seed for name, seed in ROUND_SEEDS.items())


def test_official_rules_on_a_short_run(runs):
    problems = _check(runs, "valid", official=True)
    assert _rules(problems) == ["min_duration"]
    assert problems[0] == (
        f"{runs['valid'] / 'mlperf_log_detail.txt'}: rule 'min_duration': effective_min_duration_ms is "
        f"{MIN_MS}, an official run needs at least {OFFICIAL_MIN_DURATION_MS}"
    )
    # Offline in the closed division also needs 24576 samples in its query (the checker's
    # OFFLINE_MIN_SPQ_SINCE_V4); the open division does not.
    closed = _check(runs, "offline", scenario="Offline", official=True)
    assert _rules(closed) == ["min_duration", "offline_samples_per_query"]
    assert closed[1].endswith("effective_samples_per_query is 4400, the closed division needs at least 24576")
    assert _rules(_check(runs, "offline", scenario="Offline", official=True, division="open")) == ["min_duration"]


def test_development_min_duration_must_be_the_requested_one(runs):
    [problem] = _check(runs, "valid", min_duration_ms=MIN_MS + 100)
    assert problem.endswith(
        f"rule 'min_duration': effective_min_duration_ms is {MIN_MS}, the development run asked for {MIN_MS + 100}"
    )


def test_an_invalid_run_and_its_loadgen_error(runs):
    problems = _check(runs, "out_of_queries")
    assert _rules(problems) == ["result_validity", "loadgen_errors"]
    path = runs["out_of_queries"] / "mlperf_log_detail.txt"
    assert problems[0] == (
        f"{path}: rule 'result_validity': INVALID (Decrease the expected latency so the loadgen pre-generates more queries.)"
    )
    assert "1 LoadGen error(s), the first: line" in problems[1]
    assert "error_runtime: Ending early: Ran out of generated queries" in problems[1]


def test_a_loadgen_error_alone_fails(runs):
    detail, path = _log(runs, "valid")
    error = "line 7: error_runtime: something went wrong"
    problems = _check(runs, "valid", detail=replace(detail, errors=[error]))
    assert problems == [f"{path}: rule 'loadgen_errors': 1 LoadGen error(s), the first: {error}"]


def test_seeds_must_be_the_rounds(runs):
    detail, _ = _log(runs, "seeds")
    assert detail.get("effective_sample_index_rng_seed") == ROUND_SEEDS["sample_index_rng_seed"]  # user.conf ignored
    [problem] = _check(runs, "seeds")
    assert f"rule 'rng_seeds': effective_qsl_rng_seed is 1, the v6.1 rules need {ROUND_SEEDS['qsl_rng_seed']}" in problem


def test_min_query_count(runs):
    # Development: LoadGen's own verdict on the queries the run asked for.
    problems = _check(runs, "few_queries")
    assert _rules(problems) == ["result_validity", "loadgen_errors", "min_query_count"]
    assert "result_min_queries_met is false" in problems[2]
    # Official: the rules' minimum where early stopping does not decide (Offline here).
    detail, _ = _log(runs, "offline")
    lowered = replace(detail, values={**detail.values, "effective_min_query_count": 0})
    problems = _check(runs, "offline", scenario="Offline", detail=lowered, official=True, division="open")
    assert _rules(problems) == ["min_duration", "min_query_count"]
    assert "effective_min_query_count is 0, the rules need at least 1" in problems[1]


def test_server_early_stopping_and_latency_bound(runs):
    problems = _check(runs, "server", scenario="Server")
    assert _rules(problems) == ["result_validity", "early_stopping", "server_latency_bound"]
    assert "early stopping not met" in problems[0]
    assert "rule 'early_stopping': early_stopping_met is false (* Run unsuccessful." in problems[1]
    assert problems[2].endswith("effective_target_latency_ns is 20000000, above the 15 ms p99 bound of resnet")
    # Not an MLPerf model: no latency bound of the rules.
    unknown = _check(runs, "server", scenario="Server", loadgen_model="digits")
    assert _rules(unknown) == ["result_validity", "early_stopping"]


def test_scenario_and_mode_must_match(runs):
    assert _rules(_check(runs, "valid", scenario="Offline")) == ["scenario"]
    with pytest.raises(ValidationError, match="scenario 'Batch' is not one of"):
        _check(runs, "valid", scenario="Batch")


def test_audit_config_only_in_compliance_runs(runs):
    problems = _check(runs, "TEST01")
    assert _rules(problems) == ["audit_config"]
    assert "LoadGen applied an audit.config to this submission run" in problems[0]
    assert _check(runs, "TEST01", compliance_test="TEST01") == []
    # The TEST04 settings did not take effect in a TEST01 run, nor TEST01's in a plain run.
    assert set(_rules(_check(runs, "TEST01", compliance_test="TEST04"))) == {"audit_config"}
    problems = _check(runs, "valid", compliance_test="TEST01")
    assert problems[-1].endswith(
        "effective_accuracy_log_sampling_target is 0, TEST01's audit.config sets 4096: it did not take effect"
    )


def test_accuracy_run(runs):
    detail, path = _log(runs, "accuracy")
    assert check_accuracy(detail, path) == []
    with_error = replace(detail, errors=["line 9: error_runtime: boom"])
    assert _rules(check_accuracy(with_error, path)) == ["loadgen_errors"]
    detail, path = _log(runs, "valid")
    assert check_accuracy(detail, path) == [
        f"{path}: rule 'test_mode': the log is of a PerformanceOnly run, expected AccuracyOnly"
    ]


def test_missing_keys_are_problems_not_crashes(runs):
    detail, path = _log(runs, "valid")
    truncated = replace(detail, values={k: v for k, v in detail.values.items() if not k.startswith("result_")})
    problems = _check(runs, "valid", detail=truncated)
    assert f"{path}: rule 'result_validity': key 'result_validity' missing from the log" in problems
