"""LLM calibration through LoadGen: Offline rates, SingleStream latency, the Server search on TTFT/TPOT."""

from __future__ import annotations

import pytest
from llm_decoders import EOS, CountingDecoder, prompt_library

from benchpipe.contracts.errors import InferenceError
from benchpipe.infer.decoding import GenerationLimits
from benchpipe.infer.llm_calibrate import LLMCalibration, TokenLimits, calibrate_llm

LIMITS = GenerationLimits(32, (EOS,))


def _decoder(step_s: float = 0.002):
    return lambda: CountingDecoder(slots=8, step_s=step_s)


@pytest.mark.timing
def test_offline_and_single_stream_measure_through_loadgen(tmp_path):
    prompts = prompt_library(64)
    offline = calibrate_llm("Offline", _decoder(), prompts, LIMITS, performance_count=64, log_dir=tmp_path / "o")
    # CountingDecoder outputs 6 tokens a sample on average here, at most 9; a step lasts >= 2 ms.
    assert 0 < offline.offline_qps < 8 / 0.002
    assert offline.offline_tokens_per_s > offline.offline_qps * 3
    single = calibrate_llm("SingleStream", _decoder(), prompts, LIMITS, performance_count=64, log_dir=tmp_path / "s")
    # One generation: at least its decode steps (2 to 8 of them at 2 ms).
    assert single.single_stream_latency_ns >= 2 * 2e6
    assert (tmp_path / "s/02-SingleStream/mlperf_log_detail.txt").is_file()


@pytest.mark.timing
@pytest.mark.llm  # a Server search of several LoadGen runs: the full tier's
def test_server_search_judges_runs_by_ttft_and_tpot(tmp_path):
    prompts = prompt_library(64)
    limits = TokenLimits(ttft_ns=int(200e6), tpot_ns=int(20e6))
    result = calibrate_llm("Server", _decoder(), prompts, LIMITS, performance_count=64, token_limits=limits,
                           budget_s=40, log_dir=tmp_path)
    assert result.server_target_qps > 0
    valid = [run for run in result.search if run["valid"]]
    assert valid, result.search
    for run in valid:
        assert run["ttft_p99_ns"] <= limits.ttft_ns * 0.7 and run["tpot_p99_ns"] <= limits.tpot_ns * 0.7
    assert result.server_target_qps < max(run["qps"] for run in valid)  # backed off by the margin
    assert LLMCalibration.from_dict(result.to_dict()) == result


@pytest.mark.timing
@pytest.mark.llm
def test_a_tpot_limit_below_the_step_time_is_never_met(tmp_path):
    # Every token takes a 2 ms step: a 1 ms TPOT limit fails at any rate.
    with pytest.raises(InferenceError, match="no Server rate tried"):
        calibrate_llm("Interactive", _decoder(), prompt_library(64), LIMITS, performance_count=64,
                      token_limits=TokenLimits(ttft_ns=int(200e6), tpot_ns=int(1e6)), budget_s=15,
                      search_max_runs=3, log_dir=tmp_path)


def test_server_without_limits_and_unknown_scenarios_are_refused():
    with pytest.raises(InferenceError, match="needs the scenario's TTFT and TPOT limits"):
        calibrate_llm("Server", _decoder(0.0), prompt_library(16), LIMITS, performance_count=16)
    with pytest.raises(InferenceError, match="scenario 'MultiStream'"):
        calibrate_llm("MultiStream", _decoder(0.0), prompt_library(16), LIMITS, performance_count=16)
