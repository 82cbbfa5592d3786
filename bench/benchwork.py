"""What the bench scripts share around their measurements: a work directory, the data, and
the child processes that measure one variant each."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCHMARK = "digits"
# This interpreter's command line, whatever PATH says.
BENCHPIPE = str(Path(sys.executable).parent / "benchpipe")
# A child prints its measurements on one line with this prefix; anything else it prints is noise.
RESULT_PREFIX = "BENCH_RESULT "


@contextmanager
def work_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary directory, removed afterwards unless ``keep`` (then its path is printed)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def prepared_data(data: Path | None, work: Path) -> Path:
    """``data`` if given (a prepared dataset to reuse), else digits prepared under ``work``."""
    if data is not None:
        return data.resolve()
    from benchpipe.contracts import registry
    from benchpipe.datasets.prepare import prepare

    out = work / "data" / BENCHMARK
    prepare(registry.get(BENCHMARK), out)
    return out


def report_child(args: argparse.Namespace, run_harness: Callable, run_plain: Callable) -> int:
    """In a child process: measure ``args.variant`` once and print the result for the parent."""
    import tensorflow as tf

    warm_up = not args.variant.endswith("-cold")
    run = run_harness if args.variant.startswith("harness") else run_plain
    result = run(args, warm_up)
    result.update(variant=args.variant, seed=args.seed, tf_version=tf.__version__)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def run_child(cmd: list[str], work: Path, variant: str, seed: int) -> dict:
    """Run one child (a fresh process, so no TensorFlow state carries over) and read its result."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        sys.exit(f"{variant} seed {seed} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def parse_with_smoke(parser: argparse.ArgumentParser, argv: list[str] | None = None, **tiny: Any) -> argparse.Namespace:
    """The script's arguments, with ``--smoke``: then ``tiny`` replaces the defaults (options given
    on the command line still win), so that the script runs end to end in seconds and a test
    can tell that it still works. Its numbers mean nothing."""
    parser.add_argument("--smoke", action="store_true",
                        help="tiniest sizes, one repeat: checks that the script runs; its numbers mean nothing")
    args = parser.parse_args(argv)
    if args.smoke:
        # set_defaults accepts any name: a misspelt or removed option must fail here, not shrink nothing.
        unknown = set(tiny) - {action.dest for action in parser._actions}
        if unknown:
            raise SystemExit(f"--smoke sets options the script does not have: {', '.join(sorted(unknown))}")
        parser.set_defaults(**tiny)
        args = parser.parse_args(argv)
    return args


# The stages' command lines, as workflow/rules/*.smk give them: a bench that runs a stage
# as a job builds its command here, so a changed command line is mended in one place.
def train_command(data: Path | str, out: Path | str, seed: int, threads: int, platform: str = "local-cpu",
                  benchmark: str = BENCHMARK) -> list[str]:
    return ["benchpipe", "train", "--benchmark", benchmark, "--data", str(data), "--seed", str(seed),
            "--org", "bench", "--platform", platform, "--division", "closed", "--status", "research",
            "--threads", str(threads), "--out", str(out)]


def calibrate_command(data: Path | str, train_runs: list[Path | str], scenario: str, out: Path | str, threads: int,
                      min_duration_ms: int, benchmark: str = BENCHMARK) -> list[str]:
    return ["benchpipe", "calibrate", "--benchmark", benchmark, "--data", str(data),
            "--train-runs", *map(str, train_runs), "--scenario", scenario,
            "--min-duration-ms", str(min_duration_ms), "--threads", str(threads), "--out", str(out)]


def infer_command(data: Path | str, calibration: Path | str, scenario: str, mode: str, out: Path | str,
                  threads: int, benchmark: str = BENCHMARK) -> list[str]:
    return ["benchpipe", "infer", "--benchmark", benchmark, "--data", str(data), "--calibration", str(calibration),
            "--scenario", scenario, "--mode", mode, "--threads", str(threads), "--out", str(out)]


def run_stage(command: list[str], cwd: Path) -> None:
    """One stage's command here, without a runtime; its stderr is shown when it fails."""
    done = subprocess.run([BENCHPIPE, *command[1:]], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:2])} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def calibration(work: Path, data: Path, train_runs: list[Path], scenario: str, min_duration_ms: int,
                threads: int = 1, name: str | None = None) -> Path:
    """``benchpipe calibrate``'s output for ``scenario`` under ``work`` (in a folder ``name``, the
    scenario's by default): user.conf and the model served."""
    out = work / "runs" / "local-cpu" / BENCHMARK / "calibrate" / (name or scenario)
    run_stage(calibrate_command(data, train_runs, scenario, out, threads, min_duration_ms), work)
    return out
