"""The synthetic cost models: what they cost, what they answer, and calibration and the SUTs on them.

Sleeping never ends early, so every lower bound on a duration is asserted tightly; a loaded
host wakes a sleeping thread late, so upper bounds are loose. Tests that run LoadGen are
marked ``timing`` (the serial pass, as in test_sut.py).
"""

from __future__ import annotations

import json
import threading
import time

import mlperf_loadgen as lg
import numpy as np
import pytest

from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.layout import DETAIL_LOG
from benchpipe.infer.calibrate import SEARCH_LATENCY_FRACTION, _Runs, calibrate, server_batching, server_run
from benchpipe.infer.decoding import TOKEN_DTYPE, GenerationLimits
from benchpipe.infer.samples import ArraySamples, SampleLibrary
from benchpipe.infer.sut import RESPONSE_DTYPE, Batching, BatchSUT, Predictor, ServerSUT, start_test
from benchpipe.infer.synthetic import (
    CNN_DAILYMAIL_OUTPUT_TOKENS,
    CNN_DAILYMAIL_PROMPT_TOKENS,
    LLAMA3_EOS,
    ClippedLognormal,
    SyntheticDecoder,
    SyntheticPredictor,
    best_server_rate,
    cnn_dailymail_output_length,
    cnn_dailymail_prompts,
    simulate_server_p99,
)
from benchpipe.results.loadgen_parser import parse_detail_log

SHAPE = (4, 4, 1)
TOTAL = 256
SLACK_S = 0.05  # what a busy shared host may add to one sleep, at worst


def make_qsl() -> SampleLibrary:
    features = np.random.default_rng(7).random((TOTAL, *SHAPE), dtype=np.float32)
    return SampleLibrary(ArraySamples(features, np.zeros(TOTAL, np.int32), "random test samples"))


