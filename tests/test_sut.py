"""The SUTs, predictor, sample sources and calibration, through the real LoadGen and TensorFlow.

A tiny Keras model (8x8x1 -> 10 logits, random weights) is exported once per module; every
LoadGen test logs each response (accuracy_log_probability 1) so that the classes LoadGen
received can be compared with what the predictor answers for the same samples.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np
import pytest

import benchpipe.infer.calibrate as calibrate_module
from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.layout import DETAIL_LOG
from benchpipe.infer.calibrate import (
    CONFIRM_LENGTH,
    CUT_SHORT,
    SAFETY_MARGIN,
    SEARCH_MAX_DURATION_FACTOR,
    SERVER_COALESCE_QUERIES,
    Calibration,
    ServerOutcome,
    _Runs,
    calibrate,
    measure_offline,
    search_server_qps,
    server_batching,
    server_run,
)
from benchpipe.infer.loadgen_run import WARM_UP_S
from benchpipe.infer.samples import ArraySamples, ImageNetValSamples, ParquetSamples, SampleLibrary, record_offsets
from benchpipe.infer.sut import (
    RESPONSE_DTYPE,
    Batching,
    BatchSUT,
    CompiledPredictor,
    ServerSUT,
    predictor_batch_sizes,
    start_test,
    sut_for,
)
from benchpipe.results.loadgen_parser import parse_detail_log

# LoadGen's verdicts here depend on timing: these tests run in a pass of their own (Makefile).
pytestmark = pytest.mark.timing

SHAPE = (8, 8, 1)
TOTAL = 100
PERFORMANCE_COUNT = 64


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10)])
    out = tmp_path_factory.mktemp("model") / "model"
    model.export(str(out), format="tf_saved_model", verbose=False)
    return out


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(5).random((TOTAL, *SHAPE), dtype=np.float32)


@pytest.fixture(scope="module")
def expected(model_dir, features) -> np.ndarray:
    """Each sample's class, from the SavedModel's own serve endpoint, batch by batch of one."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    classes = np.asarray([int(np.argmax(loaded.serve(tf.constant(row[None])).numpy())) for row in features])
    assert len(set(classes)) > 1  # random weights still separate the samples
    return classes


def make_qsl(features: np.ndarray) -> SampleLibrary:
    return SampleLibrary(ArraySamples(features, np.zeros(len(features), np.int32), "random test samples"))


def settings(scenario: str, **values):
    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = lg.TestMode.PerformanceOnly
    s.accuracy_log_probability = 1.0  # every response into mlperf_log_accuracy.json
    s.accuracy_log_rng_seed = 1
    for key, value in values.items():
        setattr(s, key, value)
    return s


def logged_classes(log_dir: Path) -> list[tuple[int, int]]:
    entries = json.loads((log_dir / "mlperf_log_accuracy.json").read_text())
    return [(e["qsl_idx"], int(np.frombuffer(bytes.fromhex(e["data"]), RESPONSE_DTYPE)[0])) for e in entries]


def check_run(log_dir: Path, expected: np.ndarray, every: bool = True) -> dict:
    """The detail log's values, once every issued (or every logged) sample was answered with its class."""
    detail = parse_detail_log(log_dir / DETAIL_LOG)
    assert detail.errors == []
    answered = logged_classes(log_dir)
    issued = detail.get("result_query_count") * detail.get("generated_samples_per_query")
    assert len(answered) == issued > 0 if every else 0 < len(answered) < issued
    assert all(cls == expected[idx] for idx, cls in answered)
    return detail.values


# --- the predictor -----------------------------------------------------------------------------


