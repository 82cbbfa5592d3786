"""The Mobile app's extended result JSON, from a target's runs: ``benchpipe mobile result``.

One file per (target, benchmark, precision), as one app run of one model set: a ``results`` entry
per task, with its performance and accuracy runs. Every number in it comes from the run folders'
LoadGen logs, as the app reads them (flutter/lib: ``LoadgenInfo`` and ``_calculateThroughput``):

    loadgen.query_count          result_query_count
    loadgen.latency_mean         result_mean_latency_ns / 1e9
    loadgen.latency90            result_90.00_percentile_latency_ns / 1e9
    loadgen.is_*                 result_min_duration_met, result_min_queries_met, early_stopping_met,
                                 result_validity == VALID
    throughput.value             SingleStream: 1 / latency90; Offline: measured_samples / latency90
    measured_samples             performance: queries x samples per query; accuracy: the samples
                                 the accuracy log answers
    measured_duration            LoadGen's power window (power_end - power_begin), in seconds
    accuracy.normalized          accuracy runs: top-1 over the accuracy log (accuracy.txt's figure);
                                 SQuAD: the app's F1, scored again from the accuracy log and the two
                                 dataset files the run kept (mobile.squad)

``derive_run`` is that mapping, and ``benchpipe audit`` calls it again on the tree's logs.

The file is validated against the app's own schema (``tools/extended_result_schema.json``)
before it is written. On a Linux host ``environment_info.platform`` is ``linux`` with no
platform entry (the schema knows android, ios and windows only); the host is described by the
tree's system description. An Android device fills ``environment_info.value.android`` from
``getprop`` (runtime adb).

The accuracy rule (``ACCURACY_RULES``) holds int8 to a fraction of the fp32 model's accuracy on
the same samples, as MLPerf Mobile's quality targets are stated (docs/mobile.md).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import InferenceError, ValidationError
from benchpipe.contracts.layout import ACCURACY_LOG, DETAIL_LOG
from benchpipe.mobile.run import MobileRun, read_mobile_run

RESULT_JSON = "result.json"
DEVICE_JSON = "device.json"  # an Android device's environment_info, written by runtime adb
DEVICE_LOG = "device.log"  # the app's binary's output on the device (runtime adb), its accuracy line included
# What the binary's printed accuracy is divided by to become a fraction, by the app's dataset type:
# "76.19%" (IMAGENET) and SQuAD's F1 "90.1234" are percentages; "0.2838 mAP", "0.4567 mIoU" are
# fractions already; SNUSR's "33.52 dB" is a PSNR, kept as printed.
PRINTED_SCALES = {"IMAGENET": 100.0, "SQUAD": 100.0, "COCO": 1.0, "ADE20K": 1.0, "SNUSR": 1.0}
_ACCURACY_LINE = re.compile(r"Accuracy:\s*(.*?)\s*$")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
ACCURACY_CHECK = "accuracy_check.json"
# MLPerf Mobile's accuracy targets as fractions of the FP32 model's accuracy, by the app's dataset
# type: the "Accuracy run" table of the MLPerf Mobile Inference Rules (mlcommons/mobile_open,
# rules/mobile_inference_rules.adoc, version 4.0). EDSR's (SNUSR) is absolute, 33 dB for int8:
# not a fraction, so not here.
ACCURACY_RULES = {"IMAGENET": 0.98, "COCO": 0.95, "ADE20K": 0.96, "SQUAD": 0.93}
ACCURACY_RULE_SOURCE = "MLPerf Mobile Inference Rules 4.0, Accuracy run: Accuracy Target as % of FP32"


@dataclass(frozen=True)
class AccuracyCheck:
    """int8 against fp32 on the same samples, per task."""

    task_id: str
    dataset_type: str
    fp32: float
    int8: float
    samples: int
    ratio: float
    required: float  # the rule's fraction
    passed: bool
    rule: str


def _loadgen(detail) -> dict[str, Any]:
    return {
        "query_count": int(detail.get("result_query_count")),
        "latency_mean": float(detail.get("result_mean_latency_ns")) / 1e9,
        "latency90": float(detail.get("result_90.00_percentile_latency_ns")) / 1e9,
        "is_min_duration_met": bool(detail.get("result_min_duration_met")),
        "is_min_query_met": bool(detail.get("result_min_queries_met")),
        "is_early_stopping_met": bool(detail.get("early_stopping_met")),
        "is_result_valid": detail.get("result_validity") == "VALID",
    }


def derive_run(run_dir: Path, record: MobileRun) -> dict[str, Any]:
    """One ``Run`` of the extended result from ``run_dir``'s logs (and its accuracy figure)."""
    from benchpipe.results.loadgen_parser import parse_detail_log, parse_detail_times

    detail_path = run_dir / DETAIL_LOG
    detail = parse_detail_log(detail_path)
    times = parse_detail_times(detail_path)
    duration = (times.power_ms or 0.0) / 1000.0
    dataset = {"name": record.dataset["name"], "type": record.dataset["type"],
               "data_path": record.dataset["data_path"], "groundtruth_path": ""}
    if record.mode == "accuracy":
        answered = json.loads((run_dir / ACCURACY_LOG).read_text())
        samples = len({int(e["qsl_idx"]) for e in answered})
        accuracy = run_accuracy(run_dir, record)
        if record.accuracy is not None and abs(record.accuracy - accuracy) > 1e-9:
            raise ValidationError(f"{run_dir}: mobile_run.json states accuracy {record.accuracy}, its logs give "
                                  f"{accuracy}")
        return {"throughput": None, "accuracy": {"normalized": accuracy, "formatted": f"{accuracy * 100:.2f}%"},
                "accuracy2": None, "dataset": dataset, "measured_duration": duration, "measured_samples": samples,
                "start_datetime": record.start_datetime, "loadgen": None}
    loadgen = _loadgen(detail)
    samples = loadgen["query_count"] * int(detail.get("generated_samples_per_query", 1))
    latency90 = loadgen["latency90"]
    throughput = (samples if record.scenario == "Offline" else 1.0) / latency90 if latency90 else 0.0
    return {"throughput": {"value": throughput}, "accuracy": None, "accuracy2": None, "dataset": dataset,
            "measured_duration": duration, "measured_samples": samples, "start_datetime": record.start_datetime,
            "loadgen": loadgen}


