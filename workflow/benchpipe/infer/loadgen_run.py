"""LoadGen tests, one per process: a calibration per scenario, then each test from its user.conf.

A scenario's calibration (``benchpipe calibrate``) measures the served model through LoadGen
and writes the ``user.conf`` that its performance and accuracy runs start from. A performance
run that LoadGen judges INVALID for a setting its own reason names (Offline's expected QPS, the
SingleStream and MultiStream expected latency, a Server rate the run did not sustain) is run
again with that setting corrected from what the run measured, each attempt in a fresh process,
at most MAX_CORRECTIONS times. The performance run's folder holds the user.conf it ended with,
and the closed division's TEST01 and TEST04 compliance runs take that one, since they must run
exactly as the submission run did. Each test writes its logs atomically into one directory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.benchmark import Benchmark
from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.layout import ACCURACY_LOG, ACCURACY_TXT, AUDIT_CONFIG, CALIBRATION, DETAIL_LOG, USER_CONF
from benchpipe.contracts.records import RunKind, ServedModel, read_model_record
from benchpipe.contracts.rounds import COMPLIANCE_TESTS
from benchpipe.infer.calibrate import OVERLOAD_BACKOFF, SERVER_COALESCE_QUERIES
from benchpipe.infer.compliance import audit_config
from benchpipe.infer.models import input_sample_shape
from benchpipe.infer.sut import RESPONSE_DTYPE, SCENARIOS
from benchpipe.infer.validity import correctable_recommendation, invalid_reason
from benchpipe.results.loadgen_parser import DetailLog, parse_detail_log

log = logging.getLogger(__name__)

MODES = ("performance", "accuracy")
TEST_MODES = (*MODES, *COMPLIANCE_TESTS)
# Offline issues one query of target_qps x min_duration samples: a target below the real
# rate ends the test before min_duration (INVALID), one above it only lengthens the test. The
# calibration times the predictor back to back, while the BatchSUT gathers the next batches
# and answers the last ones beside it: a real run was seen at 1.5 x the calibrated rate (101k
# against 67.6k samples/s), so aim at twice it, as the latency scenarios aim at half.
OFFLINE_QPS_HEADROOM = 2.0
# LoadGen generates min_duration / target_latency queries up front: a target above the
# real latency runs out of queries before min_duration (INVALID), so aim below it.
LATENCY_HEADROOM = 0.5
# Enough for the Server search on digits (10-15 s) and for a slow model's few search runs.
CALIBRATION_BUDGET_S = 60.0
# Before each test, so that its first second is not slower than the rest (CompiledPredictor.warm_up).
WARM_UP_S = 1.0
# How often a performance run is corrected and run again: a calibration off by far more than
# its headroom (a tenth of the rate, measured on a loaded host) needs one or two; a setting
# still wrong after three is not noise, and the job fails with LoadGen's reason.
MAX_CORRECTIONS = 3
# Where a performance run keeps its INVALID attempts, attempts/<n>/, beside the final run's files.
ATTEMPTS_DIR = "attempts"
# A Server run whose samples completed at less than this fraction of the rate LoadGen scheduled
# them fell behind: its target is above what the host sustained, and lowering it is what
# LoadGen's reason asks. One that kept up and still broke the bound met a stall, or a bound no
# rate meets; a lower rate measured from it would be a guess, so it fails as before.
SERVER_SUSTAINED_FRACTION = 0.95


@dataclass(frozen=True)
class LoadGenTest:
    scenario: str
    mode: str

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise InferenceError(f"scenario '{self.scenario}' is not one of {', '.join(SCENARIOS)}")
        if self.mode not in TEST_MODES:
            raise InferenceError(f"mode '{self.mode}' is not one of {', '.join(TEST_MODES)}")


def sample_source(benchmark: Benchmark, data_dir: Path, sample_shape: tuple[int, ...], kind: RunKind):
    """The QSL's samples; a development run takes the first ``accuracy_samples`` of them.

    Every test of a development run uses the same subset, so that TEST01 can compare any
    sample the performance run logs with the accuracy run's answer for it.
    """
    from benchpipe.infer.samples import ImageNetValSamples, ParquetSamples

    if benchmark.dataset_name == "imagenet":
        if len(sample_shape) != 3 or sample_shape[0] != sample_shape[1]:
            raise InferenceError(
                f"{benchmark.name}: the model takes samples of shape {sample_shape}, not square images")
        return ImageNetValSamples(data_dir, sample_shape[0], kind.accuracy_samples)
    return ParquetSamples(data_dir, "eval", kind.accuracy_samples)


def _line(prefix: str, key: str, value: Any) -> str:
    return f"{prefix}.{key} = {value}"


def offline_target_qps(samples_per_s: float) -> float:
    """Offline's target_qps from a measured rate (OFFLINE_QPS_HEADROOM)."""
    return round(samples_per_s * OFFLINE_QPS_HEADROOM, 1)