def test_predictor_pads_splits_and_never_retraces(model_dir, features, expected):
    predictor = CompiledPredictor(model_dir, SHAPE, [16, 1, 4])
    assert predictor.batch_sizes == [1, 4, 16]
    assert predictor.trace_count == 3 and set(predictor.batch_seconds) == {1, 4, 16}
    for count in (1, 2, 3, 4, 5, 16, 17, 40, TOTAL):
        got = predictor(features[:count])
        assert got.dtype == RESPONSE_DTYPE and got.shape == (count,)
        np.testing.assert_array_equal(got, expected[:count])
    assert predictor.padded_size(3) == 4 and predictor.padded_size(5) == 16 and predictor.padded_size(40) == 16
    # A non-contiguous float64 view still answers the right rows.
    np.testing.assert_array_equal(predictor(features[::-1][:7].astype(np.float64)), expected[::-1][:7])
    assert predictor(features[:0]).shape == (0,)
    assert predictor.trace_count == 3


def test_predictor_errors_name_the_model(tmp_path, model_dir):
    import tensorflow as tf

    with pytest.raises(InferenceError, match=f"{tmp_path / 'missing'}: SavedModel directory does not exist"):
        CompiledPredictor(tmp_path / "missing", SHAPE, [1])
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "noserve"))
    with pytest.raises(InferenceError, match=r"noserve: SavedModel has no 'serve' endpoint"):
        CompiledPredictor(tmp_path / "noserve", SHAPE, [1])
    with pytest.raises(InferenceError, match=r"model: 'serve' does not accept float32 batches of shape \(2, 7, 7, 1\)"):
        CompiledPredictor(model_dir, (7, 7, 1), [2])
    with pytest.raises(InferenceError, match="batch sizes must be positive"):
        CompiledPredictor(model_dir, SHAPE, [0])


# --- the sample library ----------------------------------------------------------------------------


class RecordingLibrary(SampleLibrary):
    """Notes the rows held after each of LoadGen's load calls."""

    def __init__(self, source) -> None:
        super().__init__(source)
        self.held: list[int] = []

    def load(self, indices):
        super().load(indices)
        self.held.append(len(self.loaded))


def test_library_holds_only_the_performance_set_loadgen_asks_for(model_dir, features, expected, tmp_path):
    qsl = RecordingLibrary(ArraySamples(features, np.zeros(TOTAL, np.int32), "random"))
    predictor = CompiledPredictor(model_dir, SHAPE, [1])
    start_test(BatchSUT(predictor, qsl, 1), qsl, settings("SingleStream", min_duration_ms=200, min_query_count=100),
               tmp_path, PERFORMANCE_COUNT)
    assert qsl.held == [PERFORMANCE_COUNT]
    assert qsl.loaded is None  # unloaded after the test
    issued = {idx for idx, _ in logged_classes(tmp_path)}
    assert len(issued) <= PERFORMANCE_COUNT
    with pytest.raises(InferenceError, match="not loaded"):
        qsl.batch(np.array([0]))


def test_library_gathers_rows_by_qsl_index(features):
    qsl = make_qsl(features)
    assert qsl.performance_count(1000) == TOTAL and qsl.performance_count(10) == 10
    qsl.load([40, 3, 77, 12])
    np.testing.assert_array_equal(qsl.batch(np.array([77, 40, 77])), features[[77, 40, 77]])
    assert qsl.loaded.shape == (4, *SHAPE) and qsl.loaded.flags.c_contiguous
    with pytest.raises(InferenceError, match="not loaded"):
        qsl.batch(np.array([5]))
    qsl.unload([40, 3, 77, 12])
    qsl.load([5])
    np.testing.assert_array_equal(qsl.batch([5]), features[[5]])
    with pytest.raises(InferenceError, match="not loaded"):
        qsl.batch([40])


def test_parquet_samples_read_only_requested_rows_in_order(digits_data):
    from benchpipe.datasets.prepare import load_split

    evaluation = load_split(digits_data, "eval")
    source = ParquetSamples(digits_data, "eval")
    assert source.total == len(evaluation.labels) and source.sample_shape == (8, 8, 1)
    np.testing.assert_array_equal(source.labels, evaluation.labels)
    picked = np.array([300, 2, 150, 2])
    np.testing.assert_array_equal(source.read(picked), evaluation.features[picked])
    assert "eval samples of digits" in source.describe()

    limited = ParquetSamples(digits_data, "eval", limit=50)
    assert limited.total == 50 and len(limited.labels) == 50
    with pytest.raises(InferenceError, match=r"index out of range 0\.\.49"):
        limited.read(np.array([50]))


