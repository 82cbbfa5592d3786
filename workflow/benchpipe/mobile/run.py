"""One Mobile app task, run as the app runs it: ``benchpipe mobile run``.

The task's settings come from the app's tasks.pbtxt (``benchpipe mobile app`` resolves them into
``tasks.json``): the scenario (SingleStream, or Offline for classification) and, per run mode,
``min_query_count``, ``min_duration`` and ``max_duration``. LoadGen gets them as the app's driver
sets them (flutter/cpp/mlperf_driver.cc): min and max duration, the max enforced, the
SingleStream expected latency, and the run mode's minimum query count (Offline: samples).

The model is a ``.tflite`` served by LiteRT with the target's delegate and threads: a benchpipe
benchmark's, converted (``benchpipe mobile convert``), for the image classification tasks; one
the user supplies (``benchpipe mobile supply``) for the others. The harness is benchpipe's
LoadGen SUT, the same as a SavedModel's. A performance run that LoadGen does not judge VALID
fails and keeps nothing; an accuracy run scores every logged answer as the app scores its task
(classification: top-1; MobileBERT: SQuAD F1 from the logged logits, ``mobile.squad``).

On a host, benchpipe runs every task of the app's dataset types in ``SERVINGS``: a benchpipe
benchmark's classifier on its prepared dataset; MobileBERT on the SQuAD files tasks.pbtxt names
(full for accuracy runs, lite for performance runs), found in ``--data`` by their names and held
to its MD5s; MobileNetEdgeTPUv2-L supplied, on the app's ImageNet folder preprocessed as the app
does, its top-1 scored against imagenet_val_full.txt; and the other image tasks on a supplied
model (SSD-MobileDET, MOSAIC, EDSR), performance runs only, on the images of the folder
tasks.pbtxt names (``mobile.images``): their accuracy is the app's binary's to score, on a phone.

The run folder holds LoadGen's logs and ``mobile_run.json``: the task, run mode and settings,
the model (its conversion record), the backend (LiteRT's version, delegate, threads, batch), the
start time, and the accuracy an accuracy run scored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.errors import ConfigError, DatasetError, InferenceError
from benchpipe.contracts.layout import ACCURACY_LOG, DETAIL_LOG
from benchpipe.infer.litert import DelegateSpec, LiteRTPredictor
from benchpipe.infer.loadgen_run import LATENCY_HEADROOM, offline_target_qps
from benchpipe.mlcommons.mobile_app import RUN_MODES, MobileTask
from benchpipe.mobile.convert import check_model

TASKS_JSON = "tasks.json"
MOBILE_RUN = "mobile_run.json"
DATASET_DIR = "dataset"  # an accuracy run's copies of the dataset files it was scored on (SQuAD's two)
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

    benchmark: str | None  # None: a task whose model the user supplies (MobileBERT), not a benchpipe benchmark's
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
    stand_in_data: bool = False  # dataset files other than the app's: run, and recorded as such

    def argv(self) -> list[str]:
        """The ``benchpipe`` arguments that make this request."""
        args = ["mobile", "run", *(["--benchmark", self.benchmark] if self.benchmark else []), "--data",
                str(self.data), "--tasks", str(self.tasks), "--task", self.task, "--model", str(self.model),
                "--mode", self.mode, "--run-mode", self.run_mode, "--out", str(self.out), "--threads",
                str(self.threads), "--delegate", self.delegate.kind]
        if self.delegate.path:
            args += ["--delegate-path", self.delegate.path]
        for key, value in sorted(self.delegate.options.items()):
            args += ["--delegate-option", f"{key}={value}"]
        if self.accuracy_samples is not None:
            args += ["--accuracy-samples", str(self.accuracy_samples)]
        if self.stand_in_data:
            args.append("--stand-in-data")
        return args

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--benchmark", default=None,
                            help="the benchpipe benchmark whose converted model serves an image classification task; "
                                 "none for a task on a supplied model (MobileBERT)")
        parser.add_argument("--data", type=Path, required=True,
                            help="the prepared dataset, or the folder holding the app's dataset files of the task")
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
        parser.add_argument("--stand-in-data", action="store_true",
                            help="take dataset files whose MD5 differs from tasks.pbtxt's: a run on them says so")

    @classmethod
    def from_args(cls, args) -> RunRequest:
        options = {}
        for item in args.delegate_option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--delegate-option {item!r}: expected KEY=VALUE")
            options[key] = value
        return cls(args.benchmark, args.data, args.tasks, args.task, args.model, args.mode, args.run_mode, args.out,
                   args.threads, DelegateSpec(args.delegate, args.delegate_path, options), args.accuracy_samples,
                   args.stand_in_data)

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


@dataclass
class Serving:
    """What one task serves, and how its accuracy run is scored, by the app's dataset type."""

    benchmark: str
    samples: Any  # infer.samples.SampleLibrary
    predictor: Any  # infer.sut.Predictor
    batch: int
    performance_count: int
    dataset: dict[str, Any]  # name, type, data_path, samples (and the files' MD5 where the app names them)
    score: Callable[[Path], tuple[float, int]]  # the run folder -> (accuracy 0..1, samples scored)
    prepared: Path | None = None  # a prepared dataset, whose manifest provenance names
    kept: tuple[Path, ...] = ()  # the dataset files an accuracy run keeps in its DATASET_DIR, to be scored again


