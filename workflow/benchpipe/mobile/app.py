"""The Mobile app's files in one folder, and its tasks resolved: ``benchpipe mobile app``.

From the user's checkout of mlcommons/mobile_app_open (``mobile.app``), or else fetched at the
pinned commit (``benchpipe.mlcommons.mobile_app.APP_COMMIT``) through the datasets' checksummed
cache, trying ``mobile.app_mirrors`` (base URLs holding the files at the same relative paths) in
order. The folder holds the three files at their repository paths and ``tasks.json``: every task
of tasks.pbtxt, parsed through the app's proto, with where the files came from and their sha256.
Jobs read ``tasks.json``; only this step needs protoc.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.hashing import sha256_file
from benchpipe.mlcommons.mobile_app import (
    APP_COMMIT,
    APP_FILES,
    APP_REPOSITORY,
    TASKS_PBTXT,
    MobileTask,
    app_file,
    app_sources,
    read_tasks,
)
from benchpipe.mobile.run import TASKS_JSON


def _copy_app(app: Path | None, mirrors: tuple[str, ...], cache_dir: Path, offline: bool, out: Path) -> str:
    """The three files into ``out`` at their repository paths; returns where they came from."""
    from benchpipe.datasets.fetch import cached_source

    if app is not None:
        for rel in APP_FILES:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(app_file(app, rel), out / rel)
        return f"checkout {Path(app).resolve()}"
    for rel, source in zip(APP_FILES, app_sources(mirrors), strict=True):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached_source(source, cache_dir, offline=offline), out / rel)
    return f"{APP_REPOSITORY} at {APP_COMMIT}"


def resolve(app: Path | None, mirrors: tuple[str, ...], cache_dir: Path, offline: bool = False
            ) -> dict[str, MobileTask]:
    """The app's tasks, from the checkout or the cache (fetched if missing), without writing a folder."""
    with tempfile.TemporaryDirectory(prefix="benchpipe-mobile-app-") as tmp:
        _copy_app(app, mirrors, cache_dir, offline, Path(tmp))
        return read_tasks(Path(tmp))


def check_required(tasks: dict[str, MobileTask], required: list[tuple[str, str]], where: Path | str) -> None:
    """Each (task id, dataset type) the config runs is a task of the app's file on that dataset
    type, in a scenario benchpipe runs (SingleStream, Offline)."""
    from benchpipe.contracts.errors import ConfigError
    from benchpipe.mobile.run import SCENARIOS

    for task_id, kind in required:
        fitting = sorted(t.id for t in tasks.values() if t.dataset_type == kind and t.scenario in SCENARIOS)
        task = tasks.get(task_id)
        if task is None or task.dataset_type != kind or task.scenario not in SCENARIOS:
            found = "no such task" if task is None else f"a {task.dataset_type} task in {task.scenario}"
            raise ConfigError(f"mobile.tasks: {task_id} is {found} in {where}; the Mobile benchmarks answer its "
                              f"{kind} tasks: {', '.join(fitting) or 'none'}")


def check_supplied(tasks: dict[str, MobileTask], supplied: list[tuple[str, str, bool]], where: Path | str,
                   on_host: bool = True) -> None:
    """Each (supplied model, task id, accuracy scored on a host) of the config is a task of the
    app's file in a scenario benchpipe runs, of a dataset type a host runs (``on_host``: a
    LiteRT target runs it; a phone runs the app's binary, which has them all), and one whose
    accuracy a host scores if asked to."""
    from benchpipe.contracts.errors import ConfigError
    from benchpipe.mobile.run import APP_METRICS, SCENARIOS, SCORED_ON_HOST, SERVINGS

    def runs(task: MobileTask) -> bool:
        return task.scenario in SCENARIOS and (not on_host or task.dataset_type in SERVINGS)

    for model, task_id, scored in supplied:
        task = tasks.get(task_id)
        if task is None or not runs(task):
            found = "no such task" if task is None else f"a {task.dataset_type} task in {task.scenario}"
            runnable = sorted(t.id for t in tasks.values() if runs(t))
            raise ConfigError(f"mobile.supplied.{model}.tasks: {task_id} is {found} in {where}; the app's tasks "
                              f"benchpipe runs{' on a host' if on_host else ''}: {', '.join(runnable)}")
        if scored and task.dataset_type not in SCORED_ON_HOST:
            raise ConfigError(f"mobile.supplied.{model}.modes: {task_id} is a {task.dataset_type} task, whose "
                              f"accuracy ({APP_METRICS.get(task.dataset_type, '?')}) the app's binary scores on a "
                              "phone (runtime adb), not benchpipe on a host: run modes [performance] on a host")


def materialize(out: Path, *, app: Path | None, mirrors: tuple[str, ...], cache_dir: Path,
                offline: bool = False, required: list[tuple[str, str]] | None = None,
                supplied: list[tuple[str, str, bool]] | None = None, supplied_on_host: bool = True) -> dict[str, Any]:
    """Write ``out``: the app's three files and tasks.json, once ``required`` (task id, dataset
    type) pairs and ``supplied`` models' tasks (``check_supplied``) are found there. Returns
    tasks.json's content."""
    with atomic_dir(out) as tmp:
        origin = _copy_app(app, mirrors, cache_dir, offline, tmp)
        tasks = read_tasks(tmp)
        where = Path(app) / TASKS_PBTXT if app else f"tasks.pbtxt ({origin})"
        check_required(tasks, required or [], where)
        check_supplied(tasks, supplied or [], where, supplied_on_host)
        record = {"origin": origin, "files": {rel: sha256_file(tmp / rel) for rel in APP_FILES},
                  "tasks": {task_id: task.to_dict() for task_id, task in tasks.items()}}
        (tmp / TASKS_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