def run_accuracy(run_dir: Path, record: MobileRun) -> float:
    """An accuracy run's figure, derived again: on a phone, what the app's binary printed in its
    log (``device.log``); SQuAD's F1 from the accuracy log and the two dataset files a host run
    kept (``mobile.squad``, as the app scores it); otherwise top-1 from accuracy.txt's counts."""
    if (run_dir / DEVICE_LOG).is_file():
        log = run_dir / DEVICE_LOG
        return printed_accuracy(log.read_text(errors="replace"), PRINTED_SCALES[record.dataset["type"]], log)
    if record.dataset["type"] == "SQUAD" and "md5" in record.dataset:
        return _squad_f1(run_dir, record)
    return _logged_accuracy(run_dir)


def printed_accuracy(output: str, scale: float, log: Path) -> float:
    """The figure of the app binary's last ``Accuracy: ...`` line, as a fraction: divided by
    ``scale`` (PRINTED_SCALES), or by 100 when it is printed with a %. An error names ``log``."""
    lines = [m.group(1) for m in map(_ACCURACY_LINE.search, output.splitlines()) if m]
    if not lines:
        raise InferenceError(f"{log}: the app's binary printed no 'Accuracy: ...' line in an accuracy run")
    number = _NUMBER.search(lines[-1])
    if number is None:
        raise InferenceError(f"{log}: the app's binary scored nothing: 'Accuracy: {lines[-1]}'")
    return float(number.group()) / (100.0 if lines[-1][number.end():].lstrip().startswith("%") else scale)


def _squad_f1(run_dir: Path, record: MobileRun) -> float:
    from benchpipe.mobile import squad
    from benchpipe.mobile.run import kept_file

    samples = squad.read_samples(kept_file(run_dir, record, "input"))
    truth = squad.read_ground_truth(kept_file(run_dir, record, "groundtruth"))
    logits = squad.logged_logits(run_dir / ACCURACY_LOG, (2, len(samples[0].input_ids)))
    return squad.squad_f1(samples, truth, logits)


def _logged_accuracy(run_dir: Path) -> float:
    """Top-1 as accuracy.txt counts it against the labels the run scored with: good / total."""
    import re

    from benchpipe.contracts.layout import ACCURACY_TXT

    path = run_dir / ACCURACY_TXT
    match = re.search(r"\bgood=(\d+), total=(\d+)", path.read_text())
    if not match or not int(match.group(2)):
        raise ValidationError(f"{path}: no 'good=N, total=M' counts of scored samples")
    return int(match.group(1)) / int(match.group(2))