def latency_target_ms(latency_ns: float) -> float:
    """SingleStream's or MultiStream's target_latency (ms) from a measured latency (LATENCY_HEADROOM)."""
    return round(max(latency_ns * LATENCY_HEADROOM / 1e6, 0.001), 3)


def user_conf(benchmark: Benchmark, scenario: str, kind: RunKind, calibration) -> str:
    """The user.conf of every test of this scenario; the calibration's figures in comments."""
    task = benchmark.inference
    prefix = f"{task.loadgen_model}.{scenario}"
    lines = [f"# benchpipe {kind.label}"]
    lines.append(_line(prefix, "min_duration", kind.min_duration_ms))
    lines.append(_line(prefix, "performance_sample_count_override", task.performance_sample_count))
    if scenario == "Offline":
        lines.append(f"# {calibration.offline_qps:.1f} samples/s measured; target {OFFLINE_QPS_HEADROOM} x that")
        lines.append(_line(prefix, "target_qps", offline_target_qps(calibration.offline_qps)))
    elif scenario in ("SingleStream", "MultiStream"):
        measured = (calibration.single_stream_latency_ns if scenario == "SingleStream"
                    else calibration.multi_stream_latency_ns)
        lines.append(f"# {measured / 1e6:.3f} ms measured; target {LATENCY_HEADROOM} x that")
        lines.append(_line(prefix, "target_latency", latency_target_ms(measured)))
    else:
        lines.append(
            f"# the highest VALID rate found: {calibration.server_target_qps:.1f} queries/s "
            f"(p99 bound {task.server_latency_ms} ms)"
        )
        lines.append(_line(prefix, "target_qps", round(calibration.server_target_qps, 1)))
        # As calibration found the rate: overdue queries in one issue call (SERVER_COALESCE_QUERIES).
        lines.append(_line(prefix, "coalesce_queries", int(SERVER_COALESCE_QUERIES)))
        if task.official_name is None:
            # MLPerf models take their bound from mlperf.conf; benchpipe's own state theirs.
            lines.append(_line(prefix, "target_latency", task.server_latency_ms))
    return "\n".join(lines) + "\n"


def _settings(benchmark: Benchmark, test: LoadGenTest, conf_path: Path):
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    # FromConfig once per process: a second call logs an error that invalidates the run.
    if settings.FromConfig(str(conf_path), benchmark.inference.loadgen_model, test.scenario) != 0:
        raise InferenceError(f"{conf_path}: LoadGen rejected the configuration")
    settings.scenario = getattr(lg.TestScenario, test.scenario)
    settings.mode = lg.TestMode.AccuracyOnly if test.mode == "accuracy" else lg.TestMode.PerformanceOnly
    return settings


def _served_inputs(benchmark: Benchmark, data_dir: Path, model: ServedModel, kind: RunKind):
    from benchpipe.infer.samples import SampleLibrary

    shape = input_sample_shape(Path(model.path))
    return shape, SampleLibrary(sample_source(benchmark, data_dir, shape, kind))


