"""Where a benchpipe tree keeps its logs, and what the items re-derive from them for the items after."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchpipe.contracts import registry
from benchpipe.contracts.layout import INFERENCE_SECTIONS, TRAINING_SECTIONS


@dataclass
class Seen:
    """What the tables item read and re-derived, for the scores and claims items after it."""

    tables: dict[str, list[dict]] = field(default_factory=dict)  # rows as the tree holds them
    runs: list[dict] | None = None  # runs.parquet rows re-derived from the tree's training logs
    runs_error: str | None = None  # why runs is None: the first training log that could not be read
    # (target, benchmark, scenario, mode) -> the LOADGEN_FIELDS re-derived from the test's logs
    tests: dict[tuple[str, str, str, str], dict] = field(default_factory=dict)


def training_logs(tree: Path) -> dict[tuple[str, str, int], Path]:
    """(target, benchmark, run) -> the result_<run>.txt of every training result in the tree."""
    logs = {}
    for section in TRAINING_SECTIONS:
        for path in sorted((tree / section).glob("*/results/*/*/result_*.txt")):
            run = path.stem.removeprefix("result_")
            if run.isdigit():
                logs[(path.parent.parent.name, path.parent.name, int(run))] = path
    return logs


def detail_logs(tree: Path) -> dict[tuple[str, str, str, str], Path]:
    """(target, benchmark, scenario, mode) -> the mlperf_log_detail.txt of every LoadGen test in the tree."""
    from benchpipe.contracts.layout import DETAIL_LOG

    logs = {}
    for section in INFERENCE_SECTIONS:
        for path in sorted((tree / section).glob(f"*/*/results/**/{DETAIL_LOG}")):
            key = test_key(path.relative_to(tree / section).parts)
            if key is not None:
                logs[key] = path
    return logs


def test_key(parts: tuple[str, ...]) -> tuple[str, str, str, str] | None:
    # <division>/<org>/results/<system>/<model>/<scenario>/<mode folders>/mlperf_log_detail.txt
    system, model, scenario, *rest = parts[3:-1]
    modes = {("performance", "run_1"): "performance", ("accuracy",): "accuracy"}
    mode = modes.get(tuple(rest))
    if mode is None and len(rest) == 3 and rest[0].startswith("TEST") and rest[1:] == ["performance", "run_1"]:
        mode = rest[0]
    return None if mode is None else (system, benchmark_of(model), scenario, mode)


def benchmark_of(model: str) -> str:
    """The benchmark whose results folder is ``model`` (resnet's is MLPerf's name for it)."""
    from benchpipe.package.inference import section_of

    # Only the benchmarks LoadGen tests have a results folder (a training-only one has none).
    tested = (name for name in registry.names() if registry.get(name).inference is not None)
    return next((name for name in tested if section_of(Path(), name)[1] == model), model)
