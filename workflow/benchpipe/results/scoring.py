"""Olympic scoring of a benchmark's training runs, as MLPerf training scores them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    runs: int
    successful_runs: int
    olympic_mean_minutes: float | None  # None when the set of runs yields no result
    reason: str  # why there is no result; empty when there is one


def olympic_score(minutes: list[float | None]) -> Score:
    """Drop the fastest and the slowest run, average the rest.

    ``None`` stands for a run that did not reach the target: it counts as the slowest,
    so one such run is dropped, and more than one leaves the benchmark without a result.
    """
    n = len(minutes)
    done = sorted(m for m in minutes if m is not None)
    failed = n - len(done)
    if n < 3:
        return Score(n, len(done), None, f"olympic scoring needs at least 3 runs, got {n}")
    if failed > 1:
        return Score(n, len(done), None, f"{failed} of {n} runs did not reach the target (at most 1 may fail)")
    kept = done[1:] if failed else done[1:-1]
    return Score(n, len(done), sum(kept) / len(kept), "")


def summarizer_run_minutes(run_start_ms: float, run_stop_ms: float) -> float:
    """A run's time to train as MLCommons' result summarizer computes it, operation for operation.

    It takes float(time_ms) of run_start and run_stop and divides their difference by 60, then by
    1000: that order, not / 60000, so that a score equals the summarizer's to the last bit.
    """
    return (float(run_stop_ms) - float(run_start_ms)) / 60 / 1000


def scaled_score(olympic_mean_minutes: float | None, scaling_factor: float) -> float | None:
    """The score the result summarizer states: the olympic mean times the RCP scaling factor (1.0
    without one), multiplied after averaging, as it does (``score *= scaling_factor``)."""
    return None if olympic_mean_minutes is None else olympic_mean_minutes * scaling_factor
