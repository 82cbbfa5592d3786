"""One LoadGen test (scenario x mode) per process, logs written atomically to one directory."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchpipe import provenance
from benchpipe.atomic import atomic_dir
from benchpipe.benchmarks.base import Benchmark
from benchpipe.datasets.prepare import load_split
from benchpipe.errors import InferenceError
from benchpipe.hashing import sha256_file
from benchpipe.infer.sut import RESPONSE_DTYPE, ClassifierSUT, SampleLibrary, SavedModelPredictor

SCENARIOS = ("Offline", "SingleStream")
MODES = ("performance", "accuracy")
OFFICIAL_MIN_DURATION_MS = 600_000
USER_CONF = "user.conf"
ACCURACY_LOG = "mlperf_log_accuracy.json"
ACCURACY_TXT = "accuracy.txt"


@dataclass(frozen=True)
class LoadGenTest:
    scenario: str
    mode: str
    min_duration_ms: int

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise InferenceError(f"scenario '{self.scenario}' is not one of {', '.join(SCENARIOS)}")
        if self.mode not in MODES:
            raise InferenceError(f"mode '{self.mode}' is not one of {', '.join(MODES)}")


# Offline issues one query of target_qps x min_duration samples: a target below the real
# rate ends the test before min_duration (INVALID), so aim above the calibrated rate.
OFFLINE_QPS_HEADROOM = 1.5
CALIBRATION_S = 1.0


def calibrate_offline_qps(predictor, features: np.ndarray, batch_size: int) -> float:
    """Samples per second of the predictor on full batches, measured for about a second."""
    reps = -(-batch_size // len(features))
    batch = np.ascontiguousarray(np.concatenate([features] * reps)[:batch_size])
    # The first calls are slower (allocation, caches): an estimate taken from them would be
    # low, and a low target ends the test before min_duration.
    warm_until = time.perf_counter() + CALIBRATION_S / 4
    while time.perf_counter() < warm_until:
        predictor(batch)
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < CALIBRATION_S:
        predictor(batch)
        done += batch_size
    return done / elapsed


def user_conf(benchmark: Benchmark, spec: LoadGenTest, offline_qps: float | None = None) -> str:
    """The user.conf this test runs with; written into the results so that it can be audited."""
    task = benchmark.inference
    prefix = f"{benchmark.name}.{spec.scenario}"
    lines = [
        f"{prefix}.min_duration = {spec.min_duration_ms}",
        f"{prefix}.performance_sample_count_override = {task.performance_sample_count}",
    ]
    if spec.scenario == "Offline":
        if offline_qps is None:
            qps = task.offline_expected_qps
        else:
            lines.append(f"# target_qps: {OFFLINE_QPS_HEADROOM} x the {offline_qps:.0f} samples/s measured before the test")
            qps = round(offline_qps * OFFLINE_QPS_HEADROOM)
        lines.append(f"{prefix}.target_qps = {qps}")
    else:
        lines.append(f"{prefix}.target_latency = {task.single_stream_expected_latency_ns / 1e6}")
    if spec.min_duration_ms < OFFICIAL_MIN_DURATION_MS:
        lines.insert(0, f"# min_duration below {OFFICIAL_MIN_DURATION_MS} ms: not valid for an official round")
    return "\n".join(lines) + "\n"


def _settings(benchmark: Benchmark, spec: LoadGenTest, conf_path: Path):
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    # FromConfig once per process: a second call logs an error that invalidates the run.
    if settings.FromConfig(str(conf_path), benchmark.name, spec.scenario) != 0:
        raise InferenceError(f"{conf_path}: LoadGen rejected the configuration")
    settings.scenario = getattr(lg.TestScenario, spec.scenario)
    settings.mode = (
        lg.TestMode.PerformanceOnly if spec.mode == "performance" else lg.TestMode.AccuracyOnly
    )
    return settings


def run_test(
    benchmark: Benchmark, data_dir: Path, model_dir: Path, spec: LoadGenTest, out_dir: Path
) -> None:
    import mlperf_loadgen as lg

    evaluation = load_split(data_dir, "eval")
    predictor = SavedModelPredictor(model_dir, tuple(evaluation.features.shape[1:]))
    qsl = SampleLibrary(evaluation)
    batch = benchmark.inference.offline_batch_size if spec.scenario == "Offline" else 1
    sut = ClassifierSUT(predictor, qsl, batch)
    with atomic_dir(out_dir) as tmp:
        conf_path = tmp / USER_CONF
        qps = None
        if spec.scenario == "Offline" and spec.mode == "performance":
            qps = calibrate_offline_qps(predictor, evaluation.features, batch)
        conf_path.write_text(user_conf(benchmark, spec, qps))
        settings = _settings(benchmark, spec, conf_path)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(tmp)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.enable_trace = False
        sut_handle = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
        qsl_handle = lg.ConstructQSL(
            qsl.total, min(qsl.total, benchmark.inference.performance_sample_count), qsl.load, qsl.unload
        )
        try:
            # An explicit audit file that does not exist: an audit.config in the working
            # directory would otherwise turn this into a compliance run.
            lg.StartTestWithLogSettings(
                sut_handle, qsl_handle, settings, log_settings, str(tmp / "no-audit.config")
            )
        finally:
            lg.DestroyQSL(qsl_handle)
            lg.DestroySUT(sut_handle)
        if spec.mode == "accuracy":
            write_accuracy(tmp, evaluation.labels)
        provenance.write(tmp, data_dir)


def accuracy_from_log(path: Path, labels: np.ndarray) -> tuple[float, int]:
    """Top-1 over the accuracy log, each sample counted once: (accuracy, samples)."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InferenceError(f"{path}: cannot read accuracy log: {exc}") from exc
    predicted: dict[int, int] = {}
    for n, entry in enumerate(entries):
        try:
            value = np.frombuffer(bytes.fromhex(entry["data"]), dtype=RESPONSE_DTYPE)
            predicted[int(entry["qsl_idx"])] = int(value[0])
        except (KeyError, ValueError, IndexError) as exc:
            raise InferenceError(f"{path}: entry {n}: malformed ({exc})") from exc
    if not predicted:
        raise InferenceError(f"{path}: no samples in the accuracy log")
    correct = sum(int(labels[i] == p) for i, p in predicted.items())
    return correct / len(predicted), len(predicted)


def write_accuracy(result_dir: Path, labels: np.ndarray) -> float:
    log = result_dir / ACCURACY_LOG
    accuracy, count = accuracy_from_log(log, labels)
    (result_dir / ACCURACY_TXT).write_text(
        f"accuracy={accuracy * 100:.3f}%, good={round(accuracy * count)}, total={count}\n"
        f"hash={sha256_file(log)}\n"
    )
    return accuracy
