"""The two trees benchpipe writes, and the names of the files in them.

**The runs tree** (``runs/``): where each job writes; parse and package read it back.

    runs/<target>/system.json
    runs/<target>/<benchmark>/train/run_<i>/{mllog.txt, model/, devices.json, provenance.json}
    runs/<target>/<benchmark>/calibrate/<scenario>/{calibration.json, user.conf, model.json}
    runs/<target>/<benchmark>/infer/<scenario>/<mode>/{mlperf_log_*, user.conf[, accuracy.txt]}
    runs/<target>/<benchmark>/infer/<scenario>/performance/attempts/<n>/  a corrected run's INVALID attempts
    runs/<target>/<benchmark>/performance_conf/<scenario>/user.conf  the one the compliance tests run with

**The submission tree** (``submissions/<round>/``): MLPerf's layout, plus benchpipe's own
files under ``benchpipe/``, written by packaging and read by audit, reproduce and report.

    benchpipe/config.json, benchpipe/checks.json
    benchpipe/tables/<table>/round=.../division=.../target=.../part-0.parquet
    benchpipe/datasets/<dataset>/manifest.json
    benchpipe/compliance/rules/<benchmark>.yaml
    benchpipe/raw/<target>/<benchmark>/<scenario>/{mlperf_log_accuracy.json, calibration.json}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from benchpipe.contracts.errors import ParseError, ValidationError

# --- Files a job writes (the runs tree) -------------------------------------------------
MLLOG_FILE = "mllog.txt"
MODEL_DIR = "model"
DEVICES_FILE = "devices.json"  # what the run trained on: strategy, replicas, precision, threads
DATASET_MANIFEST = "manifest.json"  # a prepared dataset's sources and shards, with their sha256
# LoadGen's logs, as LoadGen names them.
DETAIL_LOG = "mlperf_log_detail.txt"
SUMMARY_LOG = "mlperf_log_summary.txt"
ACCURACY_LOG = "mlperf_log_accuracy.json"
# What benchpipe writes beside them.
USER_CONF = "user.conf"
CALIBRATION = "calibration.json"
AUDIT_CONFIG = "audit.config"
ACCURACY_TXT = "accuracy.txt"
MODEL_RECORD = "model.json"
VERIFY_ACCURACY = "verify_accuracy.txt"
VERIFY_PERFORMANCE = "verify_performance.txt"

# --- The runs tree -----------------------------------------------------------------------
_RUN = re.compile(r"^run_(\d+)$")


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


def identify_mobile_run(runs: Path, run_dir: Path) -> tuple[str, str, str, str, str]:
    """(target, benchmark, precision, task, mode) of runs/<target>/<benchmark>/mobile/<precision>/<task>/<mode>."""
    parts = _relative_parts(runs, run_dir, 6)
    if parts[2] != "mobile":
        raise ParseError(f"{run_dir}: not a Mobile run directory "
                         "<runs>/<target>/<benchmark>/mobile/<precision>/<task>/<mode>")
    return parts[0], parts[1], parts[3], parts[4], parts[5]


def _relative_parts(runs: Path, path: Path, depth: int) -> tuple[str, ...]:
    try:
        parts = path.resolve().relative_to(runs.resolve()).parts
    except ValueError as exc:
        raise ParseError(f"{path}: not inside the runs directory {runs}") from exc
    if len(parts) != depth:
        raise ParseError(f"{path}: expected {depth} levels below {runs}, found {len(parts)}")
    return parts


# --- The submission tree ------------------------------------------------------------------
OWN = Path("benchpipe")
CONFIG_JSON = OWN / "config.json"
CHECKS_JSON = OWN / "checks.json"
TABLES_DIR = OWN / "tables"
DATASETS_DIR = OWN / "datasets"
RULES_DIR = OWN / "compliance" / "rules"
RAW_DIR = OWN / "raw"
# MLPerf's layouts, and the same layouts for benchpipe's own benchmarks and models.
TRAINING_SECTIONS = ("training", "benchpipe/training")
INFERENCE_SECTIONS = ("inference", "benchpipe/inference")


# --- What MLPerf's layouts require ---------------------------------------------------------
# The inference tree (v6.0/v6.1), per organization folder <division>/<org>/:
#     systems/<system>.json, src/, results/<system>/<model>/<scenario>/...
# and per scenario folder what each mode of it requires: the official checker stops at the
# first gap (a traceback for a missing performance/ or accuracy/), and benchpipe's own
# models' trees have no official checker at all, so the names are stated here once.
README = "README.md"
MEASUREMENTS = "measurements.json"
SYSTEMS_DIR = "systems"
SRC_DIR = "src"
PERFORMANCE_RUN = "performance/run_1"
ACCURACY_DIR = "accuracy"
SCENARIO_FILES = (README, USER_CONF, MEASUREMENTS)
_RUN_LOGS = (DETAIL_LOG, SUMMARY_LOG)
REQUIRED_BY_MODE: dict[str, tuple[str, ...]] = {
    "performance": tuple(f"{PERFORMANCE_RUN}/{name}" for name in _RUN_LOGS),
    "accuracy": tuple(f"{ACCURACY_DIR}/{name}" for name in (*_RUN_LOGS, ACCURACY_LOG, ACCURACY_TXT)),
    "TEST01": (f"TEST01/{VERIFY_ACCURACY}", f"TEST01/{VERIFY_PERFORMANCE}",
               *(f"TEST01/{PERFORMANCE_RUN}/{name}" for name in _RUN_LOGS)),
    "TEST04": (f"TEST04/{VERIFY_PERFORMANCE}", *(f"TEST04/{PERFORMANCE_RUN}/{name}" for name in _RUN_LOGS)),
    # An LLM's: what compliance/TEST06/run_verification.py writes, and the checker reads.
    "TEST06": (f"TEST06/{VERIFY_ACCURACY}", f"TEST06/{ACCURACY_DIR}/{ACCURACY_LOG}"),
}
# The training tree, per organization folder: systems/<system>.json and
# results/<system>/<benchmark>/result_0.txt ... result_<N-1>.txt, N fixed per benchmark.
TRAINING_RESULT = "result_{index}.txt"
TRAINING_RESULT_GLOB = "result_*.txt"


def required_scenario_files(modes: Iterable[str]) -> list[tuple[str, str | None]]:
    """(path under a scenario folder, the mode that requires it, None for the folder's own files).

    ``modes``: the tests the scenario was run with (``contracts.config.inference_modes``: the
    compliance tests only in the closed division). A mode the layout has no files for is a
    ValidationError naming it, so that a new test cannot be packaged without its files being stated.
    """
    required: list[tuple[str, str | None]] = [(name, None) for name in SCENARIO_FILES]
    for mode in modes:
        if mode not in REQUIRED_BY_MODE:
            raise ValidationError(f"mode '{mode}': the inference layout names no files for it "
                             f"(known: {', '.join(REQUIRED_BY_MODE)})")
        required += [(path, mode) for path in REQUIRED_BY_MODE[mode]]
    return required


def training_result_names(runs: int) -> list[str]:
    """result_0.txt ... result_<runs-1>.txt: the files a training result folder must hold."""
    return [TRAINING_RESULT.format(index=i) for i in range(runs)]


def missing_scenario_files(scenario_dir: Path, modes: Iterable[str]) -> list[tuple[str, str | None]]:
    """The ``required_scenario_files(modes)`` that are not regular files under ``scenario_dir``."""
    return [(rel, mode) for rel, mode in required_scenario_files(modes) if not (scenario_dir / rel).is_file()]


def missing_reason(path: str, scenario: str, mode: str | None, round_: str) -> str:
    """One missing required file, worded alike wherever it is found (packaging, audit)."""
    what = f"{scenario} {mode}" if mode else f"the {scenario} folder"
    return f"{path}: missing (required by the {round_} layout for {what})"