def accuracy_checks(fp32_runs: dict[str, tuple[Path, MobileRun]],
                    int8_runs: dict[str, tuple[Path, MobileRun]]) -> list[AccuracyCheck]:
    """Per task with both, int8's accuracy against fp32's on the same samples and the task's rule."""
    checks = []
    for task_id, (int8_dir, int8) in sorted(int8_runs.items()):
        if task_id not in fp32_runs:
            raise ValidationError(f"{int8_dir}: an int8 accuracy run of {task_id} without its fp32 reference: "
                                  "mobile.precisions must include fp32")
        fp32_dir, fp32 = fp32_runs[task_id]
        if fp32.accuracy_samples != int8.accuracy_samples or fp32.dataset["samples"] != int8.dataset["samples"]:
            raise ValidationError(f"{int8_dir}: {int8.accuracy_samples} samples scored, the fp32 run "
                                  f"{fp32_dir} scored {fp32.accuracy_samples}: not the same samples")
        required = ACCURACY_RULES.get(int8.dataset["type"])
        if required is None:
            raise ValidationError(f"{int8_dir}: no accuracy rule for the app's {int8.dataset['type']} tasks")
        # Both figures derived again from the runs' logs, not taken from their records.
        fp32_accuracy, int8_accuracy = run_accuracy(fp32_dir, fp32), run_accuracy(int8_dir, int8)
        ratio = int8_accuracy / fp32_accuracy if fp32_accuracy else 0.0
        checks.append(AccuracyCheck(task_id, int8.dataset["type"], fp32_accuracy, int8_accuracy,
                                    int(int8.accuracy_samples or 0), ratio, required, ratio >= required,
                                    ACCURACY_RULE_SOURCE))
    return checks


def _result_entry(task_runs: dict[str, tuple[Path, MobileRun]], platform_backend: dict[str, Any]) -> dict[str, Any]:
    perf = task_runs.get("performance")
    acc = task_runs.get("accuracy")
    first = (perf or acc)[1]
    backend = first.backend
    threads = str(backend["threads"])
    return {
        "benchmark_id": first.task_id,
        "benchmark_name": first.task_name,
        "loadgen_scenario": first.scenario,
        "backend_settings": {
            "accelerator_code": backend["delegate"],
            "accelerator_desc": platform_backend["accelerator_desc"],
            "framework": f"LiteRT {backend['version']}",
            "delegate": backend["delegate_name"],
            "model_path": Path(first.model_path).name,
            "batch_size": int(backend["batch_size"]),
            "extra_settings": [{"id": "num_threads", "name": "Number of threads", "value": threads,
                                "value_name": f"{threads} threads"}],
        },
        "backend_info": {"filename": platform_backend["filename"], "vendor_name": platform_backend["vendor"],
                         "backend_name": "LiteRT", "accelerator_name": platform_backend["accelerator_desc"]},
        "performance_run": derive_run(perf[0], perf[1]) if perf else None,
        "accuracy_run": derive_run(acc[0], acc[1]) if acc else None,
        "min_duration": first.min_duration_s,
        "min_samples": first.min_query_count,
    }


def collect_runs(run_dirs: list[Path]) -> dict[str, dict[str, tuple[Path, MobileRun]]]:
    """task id -> mode -> (folder, record), refusing two runs of one task and mode."""
    found: dict[str, dict[str, tuple[Path, MobileRun]]] = {}
    for run_dir in run_dirs:
        record = read_mobile_run(run_dir)
        slot = found.setdefault(record.task_id, {})
        if record.mode in slot:
            raise ValidationError(f"{run_dir}: a second {record.mode} run of {record.task_id} "
                                  f"(the first: {slot[record.mode][0]})")
        slot[record.mode] = (run_dir, record)
    return found


def linux_environment() -> dict[str, Any]:
    return {"platform": "linux", "value": {"android": None, "ios": None, "windows": None}}


