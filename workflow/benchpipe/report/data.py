"""What a report shows, read from a submission tree alone: its tables, LoadGen logs, manifest,
benchpipe's config and checks, system descriptions and user.conf files; and the reproduction
report beside the tree when it is about this tree."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import BenchpipeError
from benchpipe.contracts.layout import (
    CHECKS_JSON,
    CONFIG_JSON,
    INFERENCE_SECTIONS,
    TABLES_DIR,
    TRAINING_SECTIONS,
    USER_CONF,
)

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


@dataclass(frozen=True)
class SystemFile:
    """One system description in the tree, where it lies."""

    path: str  # relative to the tree
    description: dict[str, Any]


@dataclass(frozen=True)
class Reproduction:
    """``<tree>.reproduce.json``: its verdicts when it is about this tree, else why they are not shown."""

    path: Path
    report: dict[str, Any] | None  # None: not shown
    refused: str | None = None  # why not


@dataclass
class ReportData:
    tree: Path
    root_sha256: str | None
    tables: dict[str, list[dict[str, Any]]]  # table folder name -> rows
    evals: list[EvalPoint] = field(default_factory=list)
    performance: list[PerformanceRun] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # benchpipe/config.json
    checks: dict[str, Any] = field(default_factory=dict)  # benchpipe/checks.json
    systems: list[SystemFile] = field(default_factory=list)
    min_durations_ms: dict[str, int] = field(default_factory=dict)  # user.conf (tree path) -> min_duration
    # benchmark -> the layouts it is in: MLPerf's ("training", "inference") or benchpipe's own
    # ("benchpipe/training", "benchpipe/inference"), which hold benchmarks MLPerf does not have.
    sections: dict[str, set[str]] = field(default_factory=dict)
    reproduction: Reproduction | None = None
    # The tree's results among MLCommons' published ones (report.compare.Comparison), when asked for.
    comparison: Any = None

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.get(table, [])

    def values(self, column: str, *tables: str) -> list[str]:
        """The distinct values of ``column`` across ``tables``, sorted."""
        found = {row[column] for table in tables for row in self.rows(table) if row.get(column) is not None}
        return sorted(found)


def plain(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits in positional notation (0.0000123, 12,345),
    never 1.23e-05: a reader compares digits, not exponents."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


SHORT_MIN = 2.0  # times below this many minutes are shown in seconds


def time_unit(minutes: list[float | None]) -> tuple[str, float]:
    """(unit, factor from minutes) for showing these times: seconds when all are short, as
    0.04 min reads worse than 2.4 s; minutes otherwise, the unit MLPerf scores in."""
    known = [m for m in minutes if m is not None]
    return ("s", 60.0) if known and max(known) < SHORT_MIN else ("min", 1.0)


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
    data.config = _read_json(tree / CONFIG_JSON)
    data.checks = _read_json(tree / CHECKS_JSON)
    data.systems = system_files(tree)
    data.min_durations_ms = min_durations(tree)
    data.sections = benchmark_sections(tree)
    data.reproduction = reproduction(tree, root)
    return data


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object of the tree, or {} when absent; the audit judges a broken one, the page shows less."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _results_dirs(tree: Path) -> list[tuple[str, Path]]:
    """(section, results folder) of every organization in the tree's layouts."""
    found = []
    for section in TRAINING_SECTIONS:
        found += [(section, d) for d in sorted((tree / section).glob("*/results"))]
    for section in INFERENCE_SECTIONS:
        found += [(section, d) for d in sorted((tree / section).glob("*/*/results"))]
    return [(s, d) for s, d in found if d.is_dir()]


def system_files(tree: Path) -> list[SystemFile]:
    """Every organization's systems/*.json, in path order."""
    found = []
    for _, results in _results_dirs(tree):
        for path in sorted((results.parent / "systems").glob("*.json")):
            description = _read_json(path)
            if description:
                found.append(SystemFile(path.relative_to(tree).as_posix(), description))
    return found


def benchmark_sections(tree: Path) -> dict[str, set[str]]:
    """benchmark -> the sections whose results hold it (results/<system>/<benchmark>)."""
    found: dict[str, set[str]] = {}
    for section, results in _results_dirs(tree):
        for folder in results.glob("*/*"):
            if folder.is_dir():
                found.setdefault(folder.name, set()).add(section)
    return found


_MIN_DURATION = re.compile(r"^\s*[^#\s]+\.min_duration\s*=\s*(\d+)\s*$", re.M)


def min_durations(tree: Path) -> dict[str, int]:
    """user.conf (path in the tree) -> the min_duration it sets (ms), for those that set one."""
    found = {}
    for _, results in _results_dirs(tree):
        for conf in sorted(results.rglob(USER_CONF)):
            values = [int(v) for v in _MIN_DURATION.findall(conf.read_text(errors="replace"))]
            if values:
                found[conf.relative_to(tree).as_posix()] = min(values)
    return found


def reproduction(tree: Path, root_sha256: str | None) -> Reproduction | None:
    """``<tree>.reproduce.json`` beside the tree: None when absent; refused unless about this root."""
    path = tree.resolve().parent / f"{tree.resolve().name}.reproduce.json"
    if not path.is_file():
        return None
    report = _read_json(path)
    if not isinstance(report.get("runs"), list):
        return Reproduction(path, None, f"{path.name} is not a benchpipe reproduction report")
    about = report.get("root_sha256")
    if root_sha256 is None or about != root_sha256:
        # An older report names no root: nothing ties its verdicts to these bytes.
        return Reproduction(path, None, f"{path.name} is not about this tree: it reproduced the tree with root "
                                        f"sha256 {about or 'not recorded'}")
    return Reproduction(path, report)


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

    return performance_from(detail_logs(tree))


def performance_from(logs: dict[tuple[str, str, str, str], Path]) -> list[PerformanceRun]:
    """The summary of each performance-mode test of ``logs``, keyed as audit.detail_logs keys them."""
    from benchpipe.results.loadgen_parser import parse_detail_log

    runs = []
    for (target, benchmark, scenario, mode), path in logs.items():
        if mode != "performance":
            continue
        detail = parse_detail_log(path)
        points = {label: int(detail.get(key)) for label, key in LATENCY_POINTS if detail.get(key) is not None}
        bound = detail.get("requested_server_target_latency_ns") if scenario == "Server" else None
        rate = next((float(detail.get(k)) for k in THROUGHPUT_KEYS if detail.get(k) is not None), None)
        runs.append(PerformanceRun(target, benchmark, scenario, points, None if bound is None else int(bound), rate))
    return runs
