"""LoadGen tests, one per process: a calibration per scenario, then each test from its user.conf.

A scenario's calibration (``benchpipe calibrate``) measures the served model through LoadGen
and writes the ``user.conf`` that every test of that scenario then runs with: the
performance and accuracy runs and, in the closed division, the TEST01 and TEST04
compliance runs, which must run exactly as the submission run does. Each test writes its
logs atomically into one directory.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.benchmark import Benchmark
from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.layout import ACCURACY_LOG, ACCURACY_TXT, AUDIT_CONFIG, CALIBRATION, USER_CONF
from benchpipe.contracts.records import RunKind, ServedModel, read_model_record
from benchpipe.contracts.rounds import COMPLIANCE_TESTS
from benchpipe.infer.calibrate import SERVER_COALESCE_QUERIES
from benchpipe.infer.compliance import audit_config
from benchpipe.infer.models import input_sample_shape
from benchpipe.infer.sut import RESPONSE_DTYPE, SCENARIOS

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
            raise InferenceError(f"{benchmark.name}: the model takes samples of shape {sample_shape}, not square images")
        return ImageNetValSamples(data_dir, sample_shape[0], kind.accuracy_samples)
    return ParquetSamples(data_dir, "eval", kind.accuracy_samples)


def _line(prefix: str, key: str, value: Any) -> str:
    return f"{prefix}.{key} = {value}"


def user_conf(benchmark: Benchmark, scenario: str, kind: RunKind, calibration) -> str:
    """The user.conf of every test of this scenario; the calibration's figures in comments."""
    task = benchmark.inference
    prefix = f"{task.loadgen_model}.{scenario}"
    lines = [f"# benchpipe {kind.label}"]
    lines.append(_line(prefix, "min_duration", kind.min_duration_ms))
    lines.append(_line(prefix, "performance_sample_count_override", task.performance_sample_count))
    if scenario == "Offline":
        lines.append(f"# {calibration.offline_qps:.1f} samples/s measured; target {OFFLINE_QPS_HEADROOM} x that")
        lines.append(_line(prefix, "target_qps", round(calibration.offline_qps * OFFLINE_QPS_HEADROOM, 1)))
    elif scenario in ("SingleStream", "MultiStream"):
        measured = (calibration.single_stream_latency_ns if scenario == "SingleStream"
                    else calibration.multi_stream_latency_ns)
        lines.append(f"# {measured / 1e6:.3f} ms measured; target {LATENCY_HEADROOM} x that")
        lines.append(_line(prefix, "target_latency", round(max(measured * LATENCY_HEADROOM / 1e6, 0.001), 3)))
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
    benchmark: Benchmark, data_dir: Path, test: LoadGenTest, calibration_dir: Path, out_dir: Path
) -> None:
    """One LoadGen test with the scenario's calibrated user.conf, serving the calibrated model."""
    from benchpipe.infer.sut import CompiledPredictor, predictor_batch_sizes, start_test, sut_for

    kind, calibration = read_calibration(calibration_dir)
    model = read_model_record(calibration_dir)
    if not Path(model.path).is_dir():
        raise InferenceError(f"{calibration_dir / 'model.json'}: the calibrated model {model.path} is gone: re-run calibrate")
    with atomic_dir(out_dir) as tmp:
        shape, qsl = _served_inputs(benchmark, data_dir, model, kind)
        batching = calibration.batching
        predictor = CompiledPredictor(Path(model.path), shape, predictor_batch_sizes(batching))
        predictor.warm_up(WARM_UP_S)
        conf_path = tmp / USER_CONF
        conf_path.write_bytes((calibration_dir / USER_CONF).read_bytes())
        # Each test carries its calibration: the run kind and figures behind its user.conf.
        (tmp / CALIBRATION).write_bytes((calibration_dir / CALIBRATION).read_bytes())
        # An explicit audit file in every test: one in the working directory would otherwise
        # silently turn a submission run into a compliance run.
        audit_path = tmp / AUDIT_CONFIG
        if test.mode in COMPLIANCE_TESTS:
            audit_path.write_text(audit_config(test.mode, benchmark.inference.loadgen_model))
        settings = _settings(benchmark, test, conf_path)
        sut = sut_for(test.scenario, predictor, qsl, batching)
        start_test(sut, qsl, settings, tmp, benchmark.inference.performance_sample_count, audit_config=audit_path)
        if test.mode == "accuracy":
            write_accuracy(tmp, qsl.labels)
        else:
            require_valid(tmp, test)
        model.write(tmp)
        provenance.write(tmp, data_dir)


def require_valid(log_dir: Path, test: LoadGenTest) -> None:
    """A timed test that LoadGen judged INVALID fails here, so that no output is kept.

    Packaging would refuse it anyway; failing now leaves nothing on disk for a rerun to
    take as done, so the workflow's retry (or the same command again) runs the test anew
    with the same calibrated user.conf. On a shared machine one stall longer than the
    latency bound can sink a short Server run, whatever rate calibration chose.
    """
    from benchpipe.contracts.layout import DETAIL_LOG
    from benchpipe.infer.validity import invalid_reason
    from benchpipe.results.loadgen_parser import parse_detail_log

    detail = parse_detail_log(log_dir / DETAIL_LOG)
    validity = detail.get("result_validity")
    if validity != "VALID":
        p99 = detail.get("result_99.00_percentile_latency_ns")
        measured = "" if p99 is None else f"; p99 latency {p99 / 1e6:.3g} ms"
        raise InferenceError(f"{test.scenario} {test.mode}: LoadGen judged the run {validity} "
                             f"({invalid_reason(detail)}){measured}: nothing kept, run it again")


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