def calibrate_scenario(
    benchmark: Benchmark, data_dir: Path, model: ServedModel, scenario: str, kind: RunKind, out_dir: Path
) -> None:
    """Measure the model under ``scenario`` and write calibration.json and user.conf."""
    from benchpipe.infer.calibrate import calibrate

    LoadGenTest(scenario, "performance")
    task = benchmark.inference
    with atomic_dir(out_dir) as tmp:
        shape, qsl = _served_inputs(benchmark, data_dir, model, kind)
        started = time.perf_counter()
        calibration = calibrate(
            scenario, Path(model.path), shape, qsl,
            offline_batch_size=task.offline_batch_size,
            server_latency_bound_ns=int(task.server_latency_ms * 1e6),
            loadgen_model=task.loadgen_model,
            performance_sample_count=task.performance_sample_count,
            budget_s=CALIBRATION_BUDGET_S,
        )
        record = {
            "kind": asdict(kind),
            "scenario": scenario,
            "calibration": calibration.to_dict(),
            "seconds": round(time.perf_counter() - started, 2),
            "samples": qsl.total,
        }
        (tmp / CALIBRATION).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        (tmp / USER_CONF).write_text(user_conf(benchmark, scenario, kind, calibration))
        model.write(tmp)
        provenance.write(tmp, data_dir)


