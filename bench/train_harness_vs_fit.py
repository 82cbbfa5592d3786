#!/usr/bin/env python3
"""Time to train through the benchpipe harness vs a plain ``model.fit``, digits model.

What is measured, side by side in one run, for each repeat (seed 1, 2, ...):

* Harness: ``train_run`` as the pipeline runs it: MLLOG events, an evaluation of the eval
  split after every epoch, stopping at the quality target, then the SavedModel export.
  Two figures: run_start..run_stop from the run's own MLLOG (what a submission reports
  as time to train: reading the data, training, per-epoch evaluation) and the wall time
  of the whole ``train_run`` call (also TF set-up, model build and compile, export).
* Plain: the same model, data, seed, thread count and schedule with none of that:
  ``configure_tensorflow(seed, threads)``, ``compile_model(benchmark, steps_per_epoch)``,
  then, timed, ``load_split(data, "train")`` and ``model.fit(..., epochs=E,
  shuffle=True, verbose=0)``, where E is the number of epochs the harness needed for that
  seed, so that both do the same training work.

TensorFlow's seed and op determinism are process-global, so every variant of every
repeat runs in a fresh subprocess (this script re-invoked in a hidden ``--variant`` mode
that prints one JSON line). The harness runs first in each repeat because the plain run
needs its epoch count. The script prints each repeat, the median of each variant and the
ratios harness / plain. Timings are reported, never asserted: they depend on the machine
and on its load.

Run it from the repository root, in the project's environment::

    python bench/train_harness_vs_fit.py                 # seeds 1..3
    python bench/train_harness_vs_fit.py --repeats 5 --threads 1

The Markdown table printed at the end can be pasted into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchpipe.system import cpu_model
from benchwork import BENCHMARK, prepared_data, work_dir

RESULT_PREFIX = "BENCH_RESULT "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="harness/plain pairs (default 3)")
    p.add_argument("--first-seed", type=int, default=1, help="seed of the first repeat (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra/inter-op threads, both variants (default: all CPUs)")
    p.add_argument("--data", type=Path, default=None, help="reuse a prepared digits dataset directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    # Hidden: one variant in this (fresh) process, one JSON line on stdout.
    p.add_argument("--variant", choices=["harness", "plain"], help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- child: one variant


def run_harness(args: argparse.Namespace) -> dict:
    from benchpipe import benchmarks
    from benchpipe.results.mllog_parser import read_run
    from benchpipe.train.harness import Submission, train_run

    benchmark = benchmarks.get(BENCHMARK)
    started = time.perf_counter()
    outcome = train_run(benchmark, args.data, args.out, seed=args.seed,
                        submission=Submission("bench", "local", "closed", "research"),
                        threads=args.threads)
    wall = time.perf_counter() - started
    run = read_run(args.out)
    return {
        "status": outcome.status,
        "epochs": outcome.epochs,
        "accuracy": outcome.best_accuracy,
        "mllog_s": (run.run_stop_ms - run.run_start_ms) / 1000.0,
        "wall_s": wall,
    }


def run_plain(args: argparse.Namespace) -> dict:
    import numpy as np

    from benchpipe import benchmarks
    from benchpipe.datasets.prepare import load_split, read_manifest
    from benchpipe.train.harness import compile_model, configure_tensorflow

    benchmark = benchmarks.get(BENCHMARK)
    hp = benchmark.hyperparameters
    started_all = time.perf_counter()
    configure_tensorflow(args.seed, args.threads)
    # The same schedule as the harness: decay over max_epochs x steps_per_epoch.
    manifest = read_manifest(args.data)
    train_rows = sum(s["rows"] for s in manifest["shards"] if s["split"] == "train")
    steps_per_epoch = -(-train_rows // hp.global_batch_size)
    model = compile_model(benchmark, steps_per_epoch)
    started = time.perf_counter()
    train = load_split(args.data, "train")
    model.fit(train.features, train.labels, batch_size=hp.global_batch_size,
              epochs=args.epochs, shuffle=True, verbose=0)
    timed = time.perf_counter() - started
    total = time.perf_counter() - started_all
    # Untimed: the accuracy the plain run reached, as a sanity check that it trained.
    evaluation = load_split(args.data, "eval")
    logits = model.predict_on_batch(evaluation.features)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == evaluation.labels))
    return {"epochs": args.epochs, "accuracy": accuracy, "fit_s": timed, "total_s": total}


def child(args: argparse.Namespace) -> int:
    import tensorflow as tf

    result = run_harness(args) if args.variant == "harness" else run_plain(args)
    result.update(variant=args.variant, seed=args.seed, tf_version=tf.__version__)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------- parent: the comparison


def spawn(args: argparse.Namespace, variant: str, seed: int, data_dir: Path, work: Path,
          epochs: int | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--seed", str(seed),
           "--threads", str(args.threads), "--data", str(data_dir)]
    if variant == "harness":
        cmd += ["--out", str(work / "runs" / f"seed_{seed}")]
    else:
        cmd += ["--epochs", str(epochs)]
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        sys.exit(f"{variant} seed {seed} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.variant:
        return child(args)

    t0 = time.perf_counter()

    with work_dir("bench-train-", args.keep) as work:
        data_dir = prepared_data(args.data, work)
        harness, plain = [], []
        for rep in range(args.repeats):
            seed = args.first_seed + rep
            h = spawn(args, "harness", seed, data_dir, work)
            p = spawn(args, "plain", seed, data_dir, work, epochs=h["epochs"])
            harness.append(h)
            plain.append(p)
            print(f"seed {seed}: harness {h['status']} after {h['epochs']} epochs (top-1 {h['accuracy']:.4f}), "
                  f"run_start..run_stop {h['mllog_s']:.2f} s, train_run {h['wall_s']:.2f} s; "
                  f"plain {p['epochs']} epochs (top-1 {p['accuracy']:.4f}), load+fit {p['fit_s']:.2f} s, "
                  f"with set-up {p['total_s']:.2f} s", flush=True)

        def med(rows, key):
            return statistics.median(r[key] for r in rows)

        def each(rows, key):
            return ", ".join(f"{r[key]:.2f}" for r in rows)

        m_mllog, m_wall = med(harness, "mllog_s"), med(harness, "wall_s")
        m_fit, m_total = med(plain, "fit_s"), med(plain, "total_s")
        r_mllog = [h["mllog_s"] / p["fit_s"] for h, p in zip(harness, plain)]
        r_wall = [h["wall_s"] / p["fit_s"] for h, p in zip(harness, plain)]
        seeds = ", ".join(str(h["seed"]) for h in harness)
        epochs = ", ".join(str(h["epochs"]) for h in harness)
        total = time.perf_counter() - t0
        print()
        print(f"### Training: harness vs plain `model.fit` ({BENCHMARK})")
        print()
        print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
              f"Python {platform.python_version()}, TensorFlow {harness[0]['tf_version']}. "
              f"Threads {args.threads}, seeds {seeds} (epochs to target: {epochs}), each variant in a fresh "
              f"process, alternating harness/plain; script wall time {total:.0f} s.")
        print()
        print("| Variant | Median s | Per seed (s) |")
        print("|---|---:|---|")
        print(f"| Harness, MLLOG run_start..run_stop | {m_mllog:.2f} | {each(harness, 'mllog_s')} |")
        print(f"| Harness, `train_run` wall (incl. set-up, export) | {m_wall:.2f} | {each(harness, 'wall_s')} |")
        print(f"| Plain, `load_split` + `model.fit` | {m_fit:.2f} | {each(plain, 'fit_s')} |")
        print(f"| Plain, incl. TF set-up and compile | {m_total:.2f} | {each(plain, 'total_s')} |")
        print(f"| **Ratio harness (MLLOG) / plain** (of medians) | **{m_mllog / m_fit:.3f}** | "
              f"{', '.join(f'{r:.3f}' for r in r_mllog)} |")
        print(f"| Ratio `train_run` wall / plain (of medians) | {m_wall / m_fit:.3f} | "
              f"{', '.join(f'{r:.3f}' for r in r_wall)} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
