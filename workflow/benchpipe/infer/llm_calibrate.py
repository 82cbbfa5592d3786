"""Short LoadGen measurements of an LLM SUT, before a scenario's real test, for its user.conf.

* Offline: samples/s and tokens/s of one Offline query through ``LLMSUT``.
* SingleStream: p90 latency of one whole generation.
* Server and Interactive: the search of ``benchpipe.infer.calibrate`` for the highest
  target_qps whose short run LoadGen judges VALID with early stopping met, here with the
  time to first token (TTFT) and the time per output token (TPOT) p99s both within
  ``SEARCH_LATENCY_FRACTION`` of the round's limits for the scenario, the limits the
  official checker applies (``LLM_LATENCY_LIMITS``).

Every run sets TestSettings fields directly (never FromConfig, which may run once per
process) with token latencies on, as mlperf.conf sets them for every LLM.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import InferenceError
from benchpipe.infer.calibrate import (
    SEARCH_LATENCY_FRACTION,
    SEARCH_MAX_DURATION_FACTOR,
    SEARCH_MAX_RUNS,
    SERVER_COALESCE_QUERIES,
    ServerOutcome,
    _loadgen_run,
    _Runs,
    search_server_qps,
)
from benchpipe.infer.decoding import Decoder, GenerationLimits
from benchpipe.infer.llm_sut import LLMSUT, PromptLibrary

LLM_SCENARIOS = ("Offline", "SingleStream", "Server", "Interactive")
# Interactive is LoadGen's Server scenario under the tighter limits of the model's
# "-interactive" key in mlperf.conf.
LOADGEN_SCENARIO = {"Offline": "Offline", "SingleStream": "SingleStream", "Server": "Server",
                    "Interactive": "Server"}
# An Offline calibration query: enough samples to fill every slot several times over.
OFFLINE_QUERY_SLOTS = 4
SINGLE_STREAM_QUERIES = 16
# Search runs. LoadGen's early stopping for TPOT at p99 needs 459 queries with none over the
# limit; 600 leave room for one or two over it.
SEARCH_RUN_MS = 1500
SEARCH_RUN_QUERIES = 600
# A query still waiting after this many TTFT limits is answered empty at once (LLMSUT.shed_after_s).
SHED_AFTER_TTFT = 2.0
SEARCH_START_FRACTION = 0.8  # of the Offline rate: continuous batching keeps most of it


@dataclass(frozen=True)
class TokenLimits:
    """The p99 limits of one scenario (ns)."""

    ttft_ns: int
    tpot_ns: int


@dataclass
class LLMCalibration:
    """What one LLM scenario's calibration measured and chose."""

    scenario: str
    slots: int
    policy: str
    offline_qps: float | None = None
    offline_tokens_per_s: float | None = None
    single_stream_latency_ns: int | None = None
    server_target_qps: float | None = None
    limits: TokenLimits | None = None
    search: list[dict[str, Any]] = field(default_factory=list)  # each run: qps, VALID, TTFT and TPOT p99s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["limits"] = asdict(self.limits) if self.limits else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMCalibration:
        try:
            limits = TokenLimits(**data["limits"]) if data.get("limits") else None
            return cls(**{**data, "limits": limits})
        except TypeError as exc:
            raise InferenceError(f"an LLM calibration record does not fit: {exc}") from exc


def llm_settings(scenario: str, **values: Any):
    """TestSettings for a performance run of ``scenario`` (Interactive: Server), token latencies on."""
    import mlperf_loadgen as lg

    if scenario not in LLM_SCENARIOS:
        raise InferenceError(f"scenario '{scenario}' is not one of {', '.join(LLM_SCENARIOS)}")
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, LOADGEN_SCENARIO[scenario])
    settings.mode = lg.TestMode.PerformanceOnly
    settings.use_token_latencies = True
    for key, value in values.items():
        setattr(settings, key, value)
    return settings


def measure_offline(decoder: Decoder, prompts: PromptLibrary, limits: GenerationLimits, runs: _Runs,
                    performance_count: int, policy: str = "continuous", samples: int | None = None
                    ) -> tuple[float, float]:
    """(samples/s, tokens/s) of one Offline query of ``samples`` (OFFLINE_QUERY_SLOTS x slots) samples."""
    samples = samples or decoder.slots * OFFLINE_QUERY_SLOTS
    # A tiny expected rate: LoadGen's one query then holds min_query_count samples.
    settings = llm_settings("Offline", offline_expected_qps=1.0, min_query_count=samples, min_duration_ms=0)
    run = _loadgen_run(LLMSUT(decoder, prompts, limits, policy=policy), prompts, settings, runs.next("Offline"),
                  performance_count)
    return run.value("result_samples_per_second"), run.value("result_tokens_per_second")