def read_calibration(directory: Path):
    """(RunKind, Calibration) of a calibration directory."""
    from benchpipe.infer.calibrate import Calibration

    path = directory / CALIBRATION
    try:
        record = json.loads(path.read_text())
        return RunKind(**record["kind"]), Calibration.from_dict(record["calibration"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InferenceError(f"{path}: cannot read the calibration: {exc}") from exc


def run_test(
    benchmark: Benchmark, data_dir: Path, test: LoadGenTest, calibration_dir: Path, out_dir: Path,
    conf_path: Path | None = None, threads: int | None = None,
) -> None:
    """One LoadGen test serving the calibrated model, with the scenario's user.conf.

    ``conf_path``: the user.conf to run with instead of the calibration's: a compliance test
    takes the one its scenario's performance run ended with. A performance run that LoadGen
    judges INVALID for a setting it names is corrected and run again (``performance_attempts``).
    ``threads``: TensorFlow's intra- and inter-op threads where the model runs. A performance
    run's attempts run in processes of their own, so this one then never imports TensorFlow
    (seconds of every such job); the others run here, after TensorFlow takes the count.
    """
    read_calibration(calibration_dir)  # refused here, before any work, if unreadable
    model = read_model_record(calibration_dir)
    if not Path(model.path).is_dir():
        raise InferenceError(
            f"{calibration_dir / 'model.json'}: the calibrated model {model.path} is gone: re-run calibrate")
    source = conf_path if conf_path is not None else calibration_dir / USER_CONF
    try:
        conf = source.read_text()
    except OSError as exc:
        raise InferenceError(f"{source}: cannot read the user.conf to run with: {exc}") from exc
    with atomic_dir(out_dir) as tmp:
        attempts = None
        if test.mode == "performance":
            counts = (threads, threads) if threads else _thread_counts()

            def attempt(text: str, log_dir: Path) -> None:
                in_fresh_process(benchmark, data_dir, test, calibration_dir, text, log_dir, counts)

            attempts = performance_attempts(benchmark, data_dir, test, calibration_dir, conf, tmp, attempt=attempt)
        else:
            if threads:
                _set_thread_counts(threads, threads)
            run_attempt(benchmark, data_dir, test, calibration_dir, conf, tmp)
            if test.mode in COMPLIANCE_TESTS:
                require_valid(tmp, test)
        # Each test carries its calibration: the run kind and figures behind its user.conf.
        (tmp / CALIBRATION).write_bytes((calibration_dir / CALIBRATION).read_bytes())
        model.write(tmp)
        provenance.write(tmp, data_dir, attempts=attempts)


def run_attempt(
    benchmark: Benchmark, data_dir: Path, test: LoadGenTest, calibration_dir: Path, conf: str, log_dir: Path
) -> None:
    """One LoadGen test into ``log_dir`` with ``conf`` as its user.conf; once per process (FromConfig)."""
    from benchpipe.infer.sut import CompiledPredictor, predictor_batch_sizes, start_test, sut_for

    kind, calibration = read_calibration(calibration_dir)
    model = read_model_record(calibration_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    shape, qsl = _served_inputs(benchmark, data_dir, model, kind)
    batching = calibration.batching
    predictor = CompiledPredictor(Path(model.path), shape, predictor_batch_sizes(batching))
    predictor.warm_up(WARM_UP_S)
    conf_path = log_dir / USER_CONF
    conf_path.write_text(conf)
    # An explicit audit file in every test: one in the working directory would otherwise
    # silently turn a submission run into a compliance run.
    audit_path = log_dir / AUDIT_CONFIG
    if test.mode in COMPLIANCE_TESTS:
        audit_path.write_text(audit_config(test.mode, benchmark.inference.loadgen_model))
    settings = _settings(benchmark, test, conf_path)
    sut = sut_for(test.scenario, predictor, qsl, batching)
    start_test(sut, qsl, settings, log_dir, benchmark.inference.performance_sample_count, audit_config=audit_path)
    if test.mode == "accuracy":
        write_accuracy(log_dir, qsl.labels)


def performance_attempts(
    benchmark: Benchmark, data_dir: Path, test: LoadGenTest, calibration_dir: Path, conf: str, out: Path,
    *, attempt: Callable[[str, Path], None] | None = None, loadgen_model: str | None = None,
) -> list[dict[str, Any]]:
    """Run the performance test until LoadGen judges it VALID, correcting what its reason names.

    Each attempt runs in a fresh process (``in_fresh_process``, or ``attempt(conf, log_dir)``:
    an LLM's) and logs into attempts/<n>/; the VALID one's files move up into ``out``, the
    INVALID ones stay where they are. ``test`` names LoadGen's scenario, ``loadgen_model``
    (default the benchmark's) the user.conf's key. Returns one record per attempt, for
    provenance.json. An INVALID attempt the harness cannot correct, or one after
    MAX_CORRECTIONS corrections, fails with LoadGen's reason.
    """
    if attempt is None:
        def attempt(text: str, log_dir: Path) -> None:
            in_fresh_process(benchmark, data_dir, test, calibration_dir, text, log_dir, _thread_counts())
    key = loadgen_model or benchmark.inference.loadgen_model
    records: list[dict[str, Any]] = []
    number = 1
    while True:
        attempt_dir = out / ATTEMPTS_DIR / str(number)
        attempt(conf, attempt_dir)
        detail = parse_detail_log(attempt_dir / DETAIL_LOG)
        record = _attempt_record(number, attempt_dir, detail)
        records.append(record)
        if detail.get("result_validity") == "VALID":
            _move_up(attempt_dir, out)
            record["folder"] = "."
            return records
        correction = correction_for(detail, test.scenario) if number <= MAX_CORRECTIONS else None
        if correction is None:
            raise InferenceError(invalid_message(detail, test, corrections=number - 1))
        record["correction"] = correction.to_dict()
        log.warning("%s %s: attempt %d INVALID (%s): %s %s -> %s, from %s", test.scenario, test.mode, number,
                    correction.recommendation, correction.key, correction.before, correction.after, correction.measured)
        conf = corrected_conf(conf, key, test.scenario, correction, number)
        number += 1


def _attempt_record(number: int, attempt_dir: Path, detail: DetailLog) -> dict[str, Any]:
    validity = detail.get("result_validity")
    return {
        "attempt": number,
        "folder": f"{ATTEMPTS_DIR}/{number}",
        "user_conf_sha256": sha256_file(attempt_dir / USER_CONF),  # the file LoadGen read
        "result_validity": validity,
        "invalid_reason": None if validity == "VALID" else invalid_reason(detail),
        "correction": None,
    }


def _move_up(attempt_dir: Path, out: Path) -> None:
    """The VALID attempt's files become the run's own; attempts/ stays only if it holds INVALID ones."""
    for path in attempt_dir.iterdir():
        os.replace(path, out / path.name)
    attempt_dir.rmdir()
    if not any(attempt_dir.parent.iterdir()):
        attempt_dir.parent.rmdir()


def in_fresh_process(
    benchmark: Benchmark, data_dir: Path, test: LoadGenTest, calibration_dir: Path, conf: str, log_dir: Path,
    threads: tuple[int, int],
) -> None:
    """``run_attempt`` in a process of its own, started with spawn; its exception raised here.

    LoadGen takes one FromConfig per process, so each attempt reads its user.conf in a fresh
    interpreter: the file a run leaves behind is then, byte for byte, the one LoadGen read for
    it, which setting fields on the first attempt's TestSettings would not guarantee. This
    process loads no model, so a GPU is the attempt's alone; spawn, because forking a process
    with TensorFlow's and LoadGen's threads running is unsafe. ``threads``: TensorFlow's
    (intra-op, inter-op) thread counts in the child (0: TensorFlow's default).
    """
    spawned(_attempt_in_child, f"{test.scenario} {test.mode}", log_dir, benchmark.name, data_dir, test,
            calibration_dir, conf, log_dir, threads)


def spawned(function: Callable[..., None], what: str, log_dir: Path, *args: Any) -> None:
    """``function(*args)`` in a fresh process started with spawn; its exception raised here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(function, *args)
        try:
            future.result()
        except BrokenProcessPool as exc:
            raise InferenceError(f"{what}: the process of the attempt in {log_dir} died "
                                 f"(killed, or LoadGen aborted): {exc}") from exc


def _thread_counts() -> tuple[int, int]:
    """TensorFlow's (intra-op, inter-op) thread counts as this process set them (0: TensorFlow's default)."""
    import tensorflow as tf

    return (tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads())


def _set_thread_counts(intra: int, inter: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)


def _attempt_in_child(benchmark_name: str, data_dir: Path, test: LoadGenTest, calibration_dir: Path, conf: str,
                      log_dir: Path, threads: tuple[int, int]) -> None:
    from benchpipe.contracts import registry

    intra, inter = threads
    if intra or inter:
        # Before TensorFlow runs an op, as `benchpipe infer --threads` asked of the parent.
        _set_thread_counts(intra, inter)
    run_attempt(registry.get(benchmark_name), data_dir, test, calibration_dir, conf, log_dir)


@dataclass(frozen=True)
class Correction:
    """One user.conf setting changed after an INVALID attempt, from what that attempt measured."""

    key: str  # the user.conf key (target_qps, target_latency in ms)
    before: float  # as LoadGen read it (requested_* in the detail log)
    after: float
    measured: str  # what the attempt measured, and the headroom taken from it
    recommendation: str  # LoadGen's reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The detail-log key of the latency a corrected SingleStream or MultiStream target comes from:
# the median, of a sample or of a whole query. LoadGen runs out of queries when the typical query
# is faster than the target, and on a loaded host a tail percentile (what calibration measures)
# sits far above the median: a MultiStream target of half a p99 of 2.5 ms, corrected so, ran out
# again in the TEST04 run that followed it.
_LATENCY_MEASURED = {
    "SingleStream": ("result_50.00_percentile_latency_ns", "median"),
    "MultiStream": ("result_50.00_percentile_per_query_latency_ns", "median per-query"),
}


def _offline_change(detail: DetailLog) -> tuple[float, float, str] | None:
    rate, before = detail.get("result_samples_per_second"), detail.get("requested_offline_expected_qps")
    if not rate or before is None:
        return None
    return float(before), offline_target_qps(rate), f"{rate:.1f} samples/s; target {OFFLINE_QPS_HEADROOM} x that"


def _latency_change(detail: DetailLog, scenario: str) -> tuple[float, float, str] | None:
    key, name = _LATENCY_MEASURED[scenario]
    measured = detail.get(key)
    requested = detail.get(f"requested_{scenario.replace('Stream', '_stream').lower()}_expected_latency_ns")
    if not measured or requested is None:
        return None
    return (requested / 1e6, latency_target_ms(measured),
            f"{name} latency {measured / 1e6:.3f} ms; target {LATENCY_HEADROOM} x that")


def _server_change(detail: DetailLog) -> tuple[float, float, str] | None:
    completed = detail.get("result_completed_samples_per_sec")
    scheduled = detail.get("result_scheduled_samples_per_sec")
    before = detail.get("requested_server_target_qps")
    if not completed or not scheduled or before is None or completed >= SERVER_SUSTAINED_FRACTION * scheduled:
        return None
    # As calibration's search backs off after an overloaded run.
    return (float(before), round(completed * OVERLOAD_BACKOFF, 1),
            f"{completed:.1f} samples/s completed of {scheduled:.1f} scheduled; "
            f"target {OVERLOAD_BACKOFF} x the completed rate")


def correction_for(detail: DetailLog, scenario: str) -> Correction | None:
    """The setting to change after an INVALID run, from what the run measured; None if the harness cannot.

    None too when the measured figure would not move the setting the way LoadGen asks: the run
    then says nothing a new value could be taken from.
    """
    recommendation = correctable_recommendation(detail, scenario)
    if recommendation is None:
        return None
    if scenario == "Offline":
        change = _offline_change(detail)
    elif scenario == "Server":
        change = _server_change(detail)
    else:
        change = _latency_change(detail, scenario)
    if change is None:
        return None
    before, after = change[0], change[1]
    if after <= 0 or (after >= before if recommendation.lower else after <= before):
        return None
    return Correction(recommendation.key, before, after, change[2], recommendation.text)


def corrected_conf(text: str, loadgen_model: str, scenario: str, correction: Correction, attempt: int) -> str:
    """``text`` with the corrected setting in place of its line (appended if it had none), why in comments.

    LoadGen's user.conf parser takes a line's '#' as a comment only as a token of its own, at the
    start: the notes are whole lines, each starting '# '.
    """
    prefix = f"{loadgen_model}.{scenario}"
    name = f"{prefix}.{correction.key}"
    setting = re.compile(rf"^\s*{re.escape(name)}\s*=")
    notes = [
        f"# attempt {attempt} ran with {name} = {correction.before}: LoadGen judged it INVALID: "
        f"{correction.recommendation}",
        f"# corrected by benchpipe infer from what it measured: {correction.measured}",
        _line(prefix, correction.key, correction.after),
    ]
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if setting.match(line)), len(lines))
    kept = [line for line in lines if not setting.match(line)]
    return "\n".join(kept[:at] + notes + kept[at:]) + "\n"


def invalid_message(detail: DetailLog, test: LoadGenTest, corrections: int = 0) -> str:
    """Why a timed test failed: LoadGen's verdict and reason, the p99 latency, the corrections tried."""
    validity = detail.get("result_validity")
    p99 = detail.get("result_99.00_percentile_latency_ns")
    measured = "" if p99 is None else f"; p99 latency {p99 / 1e6:.3g} ms"
    tried = f", after {corrections} correction(s) of user.conf" if corrections else ""
    return (f"{test.scenario} {test.mode}: LoadGen judged the run {validity} ({invalid_reason(detail)}){measured}"
            f"{tried}: nothing kept, run it again")


def require_valid(log_dir: Path, test: LoadGenTest) -> None:
    """A timed test that LoadGen judged INVALID fails here, so that no output is kept.

    Packaging would refuse it anyway; failing now leaves nothing on disk for a rerun to
    take as done, so the workflow's retry (or the same command again) runs the test anew
    with the same user.conf. On a shared machine one stall longer than the latency bound
    can sink a short Server run, whatever rate calibration chose.
    """
    detail = parse_detail_log(log_dir / DETAIL_LOG)
    if detail.get("result_validity") != "VALID":
        raise InferenceError(invalid_message(detail, test))


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
