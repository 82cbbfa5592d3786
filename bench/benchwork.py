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

BENCHMARK = "digits"
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
