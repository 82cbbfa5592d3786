#!/usr/bin/env python3
"""LoadGen Offline throughput through our SUT vs raw predictor throughput, digits model.

What is measured, side by side in one run, for each repeat:

* LoadGen: one Offline performance test of the digits SavedModel, run exactly as the
  pipeline runs it (``python -m benchpipe.cli infer --scenario Offline --mode performance``,
  in a subprocess because LoadGen allows one test per process). The figure is LoadGen's
  ``result_samples_per_second`` from ``mlperf_log_detail.txt``: model time plus LoadGen,
  the Python SUT/QSL callbacks (gathering each batch, building responses) and
  ``QuerySamplesComplete``.
* Raw: in this process, ``SavedModelPredictor(model_dir, (8, 8, 1))`` loaded once and
  called back to back on full batches of ``offline_batch_size`` samples built from the
  eval split (prepared up front, so no gathering is timed) for about the same duration.

The two alternate, repeat after repeat (LoadGen first on odd repeats, raw first on even
ones); the script prints each repeat, the median of each and the ratio LoadGen / raw,
expected below 1 (the overhead of LoadGen and the Python callbacks). Timings are
reported, never asserted: the figures depend on the machine and on its load.

Setup: the digits dataset is prepared into a temporary directory and one training run
(seed 1) is trained into ``<tmp>/runs/local/digits/train/run_0``, unless ``--model`` names
an existing run directory or SavedModel (``--data`` likewise reuses a prepared dataset).

Run it from the repository root, in the project's environment::

    python bench/infer_offline_vs_raw.py                       # 3 repeats of 3000 ms
    python bench/infer_offline_vs_raw.py --repeats 5 --min-duration-ms 10000
    python bench/infer_offline_vs_raw.py --model runs/<target>/digits/train/run_0

The Markdown table printed at the end can be pasted into docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchpipe.system import cpu_model
from benchwork import BENCHMARK, prepared_data, work_dir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAMPLE_SHAPE = (8, 8, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="LoadGen/raw pairs (default 3)")
    p.add_argument("--min-duration-ms", type=int, default=3000,
                   help="LoadGen min_duration, and the raw timing's duration (default 3000)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra/inter-op threads, both variants (default: all CPUs)")
    p.add_argument("--model", type=Path, default=None,
                   help="reuse a training run directory (with model/ and mllog.txt) or a SavedModel")
    p.add_argument("--data", type=Path, default=None, help="reuse a prepared digits dataset directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    # Hidden: the LoadGen test for a bare SavedModel that has no training run around it.
    p.add_argument("--loadgen-child", nargs=3, metavar=("DATA", "MODEL", "OUT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def loadgen_child(args: argparse.Namespace) -> int:
    """The CLI's infer stage, with the model directory given directly."""
    import tensorflow as tf

    from benchpipe import benchmarks
    from benchpipe.infer.loadgen_run import LoadGenTest, run_test

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    data, model, out = (Path(a) for a in args.loadgen_child)
    run_test(benchmarks.get(BENCHMARK), data, model,
             LoadGenTest("Offline", "performance", args.min_duration_ms), out)
    return 0


def resolve_model(path: Path) -> tuple[Path | None, Path]:
    """(training run directory or None, SavedModel directory) for --model."""
    path = path.resolve()
    if (path / "mllog.txt").is_file() and (path / "model").is_dir():
        return path, path / "model"
    if path.name == "model" and (path.parent / "mllog.txt").is_file():
        return path.parent, path
    if (path / "saved_model.pb").is_file():
        return None, path
    sys.exit(f"--model {path}: neither a training run directory nor a SavedModel")


def loadgen_once(args, data_dir: Path, run_dir: Path | None, model_dir: Path, out: Path) -> tuple[float, str]:
    from benchpipe.results.loadgen_parser import DETAIL_LOG, parse_detail_log

    if run_dir is not None:
        cmd = [sys.executable, "-m", "benchpipe.cli", "infer", "--benchmark", BENCHMARK,
               "--data", str(data_dir), "--train-runs", str(run_dir), "--scenario", "Offline",
               "--mode", "performance", "--min-duration-ms", str(args.min_duration_ms),
               "--threads", str(args.threads), "--out", str(out)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(args.threads),
               "--min-duration-ms", str(args.min_duration_ms),
               "--loadgen-child", str(data_dir), str(model_dir), str(out)]
    # cwd: the work directory, so that no stray audit.config or log lands in the checkout.
    done = subprocess.run(cmd, env=child_env(), cwd=out.parent, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"LoadGen subprocess failed ({done.returncode}):\n{done.stderr[-3000:]}")
    detail = parse_detail_log(out / DETAIL_LOG)
    return float(detail.require("result_samples_per_second", out / DETAIL_LOG)), str(detail.get("result_validity", "?"))