def app_dataset_file(task: MobileTask, size: str, key: str, data_dir: Path, stand_in: bool) -> tuple[Path, bool]:
    """The app's dataset file ``key`` (input_path, groundtruth_path) of ``size`` (full, lite), found
    in ``data_dir`` by the name tasks.pbtxt gives it, and whether its MD5 is the one tasks.pbtxt
    states. Nothing is downloaded: the user places the files, as they place the model."""
    url = task.dataset_files.get(size, {}).get(key, "")
    if not url:
        raise ConfigError(f"{task.id}: tasks.pbtxt names no {size} dataset {key}")
    path = Path(data_dir) / PurePosixPath(url).name
    if not path.is_file():
        raise DatasetError(f"{path}: missing: the app's {size} dataset file of {task.id} ({url}); place it in "
                           f"{data_dir}")
    want = task.dataset_files[size].get(key.replace("_path", "_checksum"), "")
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    if want and actual != want and not stand_in:
        raise DatasetError(f"{path}: MD5 {actual}, tasks.pbtxt states {want}: not the app's {size} dataset of "
                           f"{task.id} (--stand-in-data runs on it, and the run says so)")
    return path, not want or actual == want


def _classification(benchmark, request: RunRequest, task: MobileTask, tflite: Path) -> Serving:
    from benchpipe.infer.loadgen_run import write_accuracy
    from benchpipe.infer.samples import SampleLibrary

    if benchmark.mobile_dataset != task.dataset_type:
        raise ConfigError(f"{benchmark.name} answers the app's {benchmark.mobile_dataset or 'no'} tasks, "
                          f"not {task.id} ({task.dataset_type})")
    shape = _tflite_input_shape(tflite)
    samples = SampleLibrary(_samples(benchmark, request.data, shape, request.accuracy_samples))
    batch = 1 if task.scenario == "SingleStream" else OFFLINE_BATCH
    predictor = LiteRTPredictor(tflite, shape, [batch], threads=request.threads, delegate=request.delegate)

    def score(run_dir: Path) -> tuple[float, int]:
        return write_accuracy(run_dir, samples.labels), _logged_samples(run_dir / ACCURACY_LOG)

    # What was read, not the app's dataset of that type: a stand-in's samples say so.
    dataset = {"name": samples.source.describe(), "type": task.dataset_type, "data_path": str(request.data),
               "samples": samples.total}
    return Serving(benchmark.name, samples, predictor, batch,
                   min(samples.total, benchmark.inference.performance_sample_count), dataset, score, request.data)


