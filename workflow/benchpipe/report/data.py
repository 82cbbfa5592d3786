"""What a report shows, read from a submission tree alone: its tables, LoadGen logs and manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import BenchpipeError
from benchpipe.contracts.layout import TABLES_DIR

# LoadGen's latency summary, in the order a distribution is read: (label, detail log key).
LATENCY_POINTS = (
    ("min", "result_min_latency_ns"),
    ("p50", "result_50.00_percentile_latency_ns"),
    ("p90", "result_90.00_percentile_latency_ns"),
    ("p95", "result_95.00_percentile_latency_ns"),
    ("p97", "result_97.00_percentile_latency_ns"),
    ("p99", "result_99.00_percentile_latency_ns"),
    ("p99.9", "result_99.90_percentile_latency_ns"),
    ("max", "result_max_latency_ns"),
)


# Throughput as LoadGen reports it: Server counts completed samples; MultiStream reports none.
THROUGHPUT_KEYS = ("result_completed_samples_per_sec", "result_samples_per_second")


@dataclass(frozen=True)
class PerformanceRun:
    """One performance-mode LoadGen test, as its detail log summarised it."""

    target: str
    benchmark: str
    scenario: str
    points_ns: dict[str, int]  # label of LATENCY_POINTS -> latency
    bound_ns: int | None  # the Server p99 bound the run was held to
    samples_per_second: float | None


@dataclass(frozen=True)
class EvalPoint:
    target: str
    benchmark: str
    run: int
    epoch: float
    accuracy: float


@dataclass
class ReportData:
    tree: Path
    root_sha256: str | None
    tables: dict[str, list[dict[str, Any]]]  # table folder name -> rows
    evals: list[EvalPoint] = field(default_factory=list)
    performance: list[PerformanceRun] = field(default_factory=list)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.get(table, [])

    def values(self, column: str, *tables: str) -> list[str]:
        """The distinct values of ``column`` across ``tables``, sorted."""
        found = {row[column] for table in tables for row in self.rows(table) if row.get(column) is not None}
        return sorted(found)


TABLE_NAMES = ("runs", "scores", "training_events", "inference", "provenance")


def load(tree: Path) -> ReportData:
    """Everything the report draws, from ``tree``; a tree without tables is an error naming the folder."""
    from benchpipe.package.manifest import read_manifest

    tree = Path(tree)
    tables_dir = tree / TABLES_DIR
    if not tables_dir.is_dir():
        raise BenchpipeError(f"{tables_dir}: no tables: not a benchpipe submission tree")
    tables = {name: _read_table(tables_dir / name) for name in TABLE_NAMES}
    root = read_manifest(tree).get("root_sha256")
    data = ReportData(tree, root, tables)
    data.evals = eval_points(tables["training_events"])
    data.performance = performance_runs(tree)
    return data


def _read_table(folder: Path) -> list[dict[str, Any]]:
    from benchpipe.results.tables import read_partitioned

    if not folder.is_dir():
        return []
    try:
        return read_partitioned(folder).to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise BenchpipeError(f"{folder}: cannot read the table: {exc}") from exc


def eval_points(events: list[dict[str, Any]]) -> list[EvalPoint]:
    """Every eval_accuracy event, at its epoch (its position among the run's evaluations if unlabelled)."""
    points, seen = [], {}
    for row in events:
        if row["key"] != "eval_accuracy":
            continue
        run = (row["target"], row["benchmark"], row["run"])
        seen[run] = seen.get(run, 0) + 1
        metadata = json.loads(row["metadata_json"] or "{}")
        epoch = metadata.get("epoch_num", seen[run])
        points.append(EvalPoint(*run, float(epoch), float(json.loads(row["value_json"]))))
    return points


def performance_runs(tree: Path) -> list[PerformanceRun]:
    """The summary of every performance-mode LoadGen test in the tree."""
    from benchpipe.audit import detail_logs
    from benchpipe.results.loadgen_parser import parse_detail_log

    runs = []
    for (target, benchmark, scenario, mode), path in detail_logs(tree).items():
        if mode != "performance":
            continue
        detail = parse_detail_log(path)
        points = {label: int(detail.get(key)) for label, key in LATENCY_POINTS if detail.get(key) is not None}
        bound = detail.get("requested_server_target_latency_ns") if scenario == "Server" else None
        rate = next((float(detail.get(k)) for k in THROUGHPUT_KEYS if detail.get(k) is not None), None)
        runs.append(PerformanceRun(target, benchmark, scenario, points, None if bound is None else int(bound), rate))
    return runs
