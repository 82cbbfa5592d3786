"""MLLOG training logs: events, and the summary of one run derived from them alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.errors import ParseError, TrainingError
from benchpipe.layout import MLLOG_FILE, MODEL_DIR
from benchpipe.results.records import collection_paused, read_records


@dataclass(frozen=True)
class Event:
    line: int
    time_ms: int
    event_type: str
    key: str
    value: Any
    metadata: dict[str, Any]


@dataclass(frozen=True)
class TrainingRun:
    """One run as its log tells it. ``time_to_train_min`` is None unless it succeeded."""

    benchmark: str
    org: str
    platform: str
    division: str
    seed: int | None
    status: str
    run_start_ms: int | None
    run_stop_ms: int | None
    epochs: int
    best_eval_accuracy: float | None
    events: int

    @property
    def time_to_train_min(self) -> float | None:
        if self.status != "success" or self.run_start_ms is None or self.run_stop_ms is None:
            return None
        return (self.run_stop_ms - self.run_start_ms) / 60000.0


def parse_mllog(path: Path) -> list[Event]:
    with collection_paused():
        events = [_event(n, record, path) for n, record in read_records(path, "MLLOG")]
    if not events:
        raise ParseError(f"{path}: no MLLOG records")
    return events


def _event(n: int, record: dict[str, Any], path: Path) -> Event:
    try:
        metadata = record.get("metadata") or {}
        return Event(n, _time_ms(record["time_ms"]), str(record["event_type"]), str(record["key"]),
                     record.get("value"), metadata if type(metadata) is dict else dict(metadata))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ParseError(f"{path}: line {n}: malformed MLLOG record: {exc!r}") from exc


def _time_ms(value: Any) -> int:
    if type(value) is int:  # what every logger writes: no conversion to pay for
        return value
    # The official parser takes any float()-able time ("1.5e12", 12.0); NaN and inf cannot be a time.
    return int(float(value))


def summarize_run(events: list[Event], path: Path) -> TrainingRun:
    first: dict[str, Event] = {}
    for e in events:
        first.setdefault(e.key, e)
    stop = first.get("run_stop")
    accuracies = [float(e.value) for e in events if e.key == "eval_accuracy"]
    epochs = [int(e.metadata["first_epoch_num"]) + int(e.metadata.get("epoch_count", 1)) - 1
              for e in events if e.key == "block_start" and "first_epoch_num" in e.metadata]

    def value(key: str) -> Any:
        if key not in first:
            raise ParseError(f"{path}: required key '{key}' missing")
        return first[key].value

    return TrainingRun(
        benchmark=str(value("submission_benchmark")),
        org=str(value("submission_org")),
        platform=str(value("submission_platform")),
        division=str(value("submission_division")),
        seed=int(first["seed"].value) if "seed" in first else None,
        # A log without run_stop is a run that died: it never counts as a result.
        status=str(stop.metadata.get("status", "aborted")) if stop else "aborted",
        run_start_ms=first["run_start"].time_ms if "run_start" in first else None,
        run_stop_ms=stop.time_ms if stop else None,
        epochs=max(epochs, default=0),
        best_eval_accuracy=max(accuracies) if accuracies else None,
        events=len(events),
    )


def read_run(run_dir: Path) -> TrainingRun:
    path = run_dir / MLLOG_FILE
    return summarize_run(parse_mllog(path), path)


def select_model(run_dirs: list[Path]) -> Path:
    """The model of the lowest-numbered successful run: inference serves a converged model.

    The open division's rules do not require the quality target: when no open run reached
    it, the run with the best evaluation accuracy is served (the lowest-numbered of equals).
    """
    ordered = sorted(run_dirs, key=lambda p: (len(p.name), p.name))
    runs = [(run_dir, read_run(run_dir)) for run_dir in ordered]
    chosen = next((d for d, run in runs if run.status == "success"), None)
    if chosen is None and runs and all(run.division == "open" for _, run in runs):
        scored = [(d, run.best_eval_accuracy) for d, run in runs if run.best_eval_accuracy is not None]
        if scored:
            best = max(accuracy for _, accuracy in scored)
            chosen = next(d for d, accuracy in scored if accuracy == best)
    if chosen is None:
        raise TrainingError(
            f"no successful training run among {', '.join(str(p) for p in run_dirs)}: nothing to serve"
        )
    model = chosen / MODEL_DIR
    if not model.is_dir():
        raise TrainingError(f"{model}: the run chosen to serve has no exported model")
    return model