def timed(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


# --- the predictor ------------------------------------------------------------------------------


def test_a_pass_costs_its_fixed_cost_plus_one_cost_per_sample():
    predictor = SyntheticPredictor([1, 8, 64, 256], fixed_s=0.002, per_sample_s=50e-6)
    batch = np.random.default_rng(0).random((256, *SHAPE), dtype=np.float32)
    assert predictor.batch_seconds == {n: pytest.approx(0.002 + 50e-6 * n) for n in (1, 8, 64, 256)}
    fastest = {}
    for n in (1, 8, 64, 256):
        took = [timed(predictor, batch[:n]) for _ in range(5)]
        assert min(took) >= 0.002 + 50e-6 * n  # never less than it says
        fastest[n] = min(took)
    assert fastest[1] < predictor.cost(1) + SLACK_S
    # The slope is the cost per sample: 255 samples more cost 12.75 ms more.
    assert fastest[256] - fastest[1] == pytest.approx(255 * 50e-6, abs=0.005)
    assert predictor.passes == {1: 5, 8: 5, 64: 5, 256: 5}


def test_a_batch_above_the_largest_size_runs_in_passes_of_that_size():
    predictor = SyntheticPredictor([1, 4], fixed_s=0.001, per_sample_s=0.0)
    batch = np.random.default_rng(1).random((10, *SHAPE), dtype=np.float32)
    took = timed(predictor, batch)
    assert predictor.passes == {4: 2, 2: 1} and took >= 3 * 0.001
    assert len(predictor(batch[:0])) == 0


def test_passes_run_one_at_a_time_like_one_device():
    predictor = SyntheticPredictor([8], fixed_s=0.02, per_sample_s=0.0)
    batch = np.zeros((8, *SHAPE), np.float32)
    threads = [threading.Thread(target=predictor, args=(batch,)) for _ in range(3)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.perf_counter() - started >= 3 * 0.02
    assert predictor.contended >= 1 and predictor.passes == {8: 3}


def test_answers_are_classes_of_each_sample_alone():
    predictor = SyntheticPredictor([1, 16, 64], sample_shape=SHAPE, classes=1000, fixed_s=0.0, per_sample_s=0.0)
    rows = np.random.default_rng(2).random((64, *SHAPE), dtype=np.float32)
    answers = predictor(rows)
    assert answers.dtype == RESPONSE_DTYPE and answers.shape == (64,)
    assert len(set(answers.tolist())) > 50 and 0 <= answers.min() and answers.max() < 1000
    # A sample's answer depends on it alone: not on its batch, its position or the other rows.
    order = np.random.default_rng(3).permutation(64)
    assert np.array_equal(predictor(rows[order]), answers[order])
    assert np.array_equal(predictor(rows[5:6]), answers[5:6])
    assert np.array_equal(SyntheticPredictor(sample_shape=SHAPE, fixed_s=0.0)(rows.copy()), answers)
    with pytest.raises(InferenceError, match=r"batch of shape \(2, 3\), it takes \(4, 4, 1\)"):
        predictor(np.zeros((2, 3), np.float32))
    with pytest.raises(InferenceError, match="positive integers"):
        SyntheticPredictor([0, 4])


def test_a_synthetic_predictor_is_a_predictor_calibrate_uses_as_it_is():
    predictor = SyntheticPredictor([64], fixed_s=0.002, per_sample_s=20e-6)
    assert isinstance(predictor, Predictor) and predictor.one_pass_at_a_time
    qsl = make_qsl()
    offline = calibrate("Offline", predictor, SHAPE, qsl, offline_batch_size=64, server_latency_bound_ns=15_000_000,
                        loadgen_model="resnet50", performance_sample_count=TOTAL)
    capacity = 64 / predictor.cost(64)
    # No faster than the device: every pass sleeps its cost. No slower than a loaded host allows.
    assert 0.25 * capacity < offline.offline_qps <= capacity
    assert predictor.passes[64] > 100


# --- the predictor through LoadGen --------------------------------------------------------------


@pytest.mark.timing
def test_single_stream_through_loadgen_costs_at_least_one_pass():
    predictor = SyntheticPredictor([1], fixed_s=0.002, per_sample_s=20e-6)
    single = calibrate("SingleStream", predictor, SHAPE, make_qsl(), offline_batch_size=64,
                       server_latency_bound_ns=15_000_000, loadgen_model="resnet50", performance_sample_count=TOTAL,
                       run_ms=300)
    assert predictor.cost(1) * 1e9 <= single.single_stream_latency_ns < (predictor.cost(1) + SLACK_S) * 1e9


@pytest.mark.timing
def test_a_short_server_calibration_finds_a_valid_rate_below_the_device_capacity(tmp_path):
    predictor = SyntheticPredictor(fixed_s=0.002, per_sample_s=20e-6)
    # A bound well above a shared host's stalls, as in test_sut.py: this tests the search on
    # the synthetic predictor, not the host.
    bound_ns = 60_000_000
    calibration = calibrate("Server", predictor, SHAPE, make_qsl(), offline_batch_size=64,
                            server_latency_bound_ns=bound_ns, loadgen_model="resnet50", performance_sample_count=TOTAL,
                            budget_s=10, run_ms=300, search_max_runs=4, log_dir=tmp_path)
    # Passes one at a time: the largest size costing at most half of the batcher's budget less
    # max_wait, (48 - 3) / 2 ms: all of them, up to 256 (7.12 ms).
    assert calibration.batching.max_batch == 256
    valid = [(qps, p99) for qps, ok, p99 in calibration.search if ok]
    assert valid, calibration.search
    assert all(p99 <= bound_ns * SEARCH_LATENCY_FRACTION for _, p99 in valid)
    assert max(qps for qps, _ in valid) <= 256 / predictor.cost(256)


def test_one_pass_at_a_time_lets_a_server_batch_cost_up_to_half_the_budget():
    costs = SyntheticPredictor(fixed_s=0.002, per_sample_s=20e-6).batch_seconds
    assert server_batching(costs, 0.015).max_batch == 64  # a quarter of the bound: 3.75 ms
    serial = server_batching(costs, 0.015, one_pass_at_a_time=True)
    assert serial.max_batch == 128 and serial.max_wait_s == pytest.approx(0.00075)
    assert serial.latency_budget_s == pytest.approx(0.012)


def server_settings(qps: float, duration_ms: int = 400):
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = qps
    settings.server_target_latency_ns = 15_000_000
    settings.min_duration_ms = duration_ms
    settings.min_query_count = 1001
    settings.server_coalesce_queries = True
    return settings


class OverlappingPredictor(SyntheticPredictor):
    """The same device, but the batcher is not told that its passes cannot overlap."""

    one_pass_at_a_time = False


@pytest.mark.timing
def test_the_server_batcher_takes_a_batch_when_the_device_is_free(tmp_path):
    """Two workers on one device: each batch is formed once the running pass ends, so no pass
    waits for another and a batch holds what arrived during the last pass. A batcher that does
    not know leaves a batch taken mid-pass waiting for the device."""
    qsl = make_qsl()
    found = {}
    for kind in (SyntheticPredictor, OverlappingPredictor):
        predictor = kind(fixed_s=0.002, per_sample_s=20e-6)
        sut = ServerSUT(predictor, qsl, max_batch=64, max_wait_s=0.00075, workers=2, latency_budget_s=0.012)
        start_test(sut, qsl, server_settings(8000), tmp_path / kind.__name__, TOTAL)
        passes = sum(predictor.passes.values())
        values = parse_detail_log(tmp_path / kind.__name__ / DETAIL_LOG).values
        # Every sample computed, in as many passes as the batcher dispatched batches.
        assert sum(n * c for n, c in sut.size_counts.items()) == values["result_query_count"] >= 1001
        assert passes == sum(sut.size_counts.values())
        found[kind] = predictor.contended / passes
    # Only a batch the latency budget sends early may still meet a running pass. (Whether the
    # run is VALID is the host's to decide: a stall of 100 ms on a shared host sinks it.)
    assert found[SyntheticPredictor] < 0.1 < found[OverlappingPredictor], found


@pytest.mark.timing
def test_an_overloaded_server_run_measures_the_device_capacity(tmp_path):
    """What an overloaded search run computed, per second it had samples, is what the device
    can do: the search takes no rate above it."""
    predictor = SyntheticPredictor(fixed_s=0.002, per_sample_s=20e-6)
    batching = Batching("Server", batch_size=64, max_batch=64, max_wait_s=0.00075, workers=2,
                        latency_budget_s=0.012)
    capacity = 64 / predictor.cost(64)
    outcome = server_run(predictor, make_qsl(), batching, 2 * capacity, 15_000_000, _Runs(tmp_path), TOTAL,
                         duration_ms=400)
    assert not outcome.valid
    assert 0.4 * capacity < outcome.computed_qps <= capacity


@pytest.mark.timing
def test_offline_through_batch_sut_answers_every_sample_with_its_class(tmp_path):
    predictor = SyntheticPredictor([64], fixed_s=0.001, per_sample_s=10e-6)
    qsl = make_qsl()
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Offline
    settings.mode = lg.TestMode.PerformanceOnly
    settings.offline_expected_qps = 64 / predictor.cost(64)
    settings.min_duration_ms = 200
    settings.accuracy_log_probability = 1.0
    start_test(BatchSUT(predictor, qsl, 64), qsl, settings, tmp_path, TOTAL)
    values = parse_detail_log(tmp_path / DETAIL_LOG).values
    assert values["result_validity"] == "VALID"
    logged = json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())
    expected = predictor(qsl.source.read(np.arange(TOTAL)))
    assert len(logged) == values["result_query_count"] * values["generated_samples_per_query"]
    assert all(int(np.frombuffer(bytes.fromhex(e["data"]), RESPONSE_DTYPE)[0]) == expected[e["qsl_idx"]]
               for e in logged)


# --- the Server reference ---------------------------------------------------------------------


def test_the_simulated_server_rate_stays_under_the_device_capacity_and_grows_with_the_bound():
    capacity = 64 / (0.002 + 64 * 20e-6)
    at_bound = best_server_rate(0.002, 20e-6, 64, 0.015)
    at_margin = best_server_rate(0.002, 20e-6, 64, 0.015 * SEARCH_LATENCY_FRACTION)
    tight = best_server_rate(0.002, 20e-6, 64, 0.005)
    assert tight < at_margin <= at_bound < capacity
    assert at_margin > 0.9 * capacity  # the 15 ms bound leaves a 2 ms device almost all its capacity
    assert best_server_rate(0.002, 20e-6, 64, 0.001) == 0.0  # one sample alone takes longer
    # Alone on the device, a sample takes one pass.
    assert simulate_server_p99(1.0, 0.002, 20e-6, 64, queries=200) == pytest.approx(0.002 + 20e-6)


# --- lengths like CNN/DailyMail ---------------------------------------------------------------


def test_lengths_are_clipped_lognormals_with_the_stated_means():
    rng = np.random.default_rng(11)
    for model, mean in ((CNN_DAILYMAIL_PROMPT_TOKENS, 800), (CNN_DAILYMAIL_OUTPUT_TOKENS, 130)):
        drawn = model.draw(rng, 50_000)
        assert drawn.min() >= model.low and drawn.max() <= model.high and drawn.dtype == np.int64
        assert drawn.mean() == pytest.approx(model.mean(), rel=0.01)
        assert model.mean() == pytest.approx(mean, rel=0.03)
    clipped = ClippedLognormal(median=100.0, sigma=1.0, low=50, high=150)
    drawn = clipped.draw(rng, 50_000)
    assert (drawn == 50).mean() > 0.2 and (drawn == 150).mean() > 0.2  # a lot lands on either end
    assert drawn.mean() == pytest.approx(clipped.mean(), rel=0.01)


def test_prompts_and_their_output_lengths_are_seeded():
    prompts = cnn_dailymail_prompts(200, seed=4)
    assert all(p.dtype == TOKEN_DTYPE and 0 <= p.min() and p.max() < 128_000 for p in prompts)
    assert [len(p) for p in prompts] == [len(p) for p in cnn_dailymail_prompts(200, seed=4)]
    assert [len(p) for p in prompts] != [len(p) for p in cnn_dailymail_prompts(200, seed=5)]
    lengths = [cnn_dailymail_output_length(p) for p in prompts]
    assert lengths == [cnn_dailymail_output_length(p.copy()) for p in prompts]
    assert np.mean(lengths) == pytest.approx(130, rel=0.1) and len(set(lengths)) > 50


# --- the decoder ------------------------------------------------------------------------------


def generate(decoder: SyntheticDecoder, prompts: list[np.ndarray], limits: GenerationLimits) -> list[list[int]]:
    """Greedy generation of every prompt at once, a slot each, stopping as ``limits`` say."""
    slots = list(range(len(prompts)))
    outputs = [[int(token)] for token in decoder.prefill(slots, prompts)]
    live = [s for s in slots if not limits.finished(outputs[s][-1], 1)]
    while live:
        following = decoder.step(live, np.asarray([outputs[s][-1] for s in live], TOKEN_DTYPE))
        assert following.dtype == TOKEN_DTYPE and following.shape == (len(live),)
        for slot, token in zip(live, following):
            outputs[slot].append(int(token))
        live = [s for s in live if not limits.finished(outputs[s][-1], len(outputs[s]))]
    return outputs


def free_decoder(slots: int, **costs) -> SyntheticDecoder:
    no_cost = dict(prefill_fixed_s=0.0, prefill_per_token_s=0.0, step_fixed_s=0.0, step_per_slot_s=0.0)
    return SyntheticDecoder(slots, **{**no_cost, **costs})


def test_each_sequence_ends_with_eos_after_the_length_its_prompt_gives():
    prompts = cnn_dailymail_prompts(16, seed=1)
    decoder = free_decoder(16)
    limits = GenerationLimits(max_output_tokens=2000, eos_token_ids=(LLAMA3_EOS,))
    outputs = generate(decoder, prompts, limits)
    for prompt, output in zip(prompts, outputs):
        assert len(output) == cnn_dailymail_output_length(prompt) == decoder.expected_tokens(prompt, 2000)
        assert output[-1] == LLAMA3_EOS and all(0 <= t < 128_000 for t in output[:-1])
    assert outputs == generate(free_decoder(16), prompts, limits)  # the same tokens every time
    assert decoder.prefills == 1 and decoder.steps == max(len(o) for o in outputs) - 1


def test_the_limits_cut_a_sequence_short_or_make_it_run_past_its_eos():
    prompts = [np.arange(n, dtype=TOKEN_DTYPE) for n in (5, 6, 7)]
    table = {5: 3, 6: 10, 7: 1}
    decoder = free_decoder(4, output_length=lambda prompt: table[len(prompt)], eos_token_id=100, first_special=100)
    outputs = generate(decoder, prompts, GenerationLimits(max_output_tokens=6, eos_token_ids=(100,),
                                                          min_output_tokens=2))
    assert [len(o) for o in outputs] == [3, 6, 2] == [decoder.expected_tokens(p, 6, 2) for p in prompts]
    assert outputs[0][-1] == 100 and outputs[2] == [100, 100]  # EOS again past its length
    assert all(t < 100 for t in outputs[0][:-1] + outputs[1])


def test_a_slot_prefilled_again_starts_its_new_prompt():
    decoder = free_decoder(2, output_length=lambda prompt: 4)
    first = decoder.prefill([0, 1], [np.arange(3, dtype=TOKEN_DTYPE), np.arange(8, dtype=TOKEN_DTYPE)])
    decoder.step([0, 1], first)
    again = decoder.prefill([1], [np.arange(3, dtype=TOKEN_DTYPE)])
    assert again[0] == first[0]  # slot 1 now holds the same prompt as slot 0 did, from its start
    with pytest.raises(InferenceError, match="never prefilled"):
        free_decoder(2).step([1], np.zeros(1, TOKEN_DTYPE))
    with pytest.raises(InferenceError, match="names a slot twice"):
        decoder.step([0, 0], np.zeros(2, TOKEN_DTYPE))
    with pytest.raises(InferenceError, match="outside 0..1"):
        decoder.prefill([2], [np.arange(3, dtype=TOKEN_DTYPE)])
    with pytest.raises(InferenceError, match="must not be an ordinary token"):
        SyntheticDecoder(2, eos_token_id=5)


def test_prefill_and_step_cost_what_they_say():
    decoder = SyntheticDecoder(8, prefill_fixed_s=0.002, prefill_per_token_s=25e-6, step_fixed_s=0.002,
                               step_per_slot_s=0.001, output_length=lambda prompt: 1000)
    prompts = [np.arange(n, dtype=TOKEN_DTYPE) for n in (100, 300)]
    took = timed(decoder.prefill, [0, 1], prompts)
    assert decoder.prefill_cost(400) <= took < decoder.prefill_cost(400) + SLACK_S  # 12 ms
    tokens = np.zeros(2, TOKEN_DTYPE)
    two = min(timed(decoder.step, [0, 1], tokens) for _ in range(3))
    decoder.prefill([2, 3, 4, 5, 6, 7], [np.arange(10, dtype=TOKEN_DTYPE)] * 6)
    eight = min(timed(decoder.step, list(range(8)), np.zeros(8, TOKEN_DTYPE)) for _ in range(3))
    assert two >= decoder.step_cost(2) and eight >= decoder.step_cost(8)
    assert eight - two == pytest.approx(6 * 0.001, abs=0.004)
    expected = decoder.prefill_cost(400) + decoder.prefill_cost(60) + 3 * (decoder.step_cost(2) + decoder.step_cost(8))
    assert decoder.busy_s == pytest.approx(expected)
