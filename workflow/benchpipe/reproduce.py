"""``benchpipe reproduce TREE --select <target>/<benchmark>/run_<n>``: train a tree's runs again and compare.

Each selected run is trained again in a scratch folder with what the tree recorded: the seed
its log names, the hyperparameters of the tree's config.json, and the dataset whose manifest
sha256 the tree holds (prepared again, or the folder given with ``--data``, checked against
it). It runs through the same command line as the workflow's train jobs. The rerun is then
compared with the tree's log, with these tolerances:

    status     the same outcome: the target reached (or not) in both
    accuracy   the same evaluation accuracy at every evaluation (ops are deterministic on CPU)
    time       time to train within ``time_tolerance`` (a fraction; 0.25 by default) of the tree's,
               or within TIME_FLOOR_S: a run of a second or two differs by more than a quarter
               from start-up and timer noise alone

Runs made on another runtime than ``local`` are reported as not reproduced, with the image
their provenance names: rebuild that image from its recorded lock to re-run them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchpipe import benchmarks
from benchpipe.errors import BenchpipeError, ConfigError
from benchpipe.package.layout import CONFIG_JSON, DATASETS_DIR, TABLES_DIR

TIME_TOLERANCE = 0.25
TIME_FLOOR_S = 1.0


@dataclass(frozen=True)
class Selection:
    target: str
    benchmark: str
    run: int

    @classmethod
    def parse(cls, text: str) -> Selection:
        parts = text.strip("/").split("/")
        if len(parts) != 3 or not parts[2].startswith("run_") or not parts[2][4:].isdigit():
            raise ConfigError(f"--select {text!r}: expected <target>/<benchmark>/run_<n>, e.g. local-cpu/digits/run_0")
        return cls(parts[0], parts[1], int(parts[2][4:]))

    def __str__(self) -> str:
        return f"{self.target}/{self.benchmark}/run_{self.run}"


@dataclass
class Comparison:
    run: str
    status: str = "match"  # match, differ, not reproduced
    checks: list[str] = field(default_factory=list)  # what matched, each with its figures
    differences: list[str] = field(default_factory=list)

    def differ(self, what: str) -> None:
        self.status = "differ"
        self.differences.append(what)


def reproduce(tree: Path, selections: list[Selection], work: Path, *, data: Path | None = None,
              target_file: Path | None = None, time_tolerance: float = TIME_TOLERANCE,
              threads: int | None = None) -> list[Comparison]:
    from benchpipe.package.manifest import verify_tree

    verify_tree(tree)  # a tree that does not prove itself is no reference to compare with
    settings = json.loads((tree / CONFIG_JSON).read_text())
    results = []
    for selection in selections:
        results.append(_reproduce_one(tree, settings, selection, work / str(selection).replace("/", "-"),
                                      data=data, target_file=target_file, time_tolerance=time_tolerance,
                                      threads=threads))
    return results


def _reproduce_one(tree: Path, settings: dict[str, Any], selection: Selection, work: Path, *,
                   data: Path | None, target_file: Path | None, time_tolerance: float,
                   threads: int | None) -> Comparison:
    from benchpipe.audit import training_logs
    from benchpipe.results.mllog_parser import parse_mllog, summarize_run

    logs = training_logs(tree)
    key = (selection.target, selection.benchmark, selection.run)
    if key not in logs:
        known = ", ".join(f"{t}/{b}/run_{r}" for t, b, r in sorted(logs)) or "none"
        raise ConfigError(f"{tree}: no training run {selection} (runs in the tree: {known})")
    result = Comparison(str(selection))
    runtime = _recorded_runtime(tree, selection)
    if runtime.get("runtime") != "local":
        result.status = "not reproduced"
        result.differences.append(
            f"made on runtime {runtime.get('runtime')} in image {runtime.get('image')} (id {runtime.get('image_id')}, "
            f"lock sha256 {runtime.get('lock_sha256')}): reproduce re-runs local runs; rebuild that image from "
            "its lock (benchpipe image build) and run the workflow's train job in it")
        return result
    recorded_events = parse_mllog(logs[key])
    recorded = summarize_run(recorded_events, logs[key])
    if recorded.seed is None:
        raise BenchpipeError(f"{logs[key]}: no seed logged: the run cannot be repeated")
    dataset = _dataset(tree, selection.benchmark, work, data)
    out = work / "run"
    _train(settings, selection, recorded.seed, dataset, out, target_file, threads)
    rerun_log = out / "mllog.txt"
    rerun_events = parse_mllog(rerun_log)
    rerun = summarize_run(rerun_events, rerun_log)
    _compare(result, recorded, rerun, _accuracies(recorded_events), _accuracies(rerun_events), time_tolerance)
    return result


def _recorded_runtime(tree: Path, selection: Selection) -> dict[str, Any]:
    from benchpipe.results.tables import read_partitioned, table_folder

    rows = read_partitioned(tree / TABLES_DIR / table_folder("provenance.parquet")).to_pylist()
    job = f"train/run_{selection.run}"
    for row in rows:
        if (row["target"], row["benchmark"], row["job"]) == (selection.target, selection.benchmark, job):
            return row
    raise BenchpipeError(f"{tree}: provenance has no row for {selection}")


def _dataset(tree: Path, benchmark: str, work: Path, data: Path | None) -> Path:
    """The dataset the tree's results were made from: ``data`` if given, else prepared again; checked by sha256."""
    from benchpipe.datasets.prepare import MANIFEST, prepare
    from benchpipe.hashing import sha256_file

    bench = benchmarks.get(benchmark)
    expected = tree / DATASETS_DIR / bench.dataset_name / MANIFEST
    if data is None:
        data = work / "data" / bench.dataset_name
        if not (data / MANIFEST).is_file():
            prepare(bench, data)
    if not (data / MANIFEST).is_file():
        raise ConfigError(f"{data}: no {MANIFEST}: not a prepared dataset")
    have, want = sha256_file(data / MANIFEST), sha256_file(expected)
    if have != want:
        raise ConfigError(f"{data / MANIFEST}: sha256 {have}, the tree's results were made from {want} "
                          f"({expected}): another dataset")
    return data


