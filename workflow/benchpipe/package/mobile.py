"""The tree's ``mobile/`` section: each Mobile target's results as the app writes them, with their logs.

    mobile/<target>/system.json                                   the host's system description
                                                                  (an Android device: its getprop record)
    mobile/<target>/<benchmark>/<precision>/result.json           the app's extended result JSON
    mobile/<target>/<benchmark>/<precision>/accuracy_check.json   int8: against fp32, per task
    mobile/<target>/<benchmark>/<precision>/model/conversion.json  the .tflite's conversion record
    mobile/<target>/<benchmark>/<precision>/<task>/<mode>/        LoadGen's logs and mobile_run.json
    mobile/<target>/<model>/<precision>/<task>/accuracy/dataset/  SQuAD: the two files its F1 is scored on
    benchpipe/mobile_app/                                         the app files the results were made
                                                                  and validated with, and tasks.json

Before anything is written every result is checked (``check_results``): each configured task ran in
both modes, every performance run is VALID, ``result.json`` validates against the app's schema and
equals a result derived again from the logs (SQuAD's F1 scored again from the files the run kept,
their MD5s those the run states, and tasks.pbtxt's where it says it ran on the app's dataset), int8
meets the task's accuracy rule against fp32 on the same samples, and a submission (mobile.official)
ran the normal run mode on every sample of the app's own dataset files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts import registry
from benchpipe.contracts.config import mobile_benchmarks, mobile_run_mode
from benchpipe.contracts.errors import BenchpipeError, ValidationError
from benchpipe.contracts.layout import ACCURACY_LOG, ACCURACY_TXT, DETAIL_LOG, SUMMARY_LOG
from benchpipe.mlcommons.mobile_app import APP_FILES
from benchpipe.mobile.convert import CONVERSION
from benchpipe.mobile.result import ACCURACY_CHECK, DEVICE_JSON, DEVICE_LOG, RESULT_JSON, target_result
from benchpipe.mobile.run import DATASET_DIR, MOBILE_RUN, TASKS_JSON, read_mobile_run, read_tasks_json
from benchpipe.package.files import copy_file
from benchpipe.provenance import PROVENANCE_FILE

MOBILE_DIR = "mobile"
APP_DIR = "benchpipe/mobile_app"
MODES = ("performance", "accuracy")


@dataclass(frozen=True)
class MobileResult:
    """One (target, benchmark, precision): its runs' folders and its result folder under runs/."""

    target: str
    benchmark: str
    precision: str
    runs: dict[tuple[str, str], Path]  # (task id, mode) -> run folder
    result_dir: Path
    model_dir: Path  # the conversion's folder (benchpipe mobile convert)


def _results(settings: dict[str, Any], app_dir: Path,
             where: Callable[[str, str, str], tuple[Path, Path, Path]]) -> list[MobileResult]:
    """What the config asks of the Mobile family; ``where(target, benchmark, precision)`` gives the
    (runs' base, result folder, conversion folder) of each result. A supplied model
    (mobile.supplied) stands where a benchmark does, with its own precisions, tasks and modes."""
    mobile = settings["mobile"]
    if not mobile["targets"]:
        return []
    asked = [(benchmark, list(mobile["precisions"]), _chosen_tasks(settings, app_dir, benchmark), list(MODES))
             for benchmark in mobile_benchmarks(settings)]
    for name, entry in (mobile.get("supplied") or {}).items():
        precisions = [p for p in ("fp32", "int8") if p in entry]
        asked.append((name, precisions, list(entry["tasks"]), list(entry.get("modes") or MODES)))
    found = []
    for target in mobile["targets"]:
        for benchmark, precisions, tasks, modes in asked:
            for precision in precisions:
                base, result_dir, model_dir = where(target, benchmark, precision)
                runs = {(t, mode): base / t / mode for t in tasks for mode in modes}
                found.append(MobileResult(target, benchmark, precision, runs, result_dir, model_dir))
    return found


def expected_results(settings: dict[str, Any], runs_dir: Path, app_dir: Path) -> list[MobileResult]:
    """What the config asks of the Mobile family, as folders under ``runs_dir``."""
    supplied = settings["mobile"].get("supplied") or {}

    def where(target: str, benchmark: str, precision: str) -> tuple[Path, Path, Path]:
        base = runs_dir / target / benchmark / "mobile" / precision
        models = runs_dir / "tflite" / ("supplied" if benchmark in supplied else "")
        return base, base / "result", models / benchmark / precision

    return _results(settings, app_dir, where)


