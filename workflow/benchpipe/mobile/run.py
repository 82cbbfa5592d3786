"""One Mobile app task, run as the app runs it: ``benchpipe mobile run``.

The task's settings come from the app's tasks.pbtxt (``benchpipe mobile app`` resolves them into
``tasks.json``): the scenario (SingleStream, or Offline for classification) and, per run mode,
``min_query_count``, ``min_duration`` and ``max_duration``. LoadGen gets them as the app's driver
sets them (flutter/cpp/mlperf_driver.cc): min and max duration, the max enforced, the
SingleStream expected latency, and the run mode's minimum query count (Offline: samples).

The model is a converted ``.tflite`` (``benchpipe mobile convert``) served by LiteRT with the
target's delegate and threads; the harness is benchpipe's LoadGen SUT, the same as a SavedModel's.
A performance run that LoadGen does not judge VALID fails and keeps nothing; an accuracy run
scores every logged answer as the app scores its task (classification: top-1).

The run folder holds LoadGen's logs and ``mobile_run.json``: the task, run mode and settings,
the model (its conversion record), the backend (LiteRT's version, delegate, threads, batch), the
start time, and the accuracy an accuracy run scored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.errors import ConfigError, InferenceError
from benchpipe.contracts.layout import ACCURACY_LOG, DETAIL_LOG
from benchpipe.infer.litert import DelegateSpec, LiteRTPredictor
from benchpipe.infer.loadgen_run import LATENCY_HEADROOM, offline_target_qps
from benchpipe.mlcommons.mobile_app import RUN_MODES, MobileTask
from benchpipe.mobile.convert import check_model

TASKS_JSON = "tasks.json"
MOBILE_RUN = "mobile_run.json"
MODES = ("performance", "accuracy")
SCENARIOS = ("SingleStream", "Offline")
# As calibration aims a latency scenario's target below the measured latency: LoadGen
# generates min_duration / expected latency queries, and running out is INVALID.
EXPECTED_LATENCY_HEADROOM = LATENCY_HEADROOM
OFFLINE_BATCH = 32
WARM_UP_S = 0.5


def read_tasks_json(path: Path) -> dict[str, MobileTask]:
    """The tasks ``benchpipe mobile app`` resolved from the app's tasks.pbtxt."""
    try:
        data = json.loads(Path(path).read_text())
        return {task_id: MobileTask.from_dict(task) for task_id, task in data["tasks"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the resolved Mobile tasks: {exc}") from exc


@dataclass(frozen=True)
class MobileRun:
    """What ``mobile_run.json`` records of one run."""

    benchmark: str
    task_id: str
    task_name: str
    scenario: str
    mode: str
    run_mode: str
    precision: str
    min_query_count: int
    min_duration_s: float
    max_duration_s: float
    model_path: str
    model_sha256: str
    conversion: dict[str, Any]
    backend: dict[str, Any]  # name, version, delegate, delegate_path, threads, batch_size
    dataset: dict[str, Any]  # name, type, data_path, samples
    start_datetime: str
    accuracy: float | None  # normalized (0..1), accuracy runs
    accuracy_samples: int | None

    def write(self, out_dir: Path) -> None:
        (out_dir / MOBILE_RUN).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class RunRequest:
    """One ``benchpipe mobile run``: what the command line takes, and what a runtime that cannot
    run benchpipe itself (an Android device, runtime adb) reads back from a job's command."""

    benchmark: str
    data: Path
    tasks: Path  # tasks.json (``benchpipe mobile app``)
    task: str
    model: Path  # the conversion's folder: model.tflite and conversion.json
    mode: str
    run_mode: str
    out: Path
    threads: int = 1
    delegate: DelegateSpec = DelegateSpec()
    accuracy_samples: int | None = None

    def argv(self) -> list[str]:
        """The ``benchpipe`` arguments that make this request."""
        args = ["mobile", "run", "--benchmark", self.benchmark, "--data", str(self.data), "--tasks", str(self.tasks),
                "--task", self.task, "--model", str(self.model), "--mode", self.mode, "--run-mode", self.run_mode,
                "--out", str(self.out), "--threads", str(self.threads), "--delegate", self.delegate.kind]
        if self.delegate.path:
            args += ["--delegate-path", self.delegate.path]
        for key, value in sorted(self.delegate.options.items()):
            args += ["--delegate-option", f"{key}={value}"]
        if self.accuracy_samples is not None:
            args += ["--accuracy-samples", str(self.accuracy_samples)]
        return args

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--benchmark", required=True)
        parser.add_argument("--data", type=Path, required=True, help="the prepared dataset")
        parser.add_argument("--tasks", type=Path, required=True,
                            help="tasks.json, the app's tasks as `benchpipe mobile app` resolved them")
        parser.add_argument("--task", required=True, help="the app's task id, e.g. image_classification_v2")
        parser.add_argument("--model", type=Path, required=True, help="the `benchpipe mobile convert` output")
        parser.add_argument("--mode", required=True, choices=MODES)
        parser.add_argument("--run-mode", required=True, choices=RUN_MODES)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--delegate", default="cpu",
                            help="cpu, gpu, nnapi or vendor (the target's litert.delegate)")
        parser.add_argument("--delegate-path", default=None)
        parser.add_argument("--delegate-option", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--accuracy-samples", type=int, default=None)

    @classmethod
    def from_args(cls, args) -> RunRequest:
        options = {}
        for item in args.delegate_option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--delegate-option {item!r}: expected KEY=VALUE")
            options[key] = value
        return cls(args.benchmark, args.data, args.tasks, args.task, args.model, args.mode, args.run_mode, args.out,
                   args.threads, DelegateSpec(args.delegate, args.delegate_path, options), args.accuracy_samples)

    @classmethod
    def parse(cls, argv: list[str]) -> RunRequest:
        """The request a ``benchpipe mobile run ...`` command line makes (``argv`` after ``benchpipe``)."""
        import argparse

        if argv[:2] != ["mobile", "run"]:
            raise ConfigError(f"not a `benchpipe mobile run` command: {' '.join(argv[:3])}")
        parser = argparse.ArgumentParser(prog="benchpipe mobile run", exit_on_error=False)
        cls.add_arguments(parser)
        try:
            return cls.from_args(parser.parse_args(argv[2:]))
        except (argparse.ArgumentError, SystemExit) as exc:
            raise ConfigError(f"benchpipe mobile run: {exc}") from None


def read_mobile_run(run_dir: Path) -> MobileRun:
    path = Path(run_dir) / MOBILE_RUN
    try:
        return MobileRun(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise InferenceError(f"{path}: cannot read the Mobile run record: {exc}") from exc


def loadgen_settings(task: MobileTask, run_mode: str, mode: str, latency_s: float, performance_count: int):
    """LoadGen's TestSettings of ``task`` in ``run_mode``, as the app's driver sets them."""
    import mlperf_loadgen as lg

    if run_mode not in RUN_MODES:
        raise ConfigError(f"mobile.run_mode '{run_mode}' is not one of {', '.join(RUN_MODES)}")
    runs = task.runs[run_mode]
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, task.scenario)
    settings.mode = lg.TestMode.AccuracyOnly if mode == "accuracy" else lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(np.ceil(runs.min_duration_s * 1000))
    if runs.max_duration_s > 0:
        settings.max_duration_ms = int(np.ceil(runs.max_duration_s * 1000))
    settings.min_query_count = runs.min_query_count
    settings.performance_sample_count_override = performance_count
    if task.scenario == "SingleStream":
        settings.single_stream_expected_latency_ns = max(1000, int(latency_s * 1e9 * EXPECTED_LATENCY_HEADROOM))
    else:
        # One query of min_query_count samples; the rate only sizes it when min_duration is set.
        settings.offline_expected_qps = max(1.0, offline_target_qps(1.0 / max(latency_s, 1e-9)))
    return settings


def _samples(benchmark, data_dir: Path, shape: tuple[int, ...], accuracy_samples: int | None):
    from benchpipe.contracts.records import RunKind
    from benchpipe.infer.loadgen_run import sample_source

    return sample_source(benchmark, data_dir, shape, RunKind(False, 0, accuracy_samples))


def run_task(benchmark, request: RunRequest) -> MobileRun:
    """One performance or accuracy run of the request's task on its LiteRT model, into ``request.out``."""
    from benchpipe.infer.loadgen_run import write_accuracy
    from benchpipe.infer.samples import SampleLibrary
    from benchpipe.infer.sut import Batching, start_test, sut_for
    from benchpipe.results.loadgen_parser import parse_detail_log

    data_dir, tasks_json, task_id, model_dir = request.data, request.tasks, request.task, request.model
    mode, run_mode, out_dir, delegate, threads = (request.mode, request.run_mode, request.out, request.delegate,
                                                  request.threads)
    if mode not in MODES:
        raise ConfigError(f"mode '{mode}' is not one of {', '.join(MODES)}")
    tasks = read_tasks_json(tasks_json)
    if task_id not in tasks:
        raise ConfigError(f"{tasks_json}: no task '{task_id}' (tasks: {', '.join(tasks)})")
    task = tasks[task_id]
    if benchmark.mobile_dataset != task.dataset_type:
        raise ConfigError(f"{benchmark.name} answers the app's {benchmark.mobile_dataset or 'no'} tasks, "
                          f"not {task_id} ({task.dataset_type})")
    tflite, conversion = check_model(model_dir)
    shape = _tflite_input_shape(tflite)
    samples = SampleLibrary(_samples(benchmark, data_dir, shape, request.accuracy_samples))
    batch = 1 if task.scenario == "SingleStream" else OFFLINE_BATCH
    predictor = LiteRTPredictor(tflite, shape, [batch], threads=threads, delegate=delegate)
    predictor.warm_up(WARM_UP_S)
    performance_count = min(samples.total, benchmark.inference.performance_sample_count)
    settings = loadgen_settings(task, run_mode, mode, predictor.batch_seconds[batch] / batch, performance_count)
    what = f"{benchmark.name} {task_id} {run_mode} {mode} ({conversion.precision})"
    with atomic_dir(out_dir) as tmp:
        start = datetime.now(timezone.utc)
        sut = sut_for(task.scenario, predictor, samples, Batching.for_scenario(task.scenario, batch))
        start_test(sut, samples, settings, tmp, performance_count)
        accuracy = count = None
        if mode == "accuracy":
            accuracy = write_accuracy(tmp, samples.labels)
            count = _logged_samples(tmp / ACCURACY_LOG)
        else:
            detail = parse_detail_log(tmp / DETAIL_LOG)
            if detail.get("result_validity") != "VALID":
                raise InferenceError(f"{what}: LoadGen judged the run {detail.get('result_validity')}: "
                                     f"min duration met {detail.get('result_min_duration_met')}, min queries met "
                                     f"{detail.get('result_min_queries_met')}, early stopping met "
                                     f"{detail.get('early_stopping_met')}")
        record = MobileRun(
            benchmark=benchmark.name, task_id=task.id, task_name=task.name, scenario=task.scenario, mode=mode,
            run_mode=run_mode, precision=conversion.precision, min_query_count=task.runs[run_mode].min_query_count,
            min_duration_s=task.runs[run_mode].min_duration_s, max_duration_s=task.runs[run_mode].max_duration_s,
            model_path=str(tflite), model_sha256=conversion.tflite_sha256, conversion=asdict(conversion),
            backend=backend_record(delegate, threads, batch),
            # What was read, not the app's dataset of that type: a stand-in's samples say so.
            dataset={"name": samples.source.describe(), "type": task.dataset_type, "data_path": str(data_dir),
                     "samples": samples.total},
            start_datetime=start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            accuracy=accuracy, accuracy_samples=count,
        )
        record.write(tmp)
        provenance.write(tmp, data_dir)
    return record



def backend_record(delegate: DelegateSpec, threads: int, batch: int) -> dict[str, Any]:
    import ai_edge_litert

    return {"name": "LiteRT", "package": "ai-edge-litert", "version": getattr(ai_edge_litert, "__version__", "?"),
            "delegate": delegate.kind, "delegate_name": delegate.name, "delegate_path": delegate.path,
            "threads": threads, "batch_size": batch}


def _tflite_input_shape(tflite: Path) -> tuple[int, ...]:
    """The model's per-sample input shape, as the interpreter reads it."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        (detail,) = Interpreter(model_path=str(tflite)).get_input_details()
    except ValueError as exc:
        raise InferenceError(f"{tflite}: the Mobile tasks serve models of one input: {exc}") from exc
    return tuple(int(d) for d in detail["shape"][1:])


def _logged_samples(path: Path) -> int:
    return len({int(e["qsl_idx"]) for e in json.loads(path.read_text())})
