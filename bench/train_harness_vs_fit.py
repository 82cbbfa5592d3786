#!/usr/bin/env python3
"""Time to train through the benchpipe harness vs a plain ``model.fit``, digits model.

What is measured, side by side in one run, for each repeat (seed 1, 2, ...):

* Harness: ``train_run`` as the pipeline runs it: MLLOG events, an evaluation of the eval
  split at the benchmark's cadence, stopping at the quality target, then the SavedModel
  export. Init builds and compiles the model and warms up the training and evaluation
  steps on zeros. Three figures: run_start..run_stop from the run's own MLLOG (what a
  submission reports as time to train: reading the data, training, the evaluations),
  init_start..init_stop, and the wall time of the whole ``train_run`` call (also TF set-up
  and the export).
* Plain: the same model, data, seed, thread count, schedule and evaluation cadence with
  none of the rest: ``configure_tensorflow(seed, threads)``, ``compile_model(benchmark,
  steps_per_epoch)``, the same ``warm_up_steps``, then, timed, ``load_split`` of both
  splits and ``model.fit(..., epochs=E, shuffle=True, verbose=0)`` with one bare
  ``LambdaCallback`` that computes ``top1`` on the eval split at the harness's evaluation
  epochs, where E is the number of epochs the harness needed for that seed. Both do the
  same training and evaluation work; the difference is the harness's MLLOG events, its
  block and epoch bookkeeping and its check of the target. (Keras' own ``validation_data``
  is no baseline: it computes the loss, not top-1, through a tf.data pipeline of its own.)
* The same two without the warm-up ("cold"): each pays for tracing inside its timed part,
  as the harness did before it warmed up in init.

TensorFlow's seed and op determinism are process-global, so every variant of every
repeat runs in a fresh subprocess (this script re-invoked in a hidden ``--variant`` mode
that prints one JSON line). The harness runs first in each repeat because the others
need its epoch count. The script prints each repeat, the median of each variant and the
ratios harness / plain. Timings are reported, never asserted: they depend on the machine
and on its load.

Run it from the repository root, in the project's environment::

    python bench/train_harness_vs_fit.py                 # seeds 1..3
    python bench/train_harness_vs_fit.py --repeats 5 --threads 1

The Markdown table printed at the end can be pasted into docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from benchwork import BENCHMARK, parse_with_smoke, prepared_data, report_child, run_child, work_dir

from benchpipe.package.system import cpu_model

VARIANTS = ("harness", "plain", "harness-cold", "plain-cold")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds of the four variants (default 3)")
    p.add_argument("--first-seed", type=int, default=1, help="seed of the first repeat (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra/inter-op threads, both variants (default: all CPUs)")
    p.add_argument("--data", type=Path, default=None, help="reuse a prepared digits dataset directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    # Hidden: one variant in this (fresh) process, one JSON line on stdout.
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parse_with_smoke(p, argv, repeats=1)


# ---------------------------------------------------------------- child: one variant


def run_harness(args: argparse.Namespace, warm_up: bool) -> dict:
    from benchpipe.contracts import registry
    from benchpipe.results.mllog_parser import parse_mllog, read_run
    from benchpipe.train.harness import Submission, train_run

    benchmark = registry.get(BENCHMARK)
    started = time.perf_counter()
    outcome = train_run(benchmark, args.data, args.out, seed=args.seed,
                        submission=Submission("bench", "local", "closed", "research"),
                        threads=args.threads, warm_up=warm_up)
    wall = time.perf_counter() - started
    run = read_run(args.out)
    events = {e.key: e for e in parse_mllog(args.out / "mllog.txt")}
    return {
        "status": outcome.status,
        "epochs": outcome.epochs,
        "accuracy": outcome.best_accuracy,
        "mllog_s": (run.run_stop_ms - run.run_start_ms) / 1000.0,
        "init_s": (events["init_stop"].time_ms - events["init_start"].time_ms) / 1000.0,
        "wall_s": wall,
    }


def run_plain(args: argparse.Namespace, warm_up: bool) -> dict:
    import keras

    from benchpipe.contracts import registry
    from benchpipe.datasets.prepare import load_split
    from benchpipe.train.harness import (
        DataShape,
        compile_model,
        configure_tensorflow,
        eval_blocks,
        top1,
        warm_up_steps,
    )

    benchmark = registry.get(BENCHMARK)
    hp = benchmark.hyperparameters
    started_all = time.perf_counter()
    configure_tensorflow(args.seed, args.threads)
    # The same schedule as the harness: decay over max_epochs x steps_per_epoch.
    shape = DataShape.from_manifest(args.data)
    model = compile_model(benchmark, -(-shape.train_rows // hp.global_batch_size))
    if warm_up:
        warm_up_steps(model, hp.global_batch_size, shape)
    eval_epochs = {b.last_epoch for b in eval_blocks(benchmark, args.epochs)}
    accuracies: list[float] = []

    def evaluate(epoch: int, logs: dict) -> None:
        if epoch + 1 in eval_epochs:
            accuracies.append(top1(model, evaluation))

    started = time.perf_counter()
    train = load_split(args.data, "train")
    evaluation = load_split(args.data, "eval")
    model.fit(train.features, train.labels, batch_size=hp.global_batch_size, epochs=args.epochs,
              shuffle=True, verbose=0, callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=evaluate)])
    timed = time.perf_counter() - started
    total = time.perf_counter() - started_all
    return {"epochs": args.epochs, "accuracy": max(accuracies), "fit_s": timed, "total_s": total}


def child(args: argparse.Namespace) -> int:
    return report_child(args, run_harness, run_plain)


# ---------------------------------------------------------------- parent: the comparison


def spawn(args: argparse.Namespace, variant: str, seed: int, data_dir: Path, work: Path,
          epochs: int | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--seed", str(seed),
           "--threads", str(args.threads), "--data", str(data_dir)]
    if variant.startswith("harness"):
        cmd += ["--out", str(work / "runs" / f"{variant}_seed_{seed}")]
    else:
        cmd += ["--epochs", str(epochs)]
    return run_child(cmd, work, variant, seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.variant:
        return child(args)

    t0 = time.perf_counter()

    with work_dir("bench-train-", args.keep) as work:
        data_dir = prepared_data(args.data, work)
        rows: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for rep in range(args.repeats):
            seed = args.first_seed + rep
            h = spawn(args, "harness", seed, data_dir, work)
            p = spawn(args, "plain", seed, data_dir, work, epochs=h["epochs"])
            hc = spawn(args, "harness-cold", seed, data_dir, work)
            pc = spawn(args, "plain-cold", seed, data_dir, work, epochs=h["epochs"])
            for variant, result in zip(VARIANTS, (h, p, hc, pc)):
                rows[variant].append(result)
            print(f"seed {seed}: harness {h['status']} after {h['epochs']} epochs (top-1 {h['accuracy']:.4f}), "
                  f"run_start..run_stop {h['mllog_s']:.2f} s, init {h['init_s']:.2f} s, "
                  f"train_run {h['wall_s']:.2f} s; plain {p['epochs']} epochs (top-1 {p['accuracy']:.4f}), "
                  f"load+fit {p['fit_s']:.2f} s, with set-up {p['total_s']:.2f} s; "
                  f"cold: harness {hc['epochs']} epochs (top-1 {hc['accuracy']:.4f}) {hc['mllog_s']:.2f} s, "
                  f"plain {pc['fit_s']:.2f} s", flush=True)

        def med(variant: str, key: str) -> float:
            return statistics.median(r[key] for r in rows[variant])

        def each(variant: str, key: str) -> str:
            return ", ".join(f"{r[key]:.2f}" for r in rows[variant])

        def ratios(num: str, num_key: str, den: str, den_key: str) -> str:
            # Seeds train for different numbers of epochs: the median of the per-seed ratios
            # compares like with like, the ratio of medians need not.
            each_seed = [a[num_key] / b[den_key] for a, b in zip(rows[num], rows[den])]
            return f"{', '.join(f'{r:.3f}' for r in each_seed)} (median {statistics.median(each_seed):.3f})"

        harness = rows["harness"]
        seeds = ", ".join(str(h["seed"]) for h in harness)
        epochs = ", ".join(str(h["epochs"]) for h in harness)
        total = time.perf_counter() - t0
        print()
        print(f"### Training: harness vs plain `model.fit` ({BENCHMARK})")
        print()
        print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
              f"Python {platform.python_version()}, TensorFlow {harness[0]['tf_version']}. "
              f"Threads {args.threads}, seeds {seeds} (epochs to target: {epochs}), each variant in a fresh "
              f"process, in turn harness, plain, harness cold, plain cold; script wall time {total:.0f} s.")
        print()
        print("| Variant | Median s | Per seed (s) or ratio |")
        print("|---|---:|---|")
        print(f"| Harness, MLLOG run_start..run_stop | {med('harness', 'mllog_s'):.2f} | {each('harness', 'mllog_s')} |")
        print(f"| Harness, MLLOG init_start..init_stop (incl. warm-up) | {med('harness', 'init_s'):.2f} | "
              f"{each('harness', 'init_s')} |")
        print(f"| Harness, `train_run` wall (incl. set-up, export) | {med('harness', 'wall_s'):.2f} | "
              f"{each('harness', 'wall_s')} |")
        print(f"| Plain, `load_split` + `model.fit` with `top1` at each evaluation epoch | {med('plain', 'fit_s'):.2f} | "
              f"{each('plain', 'fit_s')} |")
        print(f"| Plain, incl. TF set-up, compile and warm-up | {med('plain', 'total_s'):.2f} | "
              f"{each('plain', 'total_s')} |")
        print(f"| Harness cold (no warm-up), MLLOG run_start..run_stop | {med('harness-cold', 'mllog_s'):.2f} | "
              f"{each('harness-cold', 'mllog_s')} |")
        print(f"| Plain cold (no warm-up), `load_split` + `model.fit` | {med('plain-cold', 'fit_s'):.2f} | "
              f"{each('plain-cold', 'fit_s')} |")
        print(f"| **Ratio harness (MLLOG) / plain** (of medians) | "
              f"**{med('harness', 'mllog_s') / med('plain', 'fit_s'):.3f}** | "
              f"{ratios('harness', 'mllog_s', 'plain', 'fit_s')} |")
        print(f"| Ratio harness cold / plain cold (of medians) | "
              f"{med('harness-cold', 'mllog_s') / med('plain-cold', 'fit_s'):.3f} | "
              f"{ratios('harness-cold', 'mllog_s', 'plain-cold', 'fit_s')} |")
        print(f"| Ratio harness / harness cold (of medians) | "
              f"{med('harness', 'mllog_s') / med('harness-cold', 'mllog_s'):.3f} | "
              f"{ratios('harness', 'mllog_s', 'harness-cold', 'mllog_s')} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