def tree_results(settings: dict[str, Any], tree: Path) -> list[MobileResult]:
    """What the config asks of the Mobile family, as folders of the tree's ``mobile/`` section."""
    def where(target: str, benchmark: str, precision: str) -> tuple[Path, Path, Path]:
        base = tree / MOBILE_DIR / target / benchmark / precision
        return base, base, base / "model"

    return _results(settings, tree / APP_DIR, where)


def _chosen_tasks(settings: dict[str, Any], app_dir: Path, benchmark: str) -> list[str]:
    """mobile.tasks, each checked against the app's tasks.json: a task of the benchmark's kind."""
    from benchpipe.mobile.app import check_required

    tasks = read_tasks_json(app_dir / TASKS_JSON)
    kind = registry.get(benchmark).mobile_dataset
    check_required(tasks, [(t, str(kind)) for t in settings["mobile"]["tasks"]], app_dir / TASKS_JSON)
    return list(settings["mobile"]["tasks"])


def check_models(results: list[MobileResult]) -> None:
    """Every run served the .tflite its precision's conversion record names."""
    from benchpipe.mobile.convert import read_conversion

    for result in results:
        want = read_conversion(result.model_dir).tflite_sha256
        for run_dir in result.runs.values():
            have = read_mobile_run(run_dir).model_sha256
            if have != want:
                raise ValidationError(f"{run_dir / MOBILE_RUN}: model sha256 {have}, the {result.precision} "
                                      f"conversion ({result.model_dir / CONVERSION}) made {want}")


def check_results(settings: dict[str, Any], results: list[MobileResult], app_dir: Path,
                  failures: list[str] | None = None) -> list[dict[str, Any]]:
    """Every check of the module docstring; the accuracy checks, for checks.json. The first
    failure raises, unless ``failures`` collects each result's first (the audit reports them all)."""
    if not results:
        return []  # no Mobile target: no app files were fetched either
    tasks = read_tasks_json(app_dir / TASKS_JSON)
    by_key = {(r.target, r.benchmark, r.precision): r for r in results}
    checks: list[dict[str, Any]] = []
    for result in results:
        try:
            checks += _check_result(settings, result, by_key, app_dir, tasks)
        except BenchpipeError as exc:
            if failures is None:
                raise
            failures.append(str(exc))
    return checks


def _check_result(settings: dict[str, Any], result: MobileResult, by_key: dict[tuple[str, str, str], MobileResult],
                  app_dir: Path, tasks: dict[str, Any]) -> list[dict[str, Any]]:
    mobile = settings["mobile"]
    run_mode = mobile_run_mode(settings)
    where = f"mobile {result.target}/{result.benchmark}/{result.precision}"
    for (task, mode), run_dir in result.runs.items():
        if not (run_dir / MOBILE_RUN).is_file():
            raise ValidationError(f"{run_dir}: missing: {where} has no {mode} run of the app's task {task}")
        record = read_mobile_run(run_dir)
        if record.run_mode != run_mode:
            raise ValidationError(f"{run_dir / MOBILE_RUN}: run mode {record.run_mode}, the config asks {run_mode}"
                                  + (" (mobile.official runs normal)" if mobile["official"] else ""))
        if mobile["official"] and mode == "accuracy" and record.accuracy_samples != record.dataset["samples"]:
            raise ValidationError(f"{run_dir / MOBILE_RUN}: scored {record.accuracy_samples} of "
                                  f"{record.dataset['samples']} samples: a submission scores every one")
        if mobile["official"] and record.dataset.get("app_dataset") is False:
            raise ValidationError(f"{run_dir / MOBILE_RUN}: ran on {record.dataset['name']}: a submission runs "
                                  "on the app's dataset files")
        _check_app_files(run_dir, record, tasks)
    stated_path = result.result_dir / RESULT_JSON
    if not stated_path.is_file():
        raise ValidationError(f"{stated_path}: missing: {where} has no extended result")
    fp32 = by_key.get((result.target, result.benchmark, "fp32"))
    reference = [d for (_, mode), d in fp32.runs.items() if mode == "accuracy"] if (
        fp32 is not None and result.precision == "int8") else []
    derived, accuracy = target_result(app_dir, list(result.runs.values()), reference,
                                      accelerator_desc=_stated_accelerator(stated_path),
                                      official=mobile["official"])
    stated = json.loads(stated_path.read_text())
    if stated != derived:
        raise ValidationError(f"{stated_path}: differs from the result derived again from its runs' logs "
                              f"({_first_difference(stated, derived)})")
    for entry in stated["results"]:
        run = entry["performance_run"]
        if run is not None and not run["loadgen"]["is_result_valid"]:
            raise ValidationError(f"{stated_path}: {entry['benchmark_id']}'s performance run is not VALID")
    checks = []
    for check in accuracy or []:
        if not check.passed:
            raise ValidationError(
                f"{where}: {check.task_id}: int8 accuracy {check.int8:.4f} is {check.ratio:.1%} of fp32's "
                f"{check.fp32:.4f} on the same {check.samples} samples; the rule asks at least "
                f"{check.required:.0%} ({check.rule})")
        checks.append({"target": result.target, "benchmark": result.benchmark, **check.__dict__})
    return checks