def _language(benchmark, request: RunRequest, task: MobileTask, tflite: Path) -> Serving:
    """MobileBERT on SQuAD v1.1: the app's sample file served as the model's three int32 inputs;
    the accuracy run scored from the logged logits and the ground truth as the app scores it."""
    from benchpipe.infer.litert import LiteRTOutputsPredictor
    from benchpipe.infer.samples import SampleLibrary
    from benchpipe.mobile import squad

    if benchmark is not None:
        raise ConfigError(f"{task.id} ({task.dataset_type}) runs the model the user supplies, not "
                          f"{benchmark.name}'s: leave out --benchmark")
    size = "full" if request.mode == "accuracy" else "lite"
    input_path, input_is_apps = app_dataset_file(task, size, "input_path", request.data, request.stand_in_data)
    source = squad.SquadSamples(input_path, squad.read_samples(input_path))
    predictor = LiteRTOutputsPredictor(tflite, threads=request.threads, delegate=request.delegate)
    if predictor.sample_shape != source.sample_shape or predictor.response[1][0] != 2:
        raise InferenceError(f"{tflite}: inputs {list(predictor.sample_shape)} and outputs "
                             f"{list(predictor.response[1])}; {task.id} feeds {list(source.sample_shape)} "
                             f"({', '.join(squad.INPUTS)}) and scores two outputs (end and start logits)")
    files = {"input": input_path.name}
    truth: dict[str, squad.SquadGroundTruth] = {}
    truth_is_apps = True
    kept: tuple[Path, ...] = ()
    if request.mode == "accuracy":
        truth_path, truth_is_apps = app_dataset_file(task, size, "groundtruth_path", request.data,
                                                     request.stand_in_data)
        truth = squad.read_ground_truth(truth_path)
        files["groundtruth"] = truth_path.name
        # The F1 is re-derived from the accuracy log and these two files, which travel with the run.
        kept = (input_path, truth_path)

    def score(run_dir: Path) -> tuple[float, int]:
        logits = squad.logged_logits(run_dir / ACCURACY_LOG, predictor.response[1])
        return squad.squad_f1(source.samples, truth, logits), len(logits)

    name = task.dataset_name if size == "full" else task.lite_dataset_name
    apps = input_is_apps and truth_is_apps
    dataset = {"name": name if apps else f"stand-in for {name}: {source.describe()}", "type": task.dataset_type,
               "data_path": str(request.data), "samples": source.total, "files": files, "app_dataset": apps}
    if kept:
        dataset["md5"] = {key: hashlib.md5(path.read_bytes()).hexdigest() for key, path in zip(files, kept)}
    return Serving(task.model_id, SampleLibrary(source), predictor, 1, source.total, dataset, score, kept=kept)


# What the app scores each image task's accuracy with: on a phone, its binary does.
APP_METRICS = {"IMAGENET": "top-1", "COCO": "mAP", "ADE20K": "mIoU", "SNUSR": "PSNR", "SQUAD": "F1"}
# The supplied models' tasks whose accuracy benchpipe scores on a host: SQuAD's F1 (mobile.squad) and
# ImageNet's top-1 (mobile.images); a benchpipe classifier's top-1 is scored too, on its own data.
SCORED_ON_HOST = ("SQUAD", "IMAGENET")


def _image(benchmark, request: RunRequest, task: MobileTask, tflite: Path) -> Serving:
    """An image task on a supplied model (SSD-MobileDET, MOSAIC, EDSR):
    its performance runs, on the images of the full dataset's folder (``mobile.images``), each
    answered empty as the app answers a performance run."""
    from benchpipe.infer.litert import LiteRTOutputsPredictor
    from benchpipe.infer.samples import SampleLibrary
    from benchpipe.mobile.images import ImageFolder

    if benchmark is not None:
        raise ConfigError(f"{task.id} ({task.dataset_type}) runs the model the user supplies, not "
                          f"{benchmark.name}'s: leave out --benchmark")
    if request.mode == "accuracy":
        raise ConfigError(f"{task.id} ({task.dataset_type}): on a host benchpipe runs its performance runs only; "
                          f"its accuracy ({APP_METRICS[task.dataset_type]}) is the app's binary's to score, on a "
                          "phone (runtime adb)")
    predictor = LiteRTOutputsPredictor(tflite, threads=request.threads, delegate=request.delegate, answer=False)
    if len(predictor.inputs) != 1 or len(predictor.inputs[0].shape) != 3:
        raise InferenceError(f"{tflite}: inputs {[list(i.shape) for i in predictor.inputs]}; {task.id} feeds one "
                             "image (height, width, channels)")
    _check_size(tflite, task, predictor.inputs[0].shape)
    folder = Path(request.data) / PurePosixPath(task.dataset_files.get("full", {}).get("input_path", "")).name
    source = ImageFolder(folder, predictor.inputs[0].shape, predictor.sample_dtype)
    dataset = {"name": f"{task.dataset_name}: {source.describe()}", "type": task.dataset_type,
               "data_path": str(request.data), "samples": source.total, "files": {"input": folder.name}}

    def score(run_dir: Path) -> tuple[float, int]:
        raise InferenceError(f"{run_dir}: {task.id} scores no accuracy on a host")

    return Serving(task.model_id, SampleLibrary(source), predictor, 1, source.total, dataset, score)