def raw_once(predictor, batches, batch_size: int, duration_s: float) -> float:
    predictor(batches[0])  # warm
    done, k, started = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < duration_s:
        predictor(batches[k % len(batches)])
        done += batch_size
        k += 1
    return done / elapsed


def eval_batches(features, batch_size: int):
    """Full batches cycling through the eval split, contiguous, built before timing."""
    import math

    import numpy as np

    n = len(features)
    count = math.lcm(n, batch_size) // batch_size  # every sample equally often
    return [np.ascontiguousarray(features[np.arange(k * batch_size, (k + 1) * batch_size) % n])
            for k in range(count)]


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loadgen_child:
        return loadgen_child(args)

    t0 = time.perf_counter()
    import tensorflow as tf

    from benchpipe import benchmarks
    from benchpipe.datasets.prepare import load_split
    from benchpipe.infer.sut import SavedModelPredictor

    benchmark = benchmarks.get(BENCHMARK)
    batch_size = benchmark.inference.offline_batch_size
    with work_dir("bench-infer-", args.keep) as work:
        data_dir = prepared_data(args.data, work)
        if args.model is not None:
            run_dir, model_dir = resolve_model(args.model)
        else:
            # Trained in a subprocess: train_run sets the global seed and op determinism,
            # which must not leak into this process's raw timings.
            run_dir = work / "runs" / "local" / BENCHMARK / "train" / "run_0"
            code = (
                "import os, sys\n"
                "from pathlib import Path\n"
                "from benchpipe import benchmarks\n"
                "from benchpipe.train.harness import Submission, train_run\n"
                "o = train_run(benchmarks.get(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), seed=1,\n"
                "    submission=Submission('bench', 'local', 'closed', 'research'), threads=os.cpu_count())\n"
                "print(o.status, o.epochs, o.best_accuracy)\n"
            )
            done = subprocess.run([sys.executable, "-c", code, BENCHMARK, str(data_dir), str(run_dir)],
                                  env=child_env(), capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"training failed:\n{done.stderr[-3000:]}")
            status, epochs, best = done.stdout.split()[-3:]
            print(f"trained {run_dir}: {status} after {epochs} epochs, top-1 {float(best):.4f}", flush=True)
            if status != "success":
                sys.exit("the seed-1 training run did not reach the target: no model to serve")
            model_dir = run_dir / "model"

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        evaluation = load_split(data_dir, "eval")
        predictor = SavedModelPredictor(model_dir, SAMPLE_SHAPE)
        batches = eval_batches(evaluation.features, batch_size)
        duration_s = args.min_duration_ms / 1000.0

        loadgen, raw, validity = [], [], []
        for rep in range(args.repeats):
            order = ("loadgen", "raw") if rep % 2 == 0 else ("raw", "loadgen")
            for variant in order:
                if variant == "loadgen":
                    qps, valid = loadgen_once(args, data_dir, run_dir, model_dir, work / f"loadgen_{rep}")
                    loadgen.append(qps)
                    validity.append(valid)
                else:
                    raw.append(raw_once(predictor, batches, batch_size, duration_s))
            print(f"repeat {rep + 1}/{args.repeats}: LoadGen {fmt(loadgen[-1])} samples/s ({validity[-1]}), "
                  f"raw {fmt(raw[-1])} samples/s, ratio {loadgen[-1] / raw[-1]:.3f}", flush=True)

        med_l, med_r = statistics.median(loadgen), statistics.median(raw)
        ratios = [a / b for a, b in zip(loadgen, raw)]
        total = time.perf_counter() - t0
        print()
        print(f"### LoadGen Offline vs raw predictor ({BENCHMARK}, batch {batch_size})")
        print()
        print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
              f"Python {platform.python_version()}, TensorFlow {tf.__version__}. "
              f"Threads {args.threads}, min duration {args.min_duration_ms} ms, {args.repeats} repeats "
              f"(interleaved), script wall time {total:.0f} s.")
        print()
        print("| Variant | Median samples/s | Per repeat (samples/s) |")
        print("|---|---:|---|")
        print(f"| LoadGen Offline, ClassifierSUT | {fmt(med_l)} | {', '.join(fmt(x) for x in loadgen)} |")
        print(f"| Raw `SavedModelPredictor(batch)` | {fmt(med_r)} | {', '.join(fmt(x) for x in raw)} |")
        print(f"| **Ratio LoadGen / raw** (of medians) | **{med_l / med_r:.3f}** | "
              f"{', '.join(f'{r:.3f}' for r in ratios)} |")
        print()
        if any(v != "VALID" for v in validity):
            print(f"Note: LoadGen result validity per repeat: {', '.join(validity)} "
                  f"(min duration below the official {600_000} ms is expected to be flagged).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