def measure_single_stream(decoder: Decoder, prompts: PromptLibrary, limits: GenerationLimits, runs: _Runs,
                          performance_count: int, expected_ns: float) -> int:
    """p90 latency (ns) of one generation, over SINGLE_STREAM_QUERIES queries."""
    # LoadGen generates queries from the expected latency: too high runs out before the minimum.
    settings = llm_settings("SingleStream", single_stream_expected_latency_ns=max(int(expected_ns / 10), 10_000),
                            min_query_count=SINGLE_STREAM_QUERIES, min_duration_ms=0)
    run = _loadgen_run(LLMSUT(decoder, prompts, limits), prompts, settings, runs.next("SingleStream"),
                       performance_count)
    return int(run.value("result_90.00_percentile_latency_ns"))


def server_run(decoder: Decoder, prompts: PromptLibrary, limits: GenerationLimits, scenario: str, qps: float,
               token_limits: TokenLimits, runs: _Runs, performance_count: int, *, policy: str = "continuous",
               duration_ms: int = SEARCH_RUN_MS, queries: int = SEARCH_RUN_QUERIES,
               record: list[dict[str, Any]] | None = None) -> ServerOutcome:
    """One short Server (or Interactive) run at ``qps``, judged by LoadGen and by the TTFT/TPOT margins."""
    planned_ms = max(duration_ms, queries / qps * 1e3)
    settings = llm_settings(
        scenario, server_target_qps=float(qps), server_target_latency_ns=0, ttft_latency=token_limits.ttft_ns,
        tpot_latency=token_limits.tpot_ns, min_duration_ms=duration_ms, min_query_count=queries,
        max_duration_ms=math.ceil(planned_ms * SEARCH_MAX_DURATION_FACTOR),
        server_coalesce_queries=SERVER_COALESCE_QUERIES)
    sut = LLMSUT(decoder, prompts, limits, policy=policy, shed_after_s=token_limits.ttft_ns * 1e-9 * SHED_AFTER_TTFT)
    started = time.perf_counter()
    run = _loadgen_run(sut, prompts, settings, runs.next(f"{scenario}-{qps:.1f}"), performance_count)
    computed = sut.stats.completed / (time.perf_counter() - started)
    ttft = int(run.value("result_first_token_99.00_percentile_latency_ns"))
    tpot = int(run.value("result_time_per_output_token_99.00_percentile_ns"))
    within = (ttft <= token_limits.ttft_ns * SEARCH_LATENCY_FRACTION
              and tpot <= token_limits.tpot_ns * SEARCH_LATENCY_FRACTION)
    if record is not None:
        record.append({"qps": round(qps, 3), "valid": run.valid and within, "loadgen_valid": run.valid,
                       "ttft_p99_ns": ttft, "tpot_p99_ns": tpot, "shed": sut.stats.shed,
                       "tokens_per_s": float(run.values.get("result_completed_tokens_per_second", 0.0))})
    # The search reports a p99 in its messages: the TTFT's, against the TTFT limit it is given.
    return ServerOutcome(run.valid and within, ttft, computed, run.valid)


def calibrate_llm(
    scenario: str,
    make_decoder: Callable[[], Decoder],
    prompts: PromptLibrary,
    limits: GenerationLimits,
    *,
    performance_count: int,
    token_limits: TokenLimits | None = None,
    what: str = "LLM",
    policy: str = "continuous",
    budget_s: float = 60.0,
    run_ms: int = SEARCH_RUN_MS,
    search_max_runs: int = SEARCH_MAX_RUNS,
    log_dir: Path | None = None,
    search_record: list[dict[str, Any]] | None = None,
) -> LLMCalibration:
    """Measure ``scenario`` for its user.conf. Server and Interactive need ``token_limits``;
    their search's runs go into ``search_record`` too, kept should the search find no rate."""
    if scenario not in LLM_SCENARIOS:
        raise InferenceError(f"scenario '{scenario}' is not one of {', '.join(LLM_SCENARIOS)}")
    deadline = time.perf_counter() + budget_s
    decoder = make_decoder()
    with tempfile.TemporaryDirectory(prefix="benchpipe-llm-calibrate-") as tmp:
        runs = _Runs(Path(log_dir) if log_dir is not None else Path(tmp))
        search = search_record if search_record is not None else []
        result = LLMCalibration(scenario, decoder.slots, policy, search=search)
        result.offline_qps, result.offline_tokens_per_s = measure_offline(decoder, prompts, limits, runs,
                                                                          performance_count, policy)
        if scenario == "SingleStream":
            result.single_stream_latency_ns = measure_single_stream(
                decoder, prompts, limits, runs, performance_count, expected_ns=decoder.slots / result.offline_qps * 1e9)
        elif scenario in ("Server", "Interactive"):
            if token_limits is None:
                raise InferenceError(f"{what} {scenario}: calibration needs the scenario's TTFT and TPOT limits")
            result.limits = token_limits

            def run(qps: float, duration_ms: int) -> ServerOutcome:
                return server_run(decoder, prompts, limits, scenario, qps, token_limits, runs, performance_count,
                                  policy=policy, duration_ms=duration_ms, record=result.search)

            result.server_target_qps, _ = search_server_qps(
                run, result.offline_qps * SEARCH_START_FRACTION, deadline, token_limits.ttft_ns,
                f"{what} {scenario} (TTFT limit; TPOT {token_limits.tpot_ns / 1e6:g} ms)",
                max_runs=search_max_runs, duration_ms=run_ms)
        return result