def test_parquet_samples_name_a_missing_or_changed_shard(digits_data, tmp_path):
    copy = tmp_path / "digits"
    shutil.copytree(digits_data, copy)
    shard = sorted((copy / "shards").glob("eval-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(InferenceError, match=f"{shard}: sha256 .* does not match"):
        ParquetSamples(copy)
    shard.unlink()
    with pytest.raises(InferenceError, match=f"{shard}: shard listed in .*manifest.json is missing"):
        ParquetSamples(copy)
    with pytest.raises(InferenceError, match="manifest.json: missing"):
        ParquetSamples(tmp_path / "nowhere")


# --- ImageNet validation samples --------------------------------------------------------------------


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    from imagenet_tree import layout, make_tree

    from benchpipe.datasets.tfrecord import convert

    out = tmp_path_factory.mktemp("imagenet") / "imagenet"
    convert(layout(make_tree(tmp_path_factory.mktemp("imagenet-src"))), out, workers=1)
    return out


def test_imagenet_at_224_reads_the_preprocessed_arrays(imagenet, tmp_path):
    source = ImageNetValSamples(imagenet, 224)
    names = [line.split()[0] for line in (imagenet / "val_map.txt").read_text().splitlines()]
    assert source.total == len(names) == 6 and source.sample_shape == (224, 224, 3)
    lines = (imagenet / "val_map.txt").read_text().splitlines()
    np.testing.assert_array_equal(source.labels, [int(line.split()[1]) for line in lines])
    rows = source.read(np.array([4, 0]))
    for row, k in zip(rows, (4, 0)):
        np.testing.assert_array_equal(row, np.load(imagenet / "preprocessed" / "val" / f"{names[k]}.npy"))
    assert "preprocessed/val/*.npy" in source.describe()
    assert ImageNetValSamples(imagenet, 224, limit=2).total == 2

    copy = tmp_path / "imagenet"
    shutil.copytree(imagenet, copy)
    missing = copy / "preprocessed" / "val" / f"{names[3]}.npy"
    missing.unlink()
    with pytest.raises(InferenceError, match=f"{missing}: missing"):
        ImageNetValSamples(copy, 224).read(np.array([3]))
    (copy / "val_map.txt").unlink()
    with pytest.raises(InferenceError, match=f"{copy / 'val_map.txt'}: missing"):
        ImageNetValSamples(copy, 224)


def test_imagenet_at_a_small_size_decodes_only_the_requested_records(imagenet):
    import tensorflow as tf

    from benchpipe.benchmarks.resnet.input_pipeline import preprocess_eval

    source = ImageNetValSamples(imagenet, 32)
    assert source.sample_shape == (32, 32, 3) and "TFRecord" in source.describe()
    shards = sorted((imagenet / "tfrecords").glob("validation-*"))
    records = [r.numpy() for shard in shards for r in tf.data.TFRecordDataset(str(shard))]
    assert sum(len(record_offsets(shard)) for shard in shards) == len(records) == source.total
    picked = np.array([5, 1, 3])
    got = source.read(picked)
    assert got.shape == (3, 32, 32, 3) and got.dtype == np.float32
    for row, k in zip(got, picked):
        parsed = tf.io.parse_single_example(records[k], {"image/encoded": tf.io.FixedLenFeature([], tf.string)})
        np.testing.assert_allclose(row, preprocess_eval(parsed["image/encoded"], 32).numpy(), atol=1e-5)


# --- the SUTs through LoadGen ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "sizes", "values"),
    [
        ("Offline", [32], {}),
        ("SingleStream", [1], {"single_stream_expected_latency_ns": 200_000, "min_query_count": 100}),
        # LoadGen generates min_duration / expected latency queries up front and stops once the
        # duration and the query count are met: an expected latency below any real one leaves
        # queries to spare on a loaded machine, where 300 us ran out ("Ending early").
        ("MultiStream", [8], {"multi_stream_expected_latency_ns": 100_000, "min_query_count": 700}),
    ],
)
def test_batch_sut_answers_every_sample_right_and_valid(model_dir, features, expected, tmp_path, scenario, sizes,
                                                        values):
    predictor = CompiledPredictor(model_dir, SHAPE, sizes)
    qsl = make_qsl(features)
    sut = sut_for(scenario, predictor, qsl, Batching.for_scenario(scenario, offline_batch_size=sizes[0]))
    assert isinstance(sut, BatchSUT) and sut.batch_size == sizes[0]
    if scenario == "Offline":
        # One query of 1.1 x target x min_duration samples: a target below the real rate ends early.
        values = {"offline_expected_qps": 1.3 * measure_offline(predictor, qsl, sizes[0], seconds=0.2)}
    duration_ms = 100 if scenario == "Offline" else 300  # Offline: ~ rate x 0.15 s samples, each logged
    start_test(sut, qsl, settings(scenario, min_duration_ms=duration_ms, **values), tmp_path, PERFORMANCE_COUNT)
    result = check_run(tmp_path, expected)
    assert result["result_validity"] == "VALID", result.get("result_invalid_reason")
    if scenario != "Offline":
        assert result["early_stopping_met"] is True
    assert predictor.trace_count == 1


def test_server_sut_answers_every_sample_right_and_valid(model_dir, features, expected, tmp_path):
    predictor = CompiledPredictor(model_dir, SHAPE, [1, 2, 4, 8])
    qsl = make_qsl(features)
    batching = Batching("Server", batch_size=8, max_batch=8, max_wait_s=0.002, workers=2, latency_budget_s=0.02)
    sut = sut_for("Server", predictor, qsl, batching)
    assert isinstance(sut, ServerSUT)
    start_test(sut, qsl, settings("Server", server_target_qps=1500, server_target_latency_ns=25_000_000,
                                  min_duration_ms=300, min_query_count=600), tmp_path, PERFORMANCE_COUNT)
    result = check_run(tmp_path, expected)
    assert result["result_validity"] == "VALID", result.get("result_invalid_reason")
    assert result["early_stopping_met"] is True
    assert sum(n * c for n, c in sut.size_counts.items()) == result["result_query_count"]
    assert max(sut.size_counts) <= 8 and predictor.trace_count == 4


def test_server_batches_fill_up_to_max_batch_and_wait_at_most_max_wait(model_dir, features, tmp_path):
    predictor = CompiledPredictor(model_dir, SHAPE, [1, 2, 4])
    qsl = make_qsl(features)
    sut = ServerSUT(predictor, qsl, max_batch=4, max_wait_s=0.004, workers=2, latency_budget_s=0.05)
    # 4,000 queries/s: four arrive in about 1 ms, well within max_wait, so batches fill up.
    start_test(sut, qsl, settings("Server", server_target_qps=4000, min_duration_ms=300, min_query_count=500),
               tmp_path / "fast", PERFORMANCE_COUNT)
    assert max(sut.size_counts) == 4 and sut.size_counts[4] > sum(sut.size_counts.values()) / 2
    assert all(d.size <= 4 for d in sut.dispatches)
    assert all(d.size == 4 for d in sut.dispatches if d.reason == "full")

    slow = ServerSUT(predictor, qsl, max_batch=64, max_wait_s=0.004, workers=2, latency_budget_s=0.05)
    # 100 queries/s: a batch never fills, every one goes when its oldest sample has waited 4 ms.
    start_test(slow, qsl, settings("Server", server_target_qps=100, min_duration_ms=300, min_query_count=30),
               tmp_path / "slow", PERFORMANCE_COUNT)
    timed = [d for d in slow.dispatches if d.reason == "max_wait"]
    assert len(timed) >= 0.8 * len(slow.dispatches)
    # Never before max_wait; after it only by the time a thread takes to wake (generous: shared CPUs).
    assert all(0.004 <= d.waited_s < 0.004 + 0.05 for d in timed)
    assert np.median([d.waited_s for d in timed]) < 0.004 + 0.005


def test_server_dispatches_before_the_latency_budget_runs_out(model_dir, features, tmp_path):
    predictor = CompiledPredictor(model_dir, SHAPE, [1, 2, 4, 8])
    qsl = make_qsl(features)
    # max_wait far above the budget: the budget (minus a batch's expected cost) decides.
    sut = ServerSUT(predictor, qsl, max_batch=8, max_wait_s=1.0, workers=1, latency_budget_s=0.005)
    start_test(sut, qsl, settings("Server", server_target_qps=200, min_duration_ms=300, min_query_count=60),
               tmp_path, PERFORMANCE_COUNT)
    early = [d for d in sut.dispatches if d.reason == "deadline"]
    assert len(early) >= 0.8 * len(sut.dispatches)
    assert np.median([d.waited_s for d in early]) < 0.005 and all(d.waited_s < 0.05 for d in early)


def test_flush_with_nothing_pending_answers_nothing(model_dir, features):
    predictor = CompiledPredictor(model_dir, SHAPE, [1])
    with ServerSUT(predictor, make_qsl(features), 1, 0.001, 2, 0.01) as sut:
        sut.flush_queries()
    assert sut.dispatches == [] and sut._threads == []
    sut.stop()  # a second stop is harmless


class WrongShapeSamples(ArraySamples):
    """Rows of another shape than the model takes: every batch fails inside the SUT."""


@pytest.mark.parametrize("scenario", ["Server", "Offline"])
def test_a_failing_batch_is_answered_and_raised_after_the_test(model_dir, tmp_path, scenario):
    predictor = CompiledPredictor(model_dir, SHAPE, [1, 4])
    qsl = SampleLibrary(WrongShapeSamples(np.zeros((10, 7, 7, 1), np.float32), np.zeros(10, np.int32), "7x7 rows"))
    if scenario == "Server":
        sut = ServerSUT(predictor, qsl, 4, 0.001, 2, 0.01)
        values = {"server_target_qps": 500, "min_query_count": 50}
    else:
        sut = BatchSUT(predictor, qsl, 4)
        values = {"offline_expected_qps": 100}
    # LoadGen finishes (every sample was answered, empty), then the first error surfaces.
    with pytest.raises(InferenceError, match=r"failed.*InferenceError: .*batch of shape \(\d+, 7, 7, 1\)") as raised:
        start_test(sut, qsl, settings(scenario, min_duration_ms=100, **values), tmp_path, 10)
    assert isinstance(raised.value.__cause__, InferenceError)
    assert (tmp_path / DETAIL_LOG).is_file()


class FailingGather(SampleLibrary):
    """A library whose gathers fail: Offline's gathers of several batches at once."""

    def batch(self, indices):
        raise InferenceError(f"cannot gather {len(indices)} samples")


def test_a_failing_offline_gather_answers_its_batches_and_is_raised(model_dir, features, tmp_path):
    predictor = CompiledPredictor(model_dir, SHAPE, [4])
    qsl = FailingGather(ArraySamples(features, np.zeros(len(features), np.int32), "rows"))
    with pytest.raises(InferenceError, match=r"BatchSUT failed.*cannot gather \d+ samples"):
        start_test(BatchSUT(predictor, qsl, 4), qsl, settings("Offline", min_duration_ms=100, offline_expected_qps=100),
                   tmp_path, PERFORMANCE_COUNT)
    values = parse_detail_log(tmp_path / DETAIL_LOG).values
    assert values["result_query_count"] == 1  # LoadGen ended: every sample was answered, empty


# --- settings and calibration ----------------------------------------------------------------------


def test_batching_round_trips_and_names_the_bad_key():
    server = Batching("Server", batch_size=16, max_batch=16, max_wait_s=0.002, workers=2, latency_budget_s=0.008)
    assert Batching.from_dict(json.loads(json.dumps(server.to_dict()))) == server
    assert predictor_batch_sizes(server) == [1, 2, 4, 8, 16]
    assert predictor_batch_sizes(Batching("Server", max_batch=12, latency_budget_s=0.01)) == [1, 2, 4, 8, 12]
    assert predictor_batch_sizes(Batching.for_scenario("Offline", 128)) == [128]
    assert predictor_batch_sizes(Batching.for_scenario("SingleStream")) == [1]
    assert predictor_batch_sizes(Batching.for_scenario("MultiStream")) == [8]
    with pytest.raises(InferenceError, match="batching: unknown keys colour"):
        Batching.from_dict({"scenario": "Offline", "colour": 1})
    with pytest.raises(InferenceError, match="batching.workers: must be at least 1"):
        Batching("Server", workers=0, latency_budget_s=0.01)
    with pytest.raises(InferenceError, match="latency_budget_s"):
        Batching("Server")
    calibration = Calibration("Server", server, offline_qps=1000.0, server_target_qps=450.0,
                              server_latency_bound_ns=10_000_000, search=[(500.0, True, 9_000_000)])
    assert Calibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration


def test_server_batching_follows_the_bound():
    costs = {1: 0.001, 2: 0.0015, 4: 0.002, 8: 0.003, 16: 0.005}
    chosen = server_batching(costs, bound_s=0.012)
    assert chosen.max_batch == 8 and chosen.max_wait_s == pytest.approx(0.0006)  # a twentieth of the bound
    assert server_batching(costs, bound_s=0.012, max_wait_fraction=0.25).max_wait_s == pytest.approx(0.003)
    assert chosen.latency_budget_s == pytest.approx(0.0096)
    # No batch within a quarter of the bound, one sample within the budget: one at a time, no waiting.
    single = server_batching(costs, bound_s=0.002)
    assert (single.max_batch, single.max_wait_s, single.latency_budget_s) == (1, 0.0, pytest.approx(0.0016))
    with pytest.raises(InferenceError, match=r"one batch of 1 takes 1 ms, more than the 0\.8 ms .* of the 1 ms p99 bound"):
        server_batching(costs, bound_s=0.001)


def test_latency_calibrations_measure_through_loadgen(model_dir, features):
    qsl = make_qsl(features)
    common = dict(offline_batch_size=32, server_latency_bound_ns=10_000_000, loadgen_model="test",
                  performance_sample_count=PERFORMANCE_COUNT, run_ms=300)
    single = calibrate("SingleStream", model_dir, SHAPE, qsl, **common)
    multi = calibrate("MultiStream", model_dir, SHAPE, qsl, **common)
    offline = calibrate("Offline", model_dir, SHAPE, qsl, **common)
    assert 10_000 < single.single_stream_latency_ns < 50_000_000
    assert single.single_stream_latency_ns < multi.multi_stream_latency_ns * 2
    assert offline.offline_qps > 1_000 and offline.batching.batch_size == 32
    assert qsl.loaded is None and qsl._kept is None  # nothing kept once calibration is done


def test_server_search_finds_a_rate_whose_real_run_is_valid(model_dir, features, expected, tmp_path):
    qsl = make_qsl(features)
    # A bound well above the machine's stalls: this tests the search, not the host. Near
    # capacity a queue drains slowly, so at a 20 ms bound one 40 ms stall (another process,
    # a noisy neighbour) made a whole run INVALID however well the rate was chosen.
    bound_ns = 60_000_000
    run_ms = 400
    calibration = calibrate("Server", model_dir, SHAPE, qsl, offline_batch_size=32, server_latency_bound_ns=bound_ns,
                            loadgen_model="test", performance_sample_count=PERFORMANCE_COUNT, budget_s=8,
                            run_ms=run_ms, search_max_runs=4)
    tried = calibration.search
    assert tried and any(valid for _, valid, _ in tried)
    backed_off = (1 - SAFETY_MARGIN) * max(q for q, valid, _ in tried if valid)
    assert calibration.server_target_qps <= backed_off * (1 + 1e-6)  # rounded
    assert all(p99 <= bound_ns for q, valid, p99 in tried if valid)

    # The real run as run_test makes it: a fresh, warmed predictor, as long as the confirming run,
    # LoadGen issuing as its user.conf asks (coalesce_queries).
    predictor = CompiledPredictor(model_dir, SHAPE, predictor_batch_sizes(calibration.batching))
    predictor.warm_up(WARM_UP_S)
    # Up to three runs, as the workflow's infer rule retries (retries: 2): one stall of a shared
    # host can sink a run at a rate the machine holds the rest of the time.
    for attempt in range(3):
        sut = sut_for("Server", predictor, qsl, calibration.batching)
        # Only some responses logged: logging every one would load the run more than the search's were.
        start_test(sut, qsl, settings("Server", server_target_qps=calibration.server_target_qps,
                                      server_target_latency_ns=bound_ns, min_duration_ms=run_ms * CONFIRM_LENGTH,
                                      min_query_count=1001, accuracy_log_probability=0.02,
                                      server_coalesce_queries=SERVER_COALESCE_QUERIES),
                   tmp_path / f"run{attempt}", PERFORMANCE_COUNT)
        result = check_run(tmp_path / f"run{attempt}", expected, every=False)
        if result["result_validity"] == "VALID":
            break
    assert result["result_validity"] == "VALID", (result.get("result_invalid_reason"), tried)
    assert result["early_stopping_met"] is True


@pytest.mark.parametrize("coalesce", [False, True], ids=["one-query-per-call", "coalesced"])
def test_an_overloaded_search_run_ends_on_schedule_and_is_not_valid(model_dir, features, tmp_path, monkeypatch,
                                                                     coalesce):
    """A rate far above capacity ends within SEARCH_MAX_DURATION_FACTOR x its plan, not after every query.

    Issuing one query per call, LoadGen falls behind its schedule and max_duration_ms cuts the
    issuing short. Coalesced, it issues the whole schedule on time, and the SUT answers what is
    already past the bound at once (shed_after_s).
    """
    monkeypatch.setattr(calibrate_module, "SERVER_COALESCE_QUERIES", coalesce)
    qsl = make_qsl(features)
    batching = Batching("Server", batch_size=8, max_batch=8, max_wait_s=0.001, workers=2, latency_budget_s=0.008)
    predictor = CompiledPredictor(model_dir, SHAPE, predictor_batch_sizes(batching))
    qps, duration_ms = 2_000_000.0, 300
    started = time.perf_counter()
    outcome = server_run(predictor, qsl, batching, qps, 10_000_000, _Runs(tmp_path), PERFORMANCE_COUNT,
                         duration_ms=duration_ms)
    took = time.perf_counter() - started
    log = next(tmp_path.glob(f"*/{DETAIL_LOG}"))
    values = parse_detail_log(log).values
    assert values["requested_server_coalesce_queries"] is coalesce
    assert values["generated_query_count"] >= qps * duration_ms / 1e3 * 0.99  # the schedule: 600,000 queries
    if coalesce:
        assert values["result_query_count"] == values["generated_query_count"]
        assert values["result_overlatency_query_count"] > values["result_query_count"] / 2
    else:
        assert CUT_SHORT in log.read_text()
        assert values["result_query_count"] < values["generated_query_count"] / 4
    assert not outcome.valid and 0 < outcome.computed_qps < qps
    # The plan (0.3 s) times the factor, the drain, LoadGen's start and end: well under the uncut run's seconds.
    assert took < duration_ms / 1e3 * SEARCH_MAX_DURATION_FACTOR + 2


def test_server_calibration_names_a_bound_no_batch_fits(model_dir, features):
    with pytest.raises(InferenceError, match=r"one batch of 1 takes .* ms, more than the 0\.0008 ms .* 0\.001 ms p99 bound"):
        calibrate("Server", model_dir, SHAPE, make_qsl(features), offline_batch_size=32,
                  server_latency_bound_ns=1_000, loadgen_model="test", performance_sample_count=PERFORMANCE_COUNT,
                  budget_s=5, run_ms=300)


def test_server_search_brackets_bisects_confirms_and_names_what_it_saw():
    """The search's own logic, on runs whose outcome is a known capacity of 1,000 queries/s."""
    seen = []

    def run(qps, duration_ms, long_capacity=1000.0):
        seen.append((round(qps), duration_ms))
        capacity = 1000.0 if duration_ms == 500 else long_capacity
        return ServerOutcome(qps <= capacity, int(5e6 if qps <= capacity else 5e7), min(qps, capacity))

    far = time.perf_counter() + 3600
    target, tried = search_server_qps(run, 400.0, far, 10_000_000, "test", max_runs=8, duration_ms=500)
    assert [q for q, _ in seen[:3]] == [400, 800, 1600]  # doubles while VALID
    best = max(q for q, ok, _ in tried[:-1] if ok)
    assert 950 < best <= 1000 and target == pytest.approx(best * (1 - SAFETY_MARGIN))
    assert seen[-1] == (round(target), 1000) and tried[-1][1]  # confirmed by a run twice as long
    # Overloaded first: the next rate is 0.8 x what was computed, not a blind halving.
    seen.clear()
    search_server_qps(run, 50_000.0, far, 10_000_000, "test", max_runs=2, duration_ms=500)
    assert seen == [(50_000, 500), (800, 500), (round(800 * (1 - SAFETY_MARGIN)), 1000)]
    # A rate that passes short runs but not the longer confirmation is backed off again.
    seen.clear()
    target, _ = search_server_qps(lambda q, d: run(q, d, long_capacity=760.0), 900.0, far, 10_000_000, "test",
                                  max_runs=1, duration_ms=500)
    once, twice = 900 * (1 - SAFETY_MARGIN), 900 * (1 - SAFETY_MARGIN) ** 2
    assert seen == [(900, 500), (round(once), 1000), (round(twice), 1000)] and target == pytest.approx(twice)

    # A host whose stalls keep p99 past the margin (7 ms of 10) at every rate, within the bound:
    # the highest rate LoadGen judged VALID stands in, and LoadGen's verdict confirms it.
    seen.clear()

    def stalled(qps, duration_ms):
        seen.append((round(qps), duration_ms))
        return ServerOutcome(False, 8_400_000, qps, within_bound=qps <= 1000)

    target, tried = search_server_qps(stalled, 4000.0, far, 10_000_000, "test", max_runs=4, duration_ms=500)
    assert [q for q, _ in seen] == [4000, 2000, 1000, 500, 850] and not any(ok for _, ok, _ in tried)
    assert target == pytest.approx(1000 * (1 - SAFETY_MARGIN))

    never = lambda qps, ms: ServerOutcome(False, 50_000_000, qps)  # noqa: E731 -- not overloaded, always too slow
    with pytest.raises(InferenceError, match=r"test: no Server rate tried \(4000, 2000, 1000 queries/s\)"
                                             r".*10 ms p99 bound; the best p99 seen was 50\.00 ms: the bound cannot"):
        search_server_qps(never, 4000.0, far, 10_000_000, "test", max_runs=3)
    with pytest.raises(InferenceError, match="the calibration budget ran out"):
        search_server_qps(never, 4000.0, time.perf_counter(), 10_000_000, "test")
