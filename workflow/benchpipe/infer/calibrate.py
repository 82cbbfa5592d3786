"""Short measurements, before a scenario's real test, of what its user.conf needs.

* Offline: samples/s of the predictor on full batches (called directly, after a warm-up).
* SingleStream: p90 latency of one sample through a short LoadGen SingleStream run.
* MultiStream: p99 latency of an 8-sample query through a short LoadGen MultiStream run.
* Server: the batcher's settings from the latency bound and the measured cost of each batch
  size, then a search for the highest target_qps whose short Server run is VALID, backed
  off by a safety margin for the real run.

Every LoadGen run here sets TestSettings fields directly (never FromConfig, which may run
once per process) and writes its logs into a temporary directory, or ``log_dir``.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchpipe.contracts.errors import BenchpipeError, InferenceError
from benchpipe.infer.samples import SampleLibrary
from benchpipe.infer.sut import (
    MULTI_STREAM_SAMPLES,
    SCENARIOS,
    Batching,
    BatchSUT,
    CompiledPredictor,
    Predictor,
    ServerSUT,
    powers_of_two_up_to,
    start_test,
)

PredictorFactory = Callable[[Sequence[int]], Predictor]

OFFLINE_WARMUP_S = 0.25
OFFLINE_MEASURE_S = 1.0
# The latency runs: long enough for a stable p90/p99, short against the budget.
LATENCY_RUN_MS = 1000
LATENCY_RUN_QUERIES = 100
# How far below the raw call time a latency run's expected latency starts (latency_run).
EXPECTED_LATENCY_DIVISOR = 10
# Server batching, as fractions of the p99 bound. A sample can arrive just after every
# worker started a batch: it waits up to one batch's compute for a worker, up to max_wait
# for its batch to form, then its own batch's compute. With a batch costing at most a
# quarter of the bound and max_wait a twentieth, that is 0.55 of the bound, which leaves
# the search's margin (SEARCH_LATENCY_FRACTION, 0.7) room for the host's own stalls: on a
# shared 2-core host a fixed 2 ms computation takes 4.3 ms at its p99. With max_wait a
# quarter (0.75 in all, past the margin), digits' searches found a median 13,800 queries/s,
# against 20,900 with a twentieth (bench/server_max_wait.py, 3 rounds each, alternated).
MAX_BATCH_COST_FRACTION = 0.25
MAX_WAIT_FRACTION = 0.05
# The batcher's own deadline, below the bound: LoadGen's issue thread, the GIL and the
# responses take time the batcher does not see.
LATENCY_BUDGET_FRACTION = 0.8
SERVER_MAX_BATCH_CAP = 256
# Two workers: one forms, gathers and answers a batch while the other computes; more
# would only contend for the same cores (TensorFlow already spreads one batch over them).
SERVER_WORKERS = 2
# The search: short runs, at most SEARCH_MAX_RUNS, stopped when VALID and INVALID rates are
# within SEARCH_PRECISION of each other; the real run targets (1 - SAFETY_MARGIN) x the
# highest VALID rate (confirmed by a longer run), since a 600 s run meets more of the
# machine's hiccups than 1.5 s does.
SEARCH_START_FRACTION = 0.5  # of the Offline rate at the chosen max_batch
SEARCH_RUN_MS = 1500
SEARCH_MAX_RUNS = 8
SEARCH_PRECISION = 0.05
SEARCH_MIN_QPS = 1.0
# After an overloaded run, the next rate tried: this fraction of what the SUT computed in it.
OVERLOAD_BACKOFF = 0.8
# The backed-off rate is confirmed by a run this many times as long, tried at most this often.
CONFIRM_LENGTH = 2
CONFIRM_ATTEMPTS = 3
SAFETY_MARGIN = 0.15
# A search run needs this many queries for early stopping to pass with up to 3 of them over
# the bound (LoadGen's binomial test at p99, 99 % confidence: 459 with none, 1001 with 3).
SEARCH_RUN_QUERIES = 1001
# Search runs answer samples this far past the bound at once (see ServerSUT.shed_after_s).
SHED_AFTER_BOUNDS = 2.0
# LoadGen stops issuing a search run's queries this many times past its planned length
# (max_duration_ms). An overloaded run otherwise issues every query of its schedule as fast
# as the SUT takes them: a rate ten times too high made a 0.4 s run last 4 s.
SEARCH_MAX_DURATION_FACTOR = 2.0
# LoadGen's Server issues every query already due in one callback when its issue thread falls
# behind (server_coalesce_queries), instead of one callback per query; each query's latency
# still counts from its scheduled time. Without it, LoadGen's per-query scheduling and the call
# into Python capped a model-free SUT at 0.69 x digits' Offline rate on two cores; with it, at
# 4 x. MLCommons' published submissions set it too; the real run's user.conf does the same.
SERVER_COALESCE_QUERIES = True
# What LoadGen logs as an error when max_duration_ms cut the issuing short.
CUT_SHORT = "Ending early: Max test duration reached"
# A search run counts as VALID only with its p99 this far inside the bound: the real run, in
# another process and longer, meets a noisier machine, and TEST01's accuracy logging costs
# latency too (digits: p99 8.2 ms in the performance run, 10.3 ms in TEST01 at the same rate).
SEARCH_LATENCY_FRACTION = 0.7


@dataclass
class Calibration:
    """What one scenario's calibration measured and chose; calibration.json holds to_dict()."""

    scenario: str
    batching: Batching
    offline_qps: float | None = None
    single_stream_latency_ns: int | None = None
    multi_stream_latency_ns: int | None = None
    server_target_qps: float | None = None  # backed off from the highest VALID rate, confirmed
    server_latency_bound_ns: int | None = None
    search: list[tuple[float, bool, int | None]] = field(default_factory=list)  # (qps, VALID, p99 ns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "batching": self.batching.to_dict(),
            "offline_qps": self.offline_qps,
            "single_stream_latency_ns": self.single_stream_latency_ns,
            "multi_stream_latency_ns": self.multi_stream_latency_ns,
            "server_target_qps": self.server_target_qps,
            "server_latency_bound_ns": self.server_latency_bound_ns,
            "search": [{"qps": q, "valid": v, "p99_ns": p} for q, v, p in self.search],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        try:
            return cls(
                scenario=str(data["scenario"]),
                batching=Batching.from_dict(data["batching"]),
                offline_qps=_optional(data.get("offline_qps"), float),
                single_stream_latency_ns=_optional(data.get("single_stream_latency_ns"), int),
                multi_stream_latency_ns=_optional(data.get("multi_stream_latency_ns"), int),
                server_target_qps=_optional(data.get("server_target_qps"), float),
                server_latency_bound_ns=_optional(data.get("server_latency_bound_ns"), int),
                search=[(float(r["qps"]), bool(r["valid"]), _optional(r["p99_ns"], int))
                        for r in data.get("search", [])],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InferenceError(f"calibration: key {exc} missing or malformed") from exc


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


# --- measurements --------------------------------------------------------------------------


def measure_offline(predictor: Predictor, qsl: SampleLibrary, batch_size: int,
                    seconds: float = OFFLINE_MEASURE_S) -> float:
    """Samples/s of ``predictor`` called back to back on full batches of real samples."""
    count = min(qsl.total, batch_size)
    rows = qsl.source.read(np.arange(count))
    batch = np.ascontiguousarray(rows[np.arange(batch_size) % count])
    # First calls run slower (allocation, caches): an estimate from them would be low, and
    # a low Offline target ends the test before min_duration.
    predictor(batch)
    warm_until = time.perf_counter() + OFFLINE_WARMUP_S
    while time.perf_counter() < warm_until:
        predictor(batch)
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or done < 2 * batch_size:
        predictor(batch)
        done += batch_size
    return done / elapsed


def _settings(scenario: str, **values: Any):
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.PerformanceOnly
    for key, value in values.items():
        setattr(settings, key, value)
    return settings


@dataclass(frozen=True)
class RunResult:
    valid: bool
    values: dict[str, Any]
    log: Path

    def value(self, key: str) -> float:
        if key not in self.values:
            raise InferenceError(f"{self.log}: key '{key}' missing")
        return float(self.values[key])

    def latency_ns(self, key: str) -> int:
        return int(self.value(key))


def _loadgen_run(sut: BatchSUT | ServerSUT, qsl: SampleLibrary, settings, log_dir: Path,
                 performance_count: int) -> RunResult:
    """One calibration run; a run that max_duration_ms cut short counts as not VALID."""
    from benchpipe.contracts.layout import DETAIL_LOG
    from benchpipe.results.loadgen_parser import parse_detail_log

    start_test(sut, qsl, settings, log_dir, performance_count)
    path = log_dir / DETAIL_LOG
    try:
        detail = parse_detail_log(path)
    except BenchpipeError as exc:
        raise InferenceError(f"{path}: calibration run left no usable log: {exc}") from exc
    errors = [error for error in detail.errors if CUT_SHORT not in error]
    if errors:
        raise InferenceError(f"{path}: LoadGen reported errors in a calibration run: {'; '.join(errors[:3])}")
    cut_short = len(errors) < len(detail.errors)
    valid = detail.get("result_validity") == "VALID" and detail.get("early_stopping_met") is True and not cut_short
    return RunResult(valid, detail.values, path)


class _Runs:
    """Numbered log directories for one calibration's LoadGen runs."""

    def __init__(self, root: Path) -> None:
        self.root, self.count = root, 0

    def next(self, label: str) -> Path:
        self.count += 1
        return self.root / f"{self.count:02d}-{label}"


def latency_run(scenario: str, predictor: Predictor, qsl: SampleLibrary, runs: _Runs,
                performance_count: int, duration_ms: int = LATENCY_RUN_MS) -> int:
    """SingleStream: p90 of one sample; MultiStream: p99 of an 8-sample query (ns)."""
    size = 1 if scenario == "SingleStream" else MULTI_STREAM_SAMPLES
    # LoadGen pre-generates 2 x min_duration / expected latency queries: too high an
    # expectation runs out of queries before min_duration, so start well below the raw call
    # time, which a measurement beside another process's load overstates several times over
    # (a SLURM job's SingleStream calibration ran out so). Extra queries cost only memory.
    expected_ns = max(predictor.batch_seconds[predictor.padded_size(size)] * 1e9 / EXPECTED_LATENCY_DIVISOR, 10_000.0)
    if scenario == "SingleStream":
        settings = _settings(scenario, single_stream_expected_latency_ns=expected_ns,
                             min_duration_ms=duration_ms, min_query_count=LATENCY_RUN_QUERIES)
        key = "result_90.00_percentile_latency_ns"
    else:
        settings = _settings(scenario, multi_stream_expected_latency_ns=expected_ns,
                             multi_stream_samples_per_query=MULTI_STREAM_SAMPLES,
                             min_duration_ms=duration_ms, min_query_count=LATENCY_RUN_QUERIES)
        key = "result_99.00_percentile_per_query_latency_ns"
    result = _loadgen_run(BatchSUT(predictor, qsl, size), qsl, settings, runs.next(scenario), performance_count)
    return result.latency_ns(key)


def server_batching(batch_seconds: dict[int, float], bound_s: float, workers: int = SERVER_WORKERS,
                    max_wait_fraction: float = MAX_WAIT_FRACTION, *, one_pass_at_a_time: bool = False) -> Batching:
    """max_batch: the largest measured size costing at most a quarter of the bound.

    For a predictor whose passes run one at a time (``Predictor.one_pass_at_a_time``), at most
    half of the batcher's budget less max_wait: ServerSUT then takes a batch when the running
    pass ends, so a sample waits for at most that pass and its own, never for a worker to
    start. Batches that large form only once a backlog has built up (a host stall) and clear
    it in fewer passes: on the synthetic predictor (2 ms + 20 us a sample, 15 ms bound) on a
    busy host, p99 at 17,500 queries/s was 17 to 38 ms in four runs with batches of up to 64
    (a quarter of the bound), and 11 to 14 ms in three of four with up to 128 (the fourth met
    a 100 ms stall).

    When even one sample costs more than that but less than the batcher's budget, samples
    go one at a time without waiting: a low rate can still meet the bound, and the search
    finds out which.
    """
    budget_s = bound_s * LATENCY_BUDGET_FRACTION
    max_wait_s = bound_s * max_wait_fraction
    limit_s = (budget_s - max_wait_s) / 2 if one_pass_at_a_time else bound_s * MAX_BATCH_COST_FRACTION
    fitting = [size for size, cost in sorted(batch_seconds.items()) if cost <= limit_s]
    if fitting:
        max_batch = fitting[-1]
    else:
        smallest = min(batch_seconds)
        if batch_seconds[smallest] >= budget_s:
            raise InferenceError(
                f"Server: one batch of {smallest} takes {batch_seconds[smallest] * 1e3:.3g} ms, more than the "
                f"{budget_s * 1e3:.3g} ms the SUT may take of the {bound_s * 1e3:g} ms p99 bound: "
                "the bound cannot be met")
        max_batch, max_wait_s = smallest, 0.0
    return Batching("Server", batch_size=max_batch, max_batch=max_batch, max_wait_s=max_wait_s,
                    workers=workers, latency_budget_s=budget_s)


class ServerOutcome(NamedTuple):
    valid: bool  # VALID, early stopping met, p99 within SEARCH_LATENCY_FRACTION of the bound
    p99_ns: int
    computed_qps: float  # samples the SUT computed (not shed) per second it had them: its capacity when overloaded
    within_bound: bool = False  # VALID and early stopping met: LoadGen's verdict, without the margin


def server_run(predictor: Predictor, qsl: SampleLibrary, batching: Batching, qps: float, bound_ns: int,
               runs: _Runs, performance_count: int, *, duration_ms: int = SEARCH_RUN_MS,
               queries: int = SEARCH_RUN_QUERIES) -> ServerOutcome:
    """One short Server run at ``qps``."""
    planned_ms = max(duration_ms, queries / qps * 1e3)
    settings = _settings("Server", server_target_qps=float(qps), server_target_latency_ns=int(bound_ns),
                         min_duration_ms=duration_ms, min_query_count=queries,
                         max_duration_ms=math.ceil(planned_ms * SEARCH_MAX_DURATION_FACTOR),
                         server_coalesce_queries=SERVER_COALESCE_QUERIES)
    sut = ServerSUT(predictor, qsl, batching.max_batch, batching.max_wait_s, batching.workers,
                    float(batching.latency_budget_s or 0.0), shed_after_s=bound_ns * 1e-9 * SHED_AFTER_BOUNDS)
    started = time.perf_counter()
    result = _loadgen_run(sut, qsl, settings, runs.next(f"Server-{qps:.0f}"), performance_count)
    # Per second from the first sample's arrival to the last batch's end: counted over the
    # whole call, LoadGen's set-up and tear-down (about 60 ms of a 1.5 s run) made an
    # overloaded run's rate 4 % lower than what the SUT computed while it had samples, and
    # the search never tries a rate above an overloaded run's.
    span = sut.computed_span_s or time.perf_counter() - started
    computed = sum(size * count for size, count in sut.size_counts.items()) / span
    p99 = result.latency_ns("result_99.00_percentile_latency_ns")
    return ServerOutcome(result.valid and p99 <= bound_ns * SEARCH_LATENCY_FRACTION, p99, computed, result.valid)


def run_seconds(qps: float, duration_ms: int = SEARCH_RUN_MS) -> float:
    """How long a search run at ``qps`` lasts: min_duration or the queries early stopping needs."""
    return max(duration_ms / 1e3, SEARCH_RUN_QUERIES / qps)


def search_server_qps(
    run: Callable[[float, int], ServerOutcome], start_qps: float, deadline: float, bound_ns: int, what: str,
    *, max_runs: int = SEARCH_MAX_RUNS, duration_ms: int = SEARCH_RUN_MS,
) -> tuple[float, list[tuple[float, bool, int]]]:
    """(rate for the real run, runs tried): bracket the highest VALID rate, bisect, confirm.

    ``run(qps, duration_ms)``. Until a rate is VALID, the next one tried is half the last,
    or less when the SUT computed fewer samples per second than that: it was overloaded,
    and what it computed is its capacity, so no rate above it is VALID either. Once VALID
    and INVALID rates are within SEARCH_PRECISION, the rate backed off by SAFETY_MARGIN is
    confirmed by a run CONFIRM_LENGTH times as long (near capacity a queue takes a while
    to build up, so a short run can pass at a rate a long one fails), backing off further
    if it fails, while the budget lasts.

    A host whose own stalls keep p99 past the margin at every rate (a lower rate does not
    lower them) would leave no rate at all: then the highest rate LoadGen itself judged VALID
    stands in, confirmed by LoadGen's verdict alone, and the real run leans on the workflow's
    retries rather than failing calibration on a bound it meets.
    """
    tried: list[tuple[float, bool, int]] = []
    valid_qps: float | None = None
    invalid_qps: float | None = None
    loose_qps: float | None = None  # the highest rate LoadGen judged VALID, margin or not
    qps = start_qps

    def attempt(rate: float, length_ms: int) -> ServerOutcome | None:
        if tried and time.perf_counter() + run_seconds(rate, length_ms) > deadline:
            return None
        outcome = run(rate, length_ms)
        tried.append((round(rate, 3), outcome.valid, outcome.p99_ns))
        return outcome

    while len(tried) < max_runs and qps >= SEARCH_MIN_QPS:
        outcome = attempt(qps, duration_ms)
        if outcome is None:
            break
        if outcome.within_bound or outcome.valid:
            loose_qps = max(loose_qps or 0.0, qps)
        if outcome.valid:
            valid_qps = max(valid_qps or 0.0, qps)
        else:
            ceiling = min(qps, outcome.computed_qps)
            invalid_qps = ceiling if invalid_qps is None else min(invalid_qps, ceiling)
        if valid_qps is not None and invalid_qps is not None:
            if invalid_qps <= valid_qps * (1 + SEARCH_PRECISION):
                break
            qps = math.sqrt(valid_qps * invalid_qps)
        elif valid_qps is not None:
            qps = valid_qps * 2
        else:
            qps = min(qps / 2, outcome.computed_qps * OVERLOAD_BACKOFF)
    strict = valid_qps is not None
    if not strict:
        if loose_qps is None:
            _no_valid_rate(tried, qps, bound_ns, what, out_of_time=len(tried) < max_runs and qps >= SEARCH_MIN_QPS,
                           duration_ms=duration_ms)
        valid_qps = loose_qps
    target = valid_qps * (1 - SAFETY_MARGIN)
    for _ in range(CONFIRM_ATTEMPTS):
        outcome = attempt(target, duration_ms * CONFIRM_LENGTH)
        if outcome is None or (outcome.valid if strict else outcome.within_bound or outcome.valid):
            break
        target *= 1 - SAFETY_MARGIN
    return target, tried


def _no_valid_rate(tried: list[tuple[float, bool, int]], next_qps: float, bound_ns: int, what: str, *,
                   out_of_time: bool, duration_ms: int) -> None:
    best = min(p for _, _, p in tried)
    rates = ", ".join(f"{q:g}" for q, _, _ in tried)
    if out_of_time:
        verdict = (f"the calibration budget ran out before a lower rate could be tried (a run at {next_qps:g} "
                   f"queries/s takes {run_seconds(next_qps, duration_ms):.2g} s): give calibration more time")
    else:
        verdict = "the bound cannot be met on this system"
    raise InferenceError(
        f"{what}: no Server rate tried ({rates} queries/s) gave a VALID run within the {bound_ns / 1e6:g} ms "
        f"p99 bound; the best p99 seen was {best / 1e6:.2f} ms: {verdict}")


# --- the entry point -----------------------------------------------------------------------


def _factory(model: Path | str | PredictorFactory | Predictor,
             sample_shape: Sequence[int]) -> Callable[..., Predictor]:
    # A ready predictor is callable too: it must be told from a factory by its type.
    if isinstance(model, Predictor):
        return lambda sizes, stop_above_s=None: model
    if isinstance(model, (str, Path)):
        return lambda sizes, stop_above_s=None: CompiledPredictor(Path(model), sample_shape, sizes,
                                                                  stop_above_s=stop_above_s)
    return lambda sizes, stop_above_s=None: model(sizes)


def calibrate(
    scenario: str,
    model: Path | PredictorFactory | Predictor,
    sample_shape: Sequence[int],
    qsl: SampleLibrary,
    *,
    offline_batch_size: int,
    server_latency_bound_ns: int,
    loadgen_model: str,
    performance_sample_count: int,
    budget_s: float = 30.0,
    workers: int = SERVER_WORKERS,
    run_ms: int | None = None,
    search_max_runs: int = SEARCH_MAX_RUNS,
    log_dir: Path | None = None,
    server_max_wait_fraction: float = MAX_WAIT_FRACTION,
) -> Calibration:
    """Measure ``scenario`` for its user.conf; ``model``: a SavedModel directory, a
    ``factory(batch_sizes)`` or a ready predictor (whose sizes then bound the Server batch).

    The QSL is loaded with the real performance sample count, as the test will load it.
    ``budget_s`` bounds the Server search (a run is not started that would end after it);
    ``run_ms`` shortens or lengthens each LoadGen run (default: LATENCY_RUN_MS, SEARCH_RUN_MS);
    ``server_max_wait_fraction``: the Server batcher's max_wait as a fraction of the bound.
    """
    if scenario not in SCENARIOS:
        raise InferenceError(f"scenario '{scenario}' is not one of {', '.join(SCENARIOS)}")
    make = _factory(model, sample_shape)
    deadline = time.perf_counter() + budget_s
    qsl.retain = True
    try:
        with tempfile.TemporaryDirectory(prefix="benchpipe-calibrate-") as tmp:
            runs = _Runs(Path(log_dir) if log_dir is not None else Path(tmp))
            if scenario == "Offline":
                batching = Batching.for_scenario("Offline", offline_batch_size)
                predictor = make([offline_batch_size])
                return Calibration(scenario, batching, offline_qps=measure_offline(predictor, qsl, offline_batch_size))
            if scenario in ("SingleStream", "MultiStream"):
                batching = Batching.for_scenario(scenario)
                predictor = make([batching.batch_size])
                latency = latency_run(scenario, predictor, qsl, runs, performance_sample_count,
                                      run_ms or LATENCY_RUN_MS)
                key = "single_stream_latency_ns" if scenario == "SingleStream" else "multi_stream_latency_ns"
                return Calibration(scenario, batching, **{key: latency})
            search = _Search(deadline, run_ms or SEARCH_RUN_MS, search_max_runs)
            return _calibrate_server(make, qsl, server_latency_bound_ns, loadgen_model, performance_sample_count,
                                     search, workers, runs, server_max_wait_fraction)
    finally:
        qsl.release()


@dataclass(frozen=True)
class _Search:
    deadline: float  # perf_counter time
    run_ms: int
    max_runs: int


def _calibrate_server(make: Callable[..., Predictor], qsl: SampleLibrary, bound_ns: int, loadgen_model: str,
                      performance_count: int, search: _Search, workers: int, runs: _Runs,
                      max_wait_fraction: float) -> Calibration:
    bound_s = bound_ns * 1e-9
    probe = make(powers_of_two_up_to(SERVER_MAX_BATCH_CAP), stop_above_s=bound_s * MAX_BATCH_COST_FRACTION)
    batching = server_batching(probe.batch_seconds, bound_s, workers, max_wait_fraction,
                               one_pass_at_a_time=bool(getattr(probe, "one_pass_at_a_time", False)))
    offline_qps = measure_offline(probe, qsl, batching.max_batch)

    def run(qps: float, duration_ms: int) -> ServerOutcome:
        return server_run(probe, qsl, batching, qps, bound_ns, runs, performance_count, duration_ms=duration_ms)

    target, tried = search_server_qps(run, offline_qps * SEARCH_START_FRACTION, search.deadline, bound_ns,
                                      f"{loadgen_model} Server", max_runs=search.max_runs, duration_ms=search.run_ms)
    return Calibration("Server", batching, offline_qps=offline_qps, server_target_qps=target,
                       server_latency_bound_ns=int(bound_ns), search=tried)
