"""The LLM SUT through LoadGen: token latencies, first tokens, token counts, scheduling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from llm_decoders import EOS, CountingDecoder, prompt_library

from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.layout import ACCURACY_LOG, DETAIL_LOG
from benchpipe.infer.decoding import GenerationLimits
from benchpipe.infer.llm_sut import LLMSUT, PromptLibrary
from benchpipe.infer.sut import start_test
from benchpipe.results.loadgen_parser import parse_detail_log

TEST06 = Path(__file__).resolve().parents[2] / "shared/third_party/mlcommons-inference/compliance/TEST06"


def _settings(scenario: str, accuracy: bool, **values):
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    settings.use_token_latencies = True
    for key, value in values.items():
        setattr(settings, key, value)
    return settings


def _accuracy_entries(log_dir: Path) -> list[dict]:
    return json.loads((log_dir / ACCURACY_LOG).read_text())


@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream"])
def test_every_sample_gets_its_tokens_and_their_count(tmp_path, scenario):
    prompts = prompt_library()
    sut = LLMSUT(CountingDecoder(slots=4), prompts, GenerationLimits(32, (EOS,)))
    settings = _settings(scenario, accuracy=True, server_target_qps=200.0, offline_expected_qps=1000.0)
    start_test(sut, prompts, settings, tmp_path, prompts.total)
    entries = _accuracy_entries(tmp_path)
    assert sorted(e["qsl_idx"] for e in entries) == list(range(prompts.total))
    for entry in entries:
        tokens = np.frombuffer(bytes.fromhex(entry["data"]), dtype="<i4").tolist()
        assert tokens == CountingDecoder.expected(prompts.prompt(entry["qsl_idx"]))
        assert entry["token_count"] == len(tokens)
        if scenario != "Offline":  # LoadGen logs the first token where it times it
            assert np.frombuffer(bytes.fromhex(entry["token_data"]), dtype="<i4").tolist() == tokens[:1]
    assert sut.stats.completed == prompts.total
    assert sut.stats.tokens == sum(len(CountingDecoder.expected(prompts.prompt(i))) for i in range(prompts.total))


def test_the_official_test06_verification_passes_a_server_accuracy_log(tmp_path):
    prompts = prompt_library()
    sut = LLMSUT(CountingDecoder(slots=4), prompts, GenerationLimits(32, (EOS,)))
    start_test(sut, prompts, _settings("Server", accuracy=True, server_target_qps=200.0), tmp_path / "run",
               prompts.total)
    done = subprocess.run([sys.executable, str(TEST06 / "run_verification.py"), "-c", str(tmp_path / "run"),
                           "-o", str(tmp_path / "out"), "-e", str(EOS), "-s", "Server"],
                          capture_output=True, text=True, check=True)
    verdict = (tmp_path / "out/TEST06/verify_accuracy.txt").read_text()
    assert "First token check pass: True" in verdict, done.stdout
    assert "TEST06 verification complete" in verdict


def test_output_limit_stops_a_sequence_without_eos(tmp_path):
    prompts = PromptLibrary([np.array([6, 1, 2])])  # CountingDecoder: 9 tokens, EOS last
    sut = LLMSUT(CountingDecoder(slots=2), prompts, GenerationLimits(4, (EOS,)))
    start_test(sut, prompts, _settings("SingleStream", accuracy=True), tmp_path, 1)
    [entry] = _accuracy_entries(tmp_path)
    assert np.frombuffer(bytes.fromhex(entry["data"]), dtype="<i4").tolist() == [106, 107, 108, 109]


@pytest.mark.timing
def test_server_performance_logs_ttft_tpot_and_tokens_per_second(tmp_path):
    prompts = prompt_library()
    sut = LLMSUT(CountingDecoder(slots=8, step_s=0.002), prompts, GenerationLimits(32, (EOS,)))
    settings = _settings("Server", accuracy=False, server_target_qps=50.0, min_duration_ms=1000, min_query_count=60,
                         ttft_latency=int(2e9), tpot_latency=int(100e6), server_target_latency_ns=0)
    start_test(sut, prompts, settings, tmp_path, prompts.total)
    detail = parse_detail_log(tmp_path / DETAIL_LOG)
    assert detail.get("requested_use_token_latencies") is True
    ttft = detail.get("result_first_token_99.00_percentile_latency_ns")
    tpot = detail.get("result_time_per_output_token_99.00_percentile_ns")
    # A token every 2 ms step: TPOT at least that; TTFT is a prefill, far below a step's wait chain.
    assert tpot >= 2e6 and ttft > 0
    assert detail.get("result_completed_tokens_per_second") > 0
    assert detail.errors == []


def test_continuous_batching_admits_into_free_slots_static_waits_for_the_batch(tmp_path):
    # Lengths 3..9 tokens: under static batching a batch lasts as long as its longest member.
    for policy in ("continuous", "static"):
        prompts = prompt_library()
        decoder = CountingDecoder(slots=4)
        sut = LLMSUT(decoder, prompts, GenerationLimits(32, (EOS,)), policy=policy)
        start_test(sut, prompts, _settings("Offline", accuracy=True), tmp_path / policy, prompts.total)
        if policy == "static":
            assert set(decoder.busy_at_prefill) == {0}, "static batching admitted into a running batch"
        else:
            assert max(decoder.busy_at_prefill) > 0, "continuous batching never joined a running batch"
        if policy == "continuous":
            continuous_steps, continuous_mean = sut.stats.steps, sut.stats.mean_batch
        else:
            static_steps, static_mean = sut.stats.steps, sut.stats.mean_batch
    assert continuous_mean > static_mean
    assert continuous_steps < static_steps


def test_a_failing_decoder_answers_its_samples_and_raises_after_the_test(tmp_path):
    prompts = prompt_library(16)
    sut = LLMSUT(CountingDecoder(slots=4, fail_on_prompt=5), prompts, GenerationLimits(32, (EOS,)))
    with pytest.raises(InferenceError, match="prompt 5 breaks the decoder"):
        start_test(sut, prompts, _settings("Offline", accuracy=True), tmp_path, prompts.total)
    # LoadGen finished: every sample was answered, the failed ones empty.
    assert len(_accuracy_entries(tmp_path)) == prompts.total


def test_bad_settings_are_refused_with_the_reason():
    with pytest.raises(InferenceError, match="policy 'greedy'"):
        LLMSUT(CountingDecoder(slots=2), prompt_library(2), GenerationLimits(4), policy="greedy")
    with pytest.raises(InferenceError, match="max_output_tokens is 1"):
        GenerationLimits(1)
    with pytest.raises(InferenceError, match="prompt 1 is not"):
        PromptLibrary([np.array([1]), np.array([], dtype=np.int32)], "cnn_eval.json")