def _check_size(tflite: Path, task: MobileTask, shape: tuple[int, ...]) -> None:
    """The model takes images of the size tasks.pbtxt gives the task's model."""
    height, width = shape[:2]
    if task.image_height and task.image_width and (height, width) != (task.image_height, task.image_width):
        raise InferenceError(f"{tflite}: input {height}x{width}; tasks.pbtxt sizes {task.id}'s model "
                             f"({task.model_id}) {task.image_height}x{task.image_width}")


def _app_imagenet(benchmark, request: RunRequest, task: MobileTask, tflite: Path) -> Serving:
    """The app's own classifier (MobileNetEdgeTPUv2-L) supplied, on the app's ImageNet folder
    preprocessed as the app does (``mobile.images.imagenet_preprocess``), answering its top-1 class;
    an accuracy run scored as the app scores it (imagenet.cc: the top-1 less the task's offset
    against each image's line of imagenet_val_full.txt)."""
    from benchpipe.infer.loadgen_run import write_accuracy
    from benchpipe.infer.samples import SampleLibrary
    from benchpipe.mobile.images import AppImageNet

    shape, dtype = _tflite_input(tflite)
    if len(shape) != 3:
        raise InferenceError(f"{tflite}: input {list(shape)}; {task.id} feeds one image (height, width, channels)")
    _check_size(tflite, task, shape)
    folder = Path(request.data) / PurePosixPath(task.dataset_files.get("full", {}).get("input_path", "")).name
    files = {"input": folder.name}
    labels_file = None
    if request.mode == "accuracy":
        labels_file, _ = app_dataset_file(task, "full", "groundtruth_path", request.data, request.stand_in_data)
        files["groundtruth"] = labels_file.name
    source = AppImageNet(folder, shape, dtype, labels_file)
    samples = SampleLibrary(source)
    predictor = LiteRTPredictor(tflite, shape, [1], threads=request.threads, delegate=request.delegate)
    offset = int(task.model_offset or 0)

    def score(run_dir: Path) -> tuple[float, int]:
        # The model's class k is the dataset's k - offset (a background class first, in 1001-class models).
        return write_accuracy(run_dir, source.labels + offset), _logged_samples(run_dir / ACCURACY_LOG)

    dataset = {"name": f"{task.dataset_name}: {source.describe()}", "type": task.dataset_type,
               "data_path": str(request.data), "samples": source.total, "files": files}
    return Serving(task.model_id, samples, predictor, 1, source.total, dataset, score)


def _imagenet(benchmark, request: RunRequest, task: MobileTask, tflite: Path) -> Serving:
    """A benchpipe benchmark's converted classifier, or the app's own (MobileNetEdgeTPUv2-L) supplied."""
    return (_classification if benchmark is not None else _app_imagenet)(benchmark, request, task, tflite)


# The app's dataset types benchpipe runs on a host through LiteRT (a phone runs the app's own binary).
SERVINGS: dict[str, Callable[..., Serving]] = {"IMAGENET": _imagenet, "SQUAD": _language, "COCO": _image,
                                               "ADE20K": _image, "SNUSR": _image}