def _train(settings: dict[str, Any], selection: Selection, seed: int, data: Path, out: Path,
           target_file: Path | None, threads: int | None) -> None:
    submission = settings["submission"]
    overrides = settings.get("training", {}).get("hyperparameters", {}).get(selection.benchmark)
    args = [sys.executable, "-m", "benchpipe.cli", "train", "--benchmark", selection.benchmark, "--data", str(data),
            "--seed", str(seed), "--org", submission["submitter"], "--platform", selection.target,
            "--division", submission["division"], "--status", submission["status"], "--out", str(out)]
    if overrides:
        args += ["--hyperparameters-json", json.dumps(overrides, sort_keys=True)]
    if target_file is not None:
        args += ["--target-file", str(target_file)]
    if threads is not None:
        args += ["--threads", str(threads)]
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / "train.log"
    with open(log, "w") as f:
        proc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise BenchpipeError(f"{selection}: the rerun failed (exit {proc.returncode}, log {log}): {tail[0]}")


def _accuracies(events) -> list[tuple[Any, float]]:
    return [(e.metadata.get("epoch_num"), float(e.value)) for e in events if e.key == "eval_accuracy"]


def _compare(result: Comparison, recorded, rerun, recorded_acc: list, rerun_acc: list, tolerance: float) -> None:
    if recorded.status == rerun.status:
        result.checks.append(f"status {rerun.status} in both")
    else:
        result.differ(f"status: tree {recorded.status}, rerun {rerun.status}")
    if recorded_acc == rerun_acc:
        result.checks.append(f"eval accuracy identical at {len(rerun_acc)} evaluations "
                             f"(last {rerun_acc[-1][1]:.6f})" if rerun_acc else "no evaluations in either")
    else:
        first = next((i for i, (a, b) in enumerate(zip(recorded_acc, rerun_acc)) if a != b), min(len(recorded_acc), len(rerun_acc)))
        shown = (f"evaluation {first}: tree {recorded_acc[first] if first < len(recorded_acc) else 'none'}, "
                 f"rerun {rerun_acc[first] if first < len(rerun_acc) else 'none'}")
        result.differ(f"eval accuracy: {len(recorded_acc)} evaluations in the tree, {len(rerun_acc)} in the rerun; "
                      f"first difference at {shown}")
    was, now = recorded.time_to_train_min, rerun.time_to_train_min
    if was is None or now is None:
        return
    change = now / was - 1
    figures = (f"tree {was * 60:.2f} s, rerun {now * 60:.2f} s ({change:+.1%}; tolerance ±{tolerance:.0%} "
               f"or ±{TIME_FLOOR_S:g} s)")
    if abs(change) <= tolerance or abs(now - was) * 60 <= TIME_FLOOR_S:
        result.checks.append(f"time to train {figures}")
    else:
        result.differ(f"time to train {figures}")


def report(tree: Path, results: list[Comparison], time_tolerance: float) -> dict[str, Any]:
    return {"tree": str(tree), "time_tolerance": time_tolerance,
            "reproduced": all(r.status == "match" for r in results), "runs": [asdict(r) for r in results]}


def default_work() -> Path:
    return Path(tempfile.mkdtemp(prefix="benchpipe-reproduce-"))