def _check_app_files(run_dir: Path, record, tasks: dict[str, Any]) -> None:
    """A run that says it was scored on the app's dataset files kept files of tasks.pbtxt's MD5s."""
    if not record.dataset.get("app_dataset") or "md5" not in record.dataset:
        return
    stated = tasks[record.task_id].dataset_files.get("full", {}) if record.task_id in tasks else {}
    for key, md5 in sorted(record.dataset["md5"].items()):
        want = stated.get(f"{key}_checksum")
        if want and md5 != want:
            raise ValidationError(f"{run_dir / MOBILE_RUN}: says it ran on the app's dataset, but its {key} file "
                                  f"has MD5 {md5}; tasks.pbtxt states {want}")


def _stated_accelerator(path: Path) -> str:
    # Not a number the logs hold: the target's delegate as `benchpipe mobile result` described it.
    results = json.loads(path.read_text())["results"]
    return results[0]["backend_settings"]["accelerator_desc"] if results else ""


def _first_difference(stated: Any, derived: Any, where: str = "") -> str:
    if isinstance(stated, dict) and isinstance(derived, dict):
        for key in sorted(set(stated) | set(derived)):
            if stated.get(key) != derived.get(key):
                return _first_difference(stated.get(key), derived.get(key), f"{where}/{key}")
    if isinstance(stated, list) and isinstance(derived, list) and len(stated) == len(derived):
        for i, (a, b) in enumerate(zip(stated, derived)):
            if a != b:
                return _first_difference(a, b, f"{where}/{i}")
    return f"{where or '/'}: stated {stated!r}, derived {derived!r}"


def write_mobile(root: Path, results: list[MobileResult], app_dir: Path, systems: dict[str, Path]) -> None:
    """The ``mobile/`` section and the app files into the tree at ``root``."""
    for result in results:
        base = root / MOBILE_DIR / result.target / result.benchmark / result.precision
        copy_file(result.result_dir / RESULT_JSON, base / RESULT_JSON)
        if (result.result_dir / ACCURACY_CHECK).is_file():
            copy_file(result.result_dir / ACCURACY_CHECK, base / ACCURACY_CHECK)
        copy_file(result.model_dir / CONVERSION, base / "model" / CONVERSION)
        for (task, mode), run_dir in result.runs.items():
            names = [SUMMARY_LOG, DETAIL_LOG, MOBILE_RUN, DEVICE_JSON, DEVICE_LOG, PROVENANCE_FILE]
            if mode == "accuracy":
                names += [ACCURACY_TXT, ACCURACY_LOG]
            for name in names:
                if (run_dir / name).is_file():
                    copy_file(run_dir / name, base / task / mode / name)
            if mode == "accuracy" and (run_dir / DATASET_DIR).is_dir():
                for path in sorted((run_dir / DATASET_DIR).iterdir()):
                    copy_file(path, base / task / mode / DATASET_DIR / path.name)
    for target, path in systems.items():
        copy_file(path, root / MOBILE_DIR / target / "system.json")
    for rel in (*APP_FILES, TASKS_JSON):
        copy_file(app_dir / rel, root / APP_DIR / rel)


def summary(results: list[MobileResult]) -> list[dict[str, Any]]:
    """Per result, what checks.json states of it."""
    return [{"target": r.target, "benchmark": r.benchmark, "precision": r.precision,
             "tasks": sorted({task for task, _ in r.runs})} for r in results]

