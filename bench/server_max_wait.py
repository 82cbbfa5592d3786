#!/usr/bin/env python3
"""Calibration's Server search at two batcher waits, alternated: which finds the higher rate.

The Server batcher holds a partial batch for up to ``max_wait`` (a fraction of the p99
bound) before computing it. This runs calibration's whole Server search, as ``benchpipe
calibrate`` does, on the digits CNN at its 10 ms bound, with each of two fractions in turn,
``--rounds`` times (the order alternating each round), and prints per round and as medians:

* the highest rate the search counted as VALID (LoadGen's VALID, with p99 inside the
  search's margin), or none;
* the real-run target it chose, and whether a longer run confirmed it.

One process, so both variants meet the same host; timings are reported, never asserted.

Run it from the repository root, in the project's environment::

    python bench/server_max_wait.py                      # 0.25 against 0.05, 3 rounds
    python bench/server_max_wait.py --fractions 0.25,0 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchwork import parse_with_smoke, prepared_data, work_dir

from benchpipe.infer.calibrate import SAFETY_MARGIN, SEARCH_LATENCY_FRACTION
from benchpipe.package.system import cpu_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fractions", default="0.25,0.05", help="two max_wait fractions of the bound (default 0.25,0.05)")
    p.add_argument("--rounds", type=int, default=3, help="searches per fraction (default 3)")
    p.add_argument("--budget-s", type=float, default=40.0, help="each search's budget (default 40)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="TensorFlow threads (default: all CPUs)")
    p.add_argument("--data", type=Path, default=None, help="reuse a prepared digits dataset directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    return parse_with_smoke(p, argv, rounds=1, budget_s=4.0)


def search(fraction: float, model: Path, qsl, task, args: argparse.Namespace, log_dir: Path):
    from infer_scenarios_vs_raw import search_summary

    from benchpipe.contracts.errors import InferenceError
    from benchpipe.infer.calibrate import calibrate

    try:
        calibration = calibrate("Server", model, qsl.source.sample_shape, qsl,
                                offline_batch_size=task.offline_batch_size,
                                server_latency_bound_ns=int(task.server_latency_ms * 1e6), loadgen_model="digits",
                                performance_sample_count=task.performance_sample_count, budget_s=args.budget_s,
                                log_dir=log_dir, server_max_wait_fraction=fraction)
    except InferenceError as exc:
        return None, None, False, f"no rate: {exc}"
    summary = search_summary(calibration)
    b = calibration.batching
    note = f"max_batch {b.max_batch}, max_wait {b.max_wait_s * 1e3:.2f} ms; {summary.runs}"
    return summary.best_qps, calibration.server_target_qps, summary.confirmed, note


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fractions = [float(f) for f in args.fractions.split(",")]
    if len(fractions) != 2:
        sys.exit("--fractions: give exactly two, e.g. 0.25,0.05")
    t0 = time.perf_counter()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from infer_scenarios_vs_raw import export_digits

    from benchpipe.contracts import registry
    from benchpipe.infer.samples import ParquetSamples, SampleLibrary

    task = registry.get("digits").inference
    found: dict[float, list[tuple]] = {f: [] for f in fractions}
    with work_dir("bench-max-wait-", args.keep) as work:
        os.chdir(work)
        qsl = SampleLibrary(ParquetSamples(prepared_data(args.data, work), "eval"))
        model = export_digits(work)
        for rnd in range(args.rounds):
            order = fractions if rnd % 2 == 0 else fractions[::-1]
            for fraction in order:
                result = search(fraction, model, qsl, task, args, work / f"r{rnd}-{fraction:g}")
                found[fraction].append(result)
                best, target, confirmed, note = result
                print(f"round {rnd + 1}/{args.rounds}, max_wait {fraction:g} x bound: highest VALID "
                      f"{'none' if best is None else f'{best:,.0f}'}; {note}", flush=True)
        os.chdir(tempfile.gettempdir())
    print()
    print("## Server search: max_wait as a fraction of the bound")
    print()
    print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}, TensorFlow {tf.__version__}. Threads {args.threads}; digits CNN "
          f"(random weights), p99 bound {task.server_latency_ms} ms, a run VALID for the search with p99 ≤ "
          f"{SEARCH_LATENCY_FRACTION:.0%} of it; {args.rounds} rounds, order alternating, {args.budget_s:g} s "
          f"per search; script wall time {time.perf_counter() - t0:.0f} s.")
    print()
    print("| max_wait / bound | Highest VALID rate per round | Median | Real-run target per round "
          f"(≥ {SAFETY_MARGIN:.0%} lower; ✓ confirmed by a longer run) |")
    print("|---:|---|---:|---|")
    medians = {}
    for fraction in fractions:
        rows = found[fraction]
        best = [b or 0.0 for b, _, _, _ in rows]
        medians[fraction] = statistics.median(best)
        print(f"| {fraction:g} | {', '.join(f'{b:,.0f}' if b else 'none' for b in best)} | "
              f"{medians[fraction]:,.0f} | "
              f"{', '.join(f'{t:,.0f}{chr(10003) if c else chr(10007)}' if t else 'none' for _, t, c, _ in rows)} |")
    first, second = fractions
    if medians[first] > 0:
        print()
        print(f"Median ratio, max_wait {second:g} against {first:g}: **{medians[second] / medians[first]:.2f}**")
    return 0


if __name__ == "__main__":
    sys.exit(main())