def run_task(benchmark, request: RunRequest) -> MobileRun:
    """One performance or accuracy run of the request's task on its LiteRT model, into ``request.out``.

    ``benchmark``: the benchpipe benchmark whose converted model serves an image classification
    task; None for a task on a supplied model."""
    from benchpipe.infer.sut import Batching, start_test, sut_for
    from benchpipe.results.loadgen_parser import parse_detail_log

    tasks_json, task_id, model_dir = request.tasks, request.task, request.model
    mode, run_mode, out_dir = request.mode, request.run_mode, request.out
    if mode not in MODES:
        raise ConfigError(f"mode '{mode}' is not one of {', '.join(MODES)}")
    tasks = read_tasks_json(tasks_json)
    if task_id not in tasks:
        raise ConfigError(f"{tasks_json}: no task '{task_id}' (tasks: {', '.join(tasks)})")
    task = tasks[task_id]
    serve = SERVINGS.get(task.dataset_type)
    if serve is None:
        raise ConfigError(f"{task_id} ({task.dataset_type}): on a host benchpipe runs the app's "
                          f"{', '.join(SERVINGS)} tasks; a phone (runtime adb) runs the app's binary, which has all")
    tflite, conversion = check_model(model_dir)
    serving = serve(benchmark, request, task, tflite)
    predictor, samples, batch = serving.predictor, serving.samples, serving.batch
    predictor.warm_up(WARM_UP_S)
    settings = loadgen_settings(task, run_mode, mode, predictor.batch_seconds[batch] / batch,
                                serving.performance_count)
    what = f"{serving.benchmark} {task_id} {run_mode} {mode} ({conversion.precision})"
    with atomic_dir(out_dir) as tmp:
        start = datetime.now(timezone.utc)
        sut = sut_for(task.scenario, predictor, samples, Batching.for_scenario(task.scenario, batch))
        start_test(sut, samples, settings, tmp, serving.performance_count)
        accuracy = count = None
        if mode == "accuracy":
            keep_files(serving.kept, tmp / DATASET_DIR)
            accuracy, count = serving.score(tmp)
        else:
            detail = parse_detail_log(tmp / DETAIL_LOG)
            if detail.get("result_validity") != "VALID":
                raise InferenceError(f"{what}: LoadGen judged the run {detail.get('result_validity')}: "
                                     f"min duration met {detail.get('result_min_duration_met')}, min queries met "
                                     f"{detail.get('result_min_queries_met')}, early stopping met "
                                     f"{detail.get('early_stopping_met')}")
        record = MobileRun(
            benchmark=serving.benchmark, task_id=task.id, task_name=task.name, scenario=task.scenario, mode=mode,
            run_mode=run_mode, precision=conversion.precision, min_query_count=task.runs[run_mode].min_query_count,
            min_duration_s=task.runs[run_mode].min_duration_s, max_duration_s=task.runs[run_mode].max_duration_s,
            model_path=str(tflite), model_sha256=conversion.tflite_sha256, conversion=asdict(conversion),
            backend=backend_record(request.delegate, request.threads, batch), dataset=serving.dataset,
            start_datetime=start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            accuracy=accuracy, accuracy_samples=count,
        )
        record.write(tmp)
        provenance.write(tmp, serving.prepared)
    return record


def keep_files(paths: tuple[Path, ...], into: Path) -> None:
    """Copies of the dataset files an accuracy run was scored on, under their own names."""
    import shutil

    for path in paths:
        into.mkdir(exist_ok=True)
        shutil.copyfile(path, into / path.name)


def kept_file(run_dir: Path, record: MobileRun, key: str) -> Path:
    """The dataset file ``key`` (input, groundtruth) an accuracy run kept, checked against the MD5
    its record states of it."""
    path = Path(run_dir) / DATASET_DIR / record.dataset["files"][key]
    if not path.is_file():
        raise InferenceError(f"{path}: missing: the {key} file {record.task_id}'s accuracy run was scored on")
    want = record.dataset.get("md5", {}).get(key)
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    if actual != want:
        raise InferenceError(f"{path}: MD5 {actual}, the run scored a file of MD5 {want} ({run_dir / MOBILE_RUN})")
    return path


def backend_record(delegate: DelegateSpec, threads: int, batch: int) -> dict[str, Any]:
    import ai_edge_litert

    return {"name": "LiteRT", "package": "ai-edge-litert", "version": getattr(ai_edge_litert, "__version__", "?"),
            "delegate": delegate.kind, "delegate_name": delegate.name, "delegate_path": delegate.path,
            "threads": threads, "batch_size": batch}


def _tflite_input_shape(tflite: Path) -> tuple[int, ...]:
    """The model's per-sample input shape, as the interpreter reads it."""
    return _tflite_input(tflite)[0]


def _tflite_input(tflite: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The model's per-sample input shape and its dtype, as the interpreter reads them."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(tflite)).get_input_details()
    if len(details) != 1:
        raise InferenceError(f"{tflite}: {len(details)} inputs; the Mobile app's image tasks serve models of one")
    return tuple(int(d) for d in details[0]["shape"][1:]), np.dtype(details[0]["dtype"])


def _logged_samples(path: Path) -> int:
    return len({int(e["qsl_idx"]) for e in json.loads(path.read_text())})
