"""The runs tree: where each job writes, read back by the parser and the packager.

    runs/<target>/system.json
    runs/<target>/<benchmark>/train/run_<i>/{mllog.txt, model/}
    runs/<target>/<benchmark>/calibrate/<scenario>/{calibration.json, user.conf, model.json}
    runs/<target>/<benchmark>/infer/<scenario>/<mode>/{mlperf_log_*, user.conf[, accuracy.txt]}
"""

from __future__ import annotations

import re
from pathlib import Path

from benchpipe.errors import ParseError

_RUN = re.compile(r"^run_(\d+)$")
MLLOG_FILE = "mllog.txt"
MODEL_DIR = "model"
DEVICES_FILE = "devices.json"  # what the run trained on: strategy, replicas, precision, threads


def system_file(runs: Path, target: str) -> Path:
    return runs / target / "system.json"


def train_dir(runs: Path, target: str, benchmark: str) -> Path:
    return runs / target / benchmark / "train"


def infer_dir(runs: Path, target: str, benchmark: str) -> Path:
    return runs / target / benchmark / "infer"


def run_dir(runs: Path, target: str, benchmark: str, index: int) -> Path:
    return train_dir(runs, target, benchmark) / f"run_{index}"


def test_dir(runs: Path, target: str, benchmark: str, scenario: str, mode: str) -> Path:
    return infer_dir(runs, target, benchmark) / scenario / mode


def identify_run(runs: Path, run_dir: Path) -> tuple[str, str, int]:
    """(target, benchmark, index) of runs/<target>/<benchmark>/train/run_<i>."""
    parts = _relative_parts(runs, run_dir, 4)
    match = _RUN.match(parts[3])
    if parts[2] != "train" or not match:
        raise ParseError(f"{run_dir}: not a training run directory <runs>/<target>/<benchmark>/train/run_<i>")
    return parts[0], parts[1], int(match.group(1))


def identify_test(runs: Path, test_dir: Path) -> tuple[str, str, str, str]:
    """(target, benchmark, scenario, mode) of runs/<target>/<benchmark>/infer/<scenario>/<mode>."""
    parts = _relative_parts(runs, test_dir, 5)
    if parts[2] != "infer":
        raise ParseError(f"{test_dir}: not a LoadGen test directory <runs>/<target>/<benchmark>/infer/<scenario>/<mode>")
    return parts[0], parts[1], parts[3], parts[4]


def _relative_parts(runs: Path, path: Path, depth: int) -> tuple[str, ...]:
    try:
        parts = path.resolve().relative_to(runs.resolve()).parts
    except ValueError as exc:
        raise ParseError(f"{path}: not inside the runs directory {runs}") from exc
    if len(parts) != depth:
        raise ParseError(f"{path}: expected {depth} levels below {runs}, found {len(parts)}")
    return parts