def extended_result(run_dirs: list[Path], *, environment: dict[str, Any], build: dict[str, Any],
                    accelerator_desc: str, backend_filename: str = "ai_edge_litert",
                    vendor: str = "Google") -> dict[str, Any]:
    """The extended result of one model set's runs (one precision of one benchmark on one target)."""
    runs = collect_runs(run_dirs)
    if not runs:
        raise ValidationError("no Mobile runs to put in a result")
    records = [r for modes in runs.values() for _, r in modes.values()]
    precisions = {r.precision for r in records}
    if len(precisions) != 1:
        raise ValidationError(f"one result holds one precision, these runs have {sorted(precisions)}")
    platform_backend = {"accelerator_desc": accelerator_desc, "filename": backend_filename, "vendor": vendor}
    # In task id order: the same runs give the same file, whatever order they were named in.
    results = [_result_entry(runs[task], platform_backend) for task in sorted(runs)]
    latest = max(r.start_datetime for r in records)
    # The same runs give the same file: the uuid is derived from the models and runs it holds.
    key = "|".join(sorted(f"{r.task_id}/{r.mode}/{r.model_sha256}/{r.start_datetime}" for r in records))
    return {
        "meta": {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"benchpipe:mobile:{key}")), "creation_date": latest,
                 "upload_date": None},
        "results": results,
        "environment_info": environment,
        "build_info": build,
    }


def build_info(*, version: str, commit: str, branch: str, dirty: bool, build_date: str,
               official: bool) -> dict[str, Any]:
    """The app's build_info for benchpipe, the program that ran the tasks."""
    return {"version": version, "build_number": "0", "build_date": build_date, "official_release_flag": official,
            "dev_test_flag": not official, "backend_list": ["LiteRT"], "git_branch": branch, "git_commit": commit,
            "git_dirty_flag": dirty}


def write_result(out: Path, result: dict[str, Any], checks: list[AccuracyCheck] | None = None) -> None:
    (out / RESULT_JSON).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    if checks is not None:
        (out / ACCURACY_CHECK).write_text(json.dumps([asdict(c) for c in checks], indent=2, sort_keys=True) + "\n")


def accelerator_description(target) -> str:
    """What backend_settings.accelerator_desc says of a target's delegate."""
    litert = target.litert
    if litert.delegate == "vendor":
        return f"vendor delegate {Path(str(litert.delegate_path)).name}"
    return {"cpu": "CPU (XNNPACK)", "gpu": "GPU", "nnapi": "NNAPI"}[litert.delegate]


def device_environment(run_dirs: list[Path]) -> dict[str, Any]:
    """environment_info: an Android device's (runtime adb wrote device.json in each run), else
    this Linux host's."""
    devices = [json.loads((d / DEVICE_JSON).read_text()) for d in run_dirs if (d / DEVICE_JSON).is_file()]
    if not devices:
        return linux_environment()
    if len(devices) != len(run_dirs) or any(d != devices[0] for d in devices):
        raise ValidationError(f"{run_dirs[0].parent}: the runs of one result ran on different devices")
    return {"platform": "android", "value": {"android": devices[0], "ios": None, "windows": None}}


def target_result(app_dir: Path, run_dirs: list[Path], reference_dirs: list[Path], *, accelerator_desc: str,
                  official: bool) -> tuple[dict[str, Any], list[AccuracyCheck] | None]:
    """The extended result of ``run_dirs`` (validated against the app's schema) and, for int8,
    its accuracy checks against the fp32 runs in ``reference_dirs`` (None for fp32)."""
    from benchpipe import provenance
    from benchpipe.mlcommons.mobile_app import validate_result

    records = {d: read_mobile_run(d) for d in run_dirs}
    first = next(iter(records.values()))
    fields = provenance.read(run_dirs[0])
    latest = max(r.start_datetime for r in records.values())
    build = build_info(version=str(fields["benchpipe_version"]), commit=str(fields["code_commit"] or ""), branch="",
                       dirty=bool(fields["code_dirty"]), build_date=latest, official=official)
    result = extended_result(run_dirs, environment=device_environment(run_dirs), build=build,
                             accelerator_desc=accelerator_desc)
    validate_result(app_dir, result, f"the extended result of {first.benchmark} {first.precision}")
    checks = None
    if first.precision == "int8":
        accuracy = {r.task_id: (d, r) for d, r in records.items() if r.mode == "accuracy"}
        fp32 = {}
        for d in reference_dirs:
            r = read_mobile_run(d)
            if r.precision == "fp32" and r.mode == "accuracy":
                fp32[r.task_id] = (d, r)
        checks = accuracy_checks(fp32, accuracy)
    return result, checks

