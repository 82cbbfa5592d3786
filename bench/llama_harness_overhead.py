#!/usr/bin/env python3
"""Time to train of llama2_70b_lora's stand-in through the benchpipe harness vs a plain Keras ``fit``.

What the harness adds to a LoRA fine-tuning run: the harness half is ``train_run`` as the
pipeline runs it (MLLOG events, the sample-counting ``BlockLogger`` callback, an evaluation of
the eval loss at every point of ``eval_points``, the check of the target after each); the plain
half is the same model trained by ``model.fit`` with one minimal callback and nothing else.
Goal: ratio harness / plain at most 1.02.

Data, made once in the parent: the generated corpus of ``benchpipe.benchmarks.llama.corpus``
(``--train-rows`` x ``--seq-len`` tokens, ``--eval-rows`` eval rows), prepared by
``benchpipe.datasets.prepare`` from the two Parquet files as the pipeline prepares the
reference's, or a prepared directory given with ``--data``. The benchmark: ``llama2_70b_lora``
resolved for the open division with the .test suite's stand-in settings
(.test/config/llama2_70b_lora.yaml: the stand-in Llama of 2 blocks, hidden 64, vocabulary 64;
LoRA rank 16; global batch 8 of micro-batches of 4, so two forward passes per optimizer step;
AdamW with its cosine schedule and clipping), with ``--max-steps``, ``--eval-every`` and
``--eval-start`` in samples. Both halves then get the benchmark with its quality target replaced
(``dataclasses.replace(benchmark, quality_target=--target)``); at the default 0.0 no eval loss
reaches it, so every run is "aborted" after ``max_steps`` steps and both halves do exactly the
same training and evaluation work. A target such as 0.925 (the benchmark's own) makes both stop
at the first evaluation at or under it instead; the script says where each stopped.

What is measured, for each pair (seed 1, 2, ...), each half in its own fresh process:

* Harness: ``train_run`` (threads ``--threads``, the default placement, warm-up on). Its figure
  is run_start..run_stop from the run's own MLLOG (what a submission reports as time to train:
  building both datasets, reading the shards, training, the evaluations); also init_start..
  init_stop (building, compiling, the warm-up's trace) and the MLLOG eval_start..eval_stop
  spans summed.
* Plain: the same pieces and nothing of the rest: ``configure_tensorflow(seed, threads)`` (seed,
  thread counts, op determinism, as the harness's init), the benchmark's own hooks for the
  model (``build_model``), the optimizer (``build_optimizer``), the datasets; ``compile`` with
  ``finetune.mean_loss`` and ``jit_compile=False``; the eval loss through ``finetune.loss_step``
  and ``eval_loss`` (the same summed token loss; Keras's ``evaluate`` would average per-batch
  means instead); the same ``finetune.warm_up`` the harness runs inside init, so that neither
  half pays for tracing the training step in its timed part (the eval step, warmed up on zeros
  of a training batch's shape, traces again at its first eval batch, in both halves alike: the
  table's "first evaluation"). Timed: ``hooks.train_dataset``,
  ``hooks.eval_dataset`` and ``model.fit(train, epochs=1, steps_per_epoch=max_steps x passes,
  shuffle=False, verbose=0)`` with one bare callback that counts forward passes, computes the
  eval loss at the same sample counts and stops at the same target. The difference is the
  harness's MLLOG events, its block bookkeeping and its step checks.

Both halves see the same seed, so they reach the same eval losses (op determinism): the table
says whether they did. TensorFlow's seed and determinism are process-global, so each half of
each pair runs in a fresh subprocess (this script re-invoked in a hidden ``--variant`` mode that
prints one JSON line); the order alternates between pairs (harness first, then plain first,
...), so that a drift in the machine's load favours neither. Timings are reported, never
asserted: they depend on the machine and on its load.

Run it from the repository root, in the project's environment::

    python bench/llama_harness_overhead.py                   # 5 pairs, 500 steps, 49 evaluations
    python bench/llama_harness_overhead.py --repeats 7 --max-steps 1000
    python bench/llama_harness_overhead.py --target 0.925    # both stop at the benchmark's target

At the defaults (500 steps, 49 evaluations of 64 eval rows) on 2 CPU cores: each half takes
about 3 s of init (TensorFlow, building, the warm-up's traces) and 8-10 s of timed run, ~16 s
a child with TensorFlow's import; ~2.5-3 min in all. ``--smoke`` (6 steps, 2 evaluations, one
pair) takes ~15 s. The Markdown table printed at the end can be pasted into docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from benchwork import parse_with_smoke, report_child, run_child, work_dir

from benchpipe.package.system import cpu_model

NAME = "llama2_70b_lora"
RULESET = "6.1.0"
VARIANTS = ("harness", "plain")
# The .test suite's stand-in settings (.test/config/llama2_70b_lora.yaml), less what the options set.
STAND_IN = {"model": "stand-in", "stand_in_vocabulary_size": 64, "global_batch_size": 8, "micro_batch_size": 4,
            "base_learning_rate": 0.02}
# What the parent passes on to each child, so that both halves build the same benchmark.
SHARED = ("threads", "seq_len", "max_steps", "eval_every", "eval_start", "target")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="pairs of the two halves (default 5)")
    p.add_argument("--first-seed", type=int, default=1, help="seed of the first pair (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra/inter-op threads, both halves (default: all CPUs)")
    g = p.add_argument_group("data (generated once, unless --data)")
    g.add_argument("--train-rows", type=int, default=512, help="train rows of the corpus (default 512)")
    g.add_argument("--eval-rows", type=int, default=64, help="eval rows of the corpus (default 64)")
    g.add_argument("--seq-len", type=int, default=64, help="tokens per row, the sequence_length (default 64)")
    g.add_argument("--data", type=Path, default=None,
                   help="reuse a prepared llama2_70b_lora directory of --seq-len tokens a row (e.g. a --keep'd run)")
    g.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    h = p.add_argument_group("benchmark (the stand-in's hyperparameters, replaced)")
    h.add_argument("--max-steps", type=int, default=500,
                   help="optimizer steps of 8 samples, also the schedule's length (default 500; the .test suite's 100)")
    h.add_argument("--eval-every", type=int, default=80, help="evaluate every N samples (default 80)")
    h.add_argument("--eval-start", type=int, default=160, help="first evaluation after N samples (default 160)")
    h.add_argument("--target", type=float, default=0.0,
                   help="eval-loss target of both halves (default 0.0: never reached, both run max_steps)")
    # Hidden: one half in this (fresh) process, one JSON line on stdout.
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parse_with_smoke(p, argv, repeats=1, train_rows=32, eval_rows=8, seq_len=32, max_steps=6,
                            eval_every=24, eval_start=24)


def stand_in(args: argparse.Namespace):
    """llama2_70b_lora resolved for the open division with the stand-in settings, its target replaced."""
    from benchpipe.benchmarks.hyperparameters import resolve_hyperparameters

    settings = {**STAND_IN, "sequence_length": args.seq_len, "max_steps": args.max_steps,
                "eval_every_samples": args.eval_every, "eval_start_samples": args.eval_start}
    benchmark = resolve_hyperparameters(NAME, {NAME: settings}, "open", RULESET)
    return dataclasses.replace(benchmark, quality_target=args.target)


# ---------------------------------------------------------------- child: one half


def run_harness(args: argparse.Namespace, warm_up: bool) -> dict:
    from benchpipe.results.mllog_parser import parse_mllog
    from benchpipe.train.harness import Submission, train_run

    benchmark = stand_in(args)
    started = time.perf_counter()
    outcome = train_run(benchmark, args.data, args.out, seed=args.seed,
                        submission=Submission("bench", "local", "open", "research"),
                        threads=args.threads, warm_up=warm_up)
    wall = time.perf_counter() - started
    events = parse_mllog(args.out / "mllog.txt")
    first = {}
    for e in events:
        first.setdefault(e.key, e)

    def span(start: str, stop: str) -> float:
        return (first[stop].time_ms - first[start].time_ms) / 1000.0

    starts = [e.time_ms for e in events if e.key == "eval_start"]
    stops = [e.time_ms for e in events if e.key == "eval_stop"]
    return {
        "status": outcome.status,
        "samples": first["run_stop"].metadata["samples_count"],
        "losses": [float(e.value) for e in events if e.key == "eval_accuracy"],
        "eval_samples": [int(e.metadata["samples_count"]) for e in events if e.key == "eval_accuracy"],
        "timed_s": span("run_start", "run_stop"),
        "evals_s": [(b - a) / 1000.0 for a, b in zip(starts, stops)],
        "init_s": span("init_start", "init_stop"),
        "wall_s": wall,
    }


def run_plain(args: argparse.Namespace, warm_up: bool) -> dict:
    import keras

    from benchpipe.train.finetune import eval_loss, eval_points, loss_step, mean_loss
    from benchpipe.train.finetune import warm_up as warm_up_steps
    from benchpipe.train.harness import configure_tensorflow

    benchmark = stand_in(args)
    hp = benchmark.hyperparameters
    started_all = time.perf_counter()
    configure_tensorflow(args.seed, args.threads)
    hooks = benchmark.trainer(hp)
    passes = hp.accumulation_steps(1)
    model = hooks.build_model(args.data)
    model.compile(optimizer=hooks.build_optimizer(1), loss=mean_loss(hooks), jit_compile=False)
    step = loss_step(model, hooks)
    if warm_up:
        warm_up_steps(model, hooks, 1, step)
    init = time.perf_counter() - started_all
    points = set(eval_points(hp))
    losses: list[float] = []
    at: list[int] = []
    evals_s: list[float] = []
    counted = [0]

    def on_train_batch_end(batch: int, logs: dict) -> None:
        counted[0] += 1
        samples = counted[0] // passes * hp.global_batch_size
        if counted[0] % passes or samples not in points:
            return
        started_eval = time.perf_counter()
        losses.append(eval_loss(step, evaluation))
        evals_s.append(time.perf_counter() - started_eval)
        at.append(samples)
        if benchmark.reached(losses[-1]):
            model.stop_training = True

    started = time.perf_counter()
    train = hooks.train_dataset(args.data, args.seed, 1)
    evaluation = hooks.eval_dataset(args.data)
    model.fit(train, epochs=1, steps_per_epoch=hp.max_steps * passes, shuffle=False, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=on_train_batch_end)])
    timed = time.perf_counter() - started
    return {"samples": counted[0] // passes * hp.global_batch_size, "losses": losses, "eval_samples": at,
            "timed_s": timed, "evals_s": evals_s, "init_s": init, "wall_s": time.perf_counter() - started_all}


def child(args: argparse.Namespace) -> int:
    return report_child(args, run_harness, run_plain)


# ---------------------------------------------------------------- parent: the comparison


def prepared_corpus(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    """The prepared dataset directory, and a few words on it for the machine line."""
    from benchpipe.contracts import registry
    from benchpipe.datasets.prepare import read_manifest

    if args.data is not None:
        data = args.data.resolve()
    else:
        from benchpipe.benchmarks.llama.corpus import write_corpus
        from benchpipe.contracts.hashing import sha256_file
        from benchpipe.datasets.prepare import prepare
        from benchpipe.datasets.source import override_sources

        files = write_corpus(work / "corpus", train_rows=args.train_rows, eval_rows=args.eval_rows,
                             length=args.seq_len)
        bench = registry.get(NAME)
        sources = override_sources(NAME, bench.sources, {n: {"urls": [p.as_uri()], "sha256": sha256_file(p)}
                                                          for n, p in files.items()})
        data = work / "data"
        prepare(dataclasses.replace(bench, sources=sources), data, work / "cache")
    rows = {"train": 0, "eval": 0}
    for shard in read_manifest(data)["shards"]:
        rows[shard["split"]] = rows.get(shard["split"], 0) + int(shard["rows"])
    return data, (f"{rows['train']} train / {rows['eval']} eval rows of {args.seq_len} tokens "
                  f"({'given' if args.data else 'the generated corpus'})")


def spawn(args: argparse.Namespace, variant: str, seed: int, data_dir: Path, work: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--seed", str(seed),
           "--data", str(data_dir)]
    for name in SHARED:
        cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    if variant == "harness":
        cmd += ["--out", str(work / "runs" / f"{variant}_seed_{seed}")]
    return run_child(cmd, work, variant, seed)


def losses_text(result: dict) -> str:
    shown = [f"{v:.3f}" for v in result["losses"]]
    return "/".join(shown if len(shown) <= 4 else [*shown[:2], "…", shown[-1]])


def points_text(points: list[int]) -> str:
    shown = [str(p) for p in points]
    return ", ".join(shown if len(shown) <= 6 else [*shown[:3], "…", *shown[-2:]])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.variant:
        return child(args)

    from benchpipe.train.finetune import eval_points

    benchmark = stand_in(args)
    hp = benchmark.hyperparameters
    points = eval_points(hp)
    t0 = time.perf_counter()

    with work_dir("bench-llama-harness-", args.keep) as work:
        data_dir, data_words = prepared_corpus(args, work)
        print(f"data: {data_words}, prepared in {time.perf_counter() - t0:.0f} s", flush=True)
        rows: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for rep in range(args.repeats):
            seed = args.first_seed + rep
            order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]
            results = {v: spawn(args, v, seed, data_dir, work) for v in order}
            for variant in VARIANTS:
                result = results[variant]
                evals = result["evals_s"]
                result["eval_s"] = sum(evals)
                result["train_s"] = result["timed_s"] - result["eval_s"]
                result["first_eval_s"] = evals[0]
                result["later_eval_s"] = statistics.median(evals[1:] or evals)
                rows[variant].append(result)
            h, p = results["harness"], results["plain"]
            print(f"pair {rep + 1}, seed {seed} ({' then '.join(order)}): harness {h['status']} after "
                  f"{h['samples']} samples (eval loss {losses_text(h)}), run_start..run_stop {h['timed_s']:.2f} s "
                  f"(evaluations {h['eval_s']:.2f} s), init {h['init_s']:.2f} s, train_run {h['wall_s']:.2f} s; "
                  f"plain {p['samples']} samples (eval loss {losses_text(p)}), datasets+fit {p['timed_s']:.2f} s "
                  f"(evaluations {p['eval_s']:.2f} s), init {p['init_s']:.2f} s; "
                  f"ratio {h['timed_s'] / p['timed_s']:.3f}", flush=True)
            if h["samples"] != p["samples"] or h["eval_samples"] != p["eval_samples"]:
                print(f"  note: the halves stopped at different points (harness {h['samples']}, plain "
                      f"{p['samples']} samples): they did different work this pair", flush=True)

        def med(variant: str, key: str) -> float:
            return statistics.median(r[key] for r in rows[variant])

        def each(variant: str, key: str) -> str:
            return ", ".join(f"{r[key]:.2f}" for r in rows[variant])

        def each3(variant: str, key: str) -> str:
            return ", ".join(f"{r[key]:.3f}" for r in rows[variant])

        each_pair = [h["timed_s"] / p["timed_s"] for h, p in zip(rows["harness"], rows["plain"])]
        harness = rows["harness"]
        seeds = ", ".join(str(h["seed"]) for h in harness)
        same = all(h["losses"] == p["losses"] and h["eval_samples"] == p["eval_samples"]
                   for h, p in zip(rows["harness"], rows["plain"]))
        stops = sorted({r["samples"] for v in VARIANTS for r in rows[v]})
        if args.target > 0:
            ending = (f"target {args.target:g} (eval loss at or under it; runs stopped after "
                      f"{', '.join(map(str, stops))} samples of {points[-1]})")
        else:
            ending = (f"quality target replaced by {args.target:g}, which no run reaches: every run is aborted after "
                      f"its {hp.max_steps} steps ({points[-1]} samples), the same work in both halves")
        ratio = med("harness", "timed_s") / med("plain", "timed_s")
        total = time.perf_counter() - t0
        print()
        print(f"### Training: harness vs plain Keras `fit` ({NAME}, stand-in Llama, LoRA rank {hp.lora_rank})")
        print()
        print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
              f"Python {platform.python_version()}, TensorFlow {harness[0]['tf_version']}. Data: {data_words}. "
              f"Stand-in Llama (2 blocks, hidden 64, vocabulary {hp.stand_in_vocabulary_size}), global batch "
              f"{hp.global_batch_size} in micro-batches of {hp.micro_batch_size} ({hp.accumulation_steps(1)} passes "
              f"a step), {hp.max_steps} steps at most, {len(points)} evaluations, after samples {points_text(points)}; "
              f"{ending}. Threads {args.threads}, seeds {seeds}, each half in a fresh "
              f"process, order harness, plain alternating per pair; eval losses identical in both: "
              f"{'yes' if same else 'NO'}; script wall time {total:.0f} s.")
        print()
        print("| Variant | Median s | Per pair (s) or ratio |")
        print("|---|---:|---|")
        timed = {"harness": "Harness, MLLOG run_start..run_stop",
                 "plain": "Plain, datasets + `model.fit` with the eval loss at each point"}
        evaluations = {"harness": "MLLOG eval_start..eval_stop", "plain": "the callback's evaluations"}
        for variant in VARIANTS:
            name = variant.capitalize()
            print(f"| {timed[variant]} | {med(variant, 'timed_s'):.2f} | {each(variant, 'timed_s')} |")
            print(f"| {name}, of which evaluations ({evaluations[variant]}, summed) | {med(variant, 'eval_s'):.2f} | "
                  f"{each(variant, 'eval_s')} |")
            print(f"| {name}, first evaluation | {med(variant, 'first_eval_s'):.3f} | "
                  f"{each3(variant, 'first_eval_s')} |")
            print(f"| {name}, later evaluations (median each) | {med(variant, 'later_eval_s'):.3f} | "
                  f"{each3(variant, 'later_eval_s')} |")
            print(f"| {name}, the rest: datasets, training steps, callbacks | {med(variant, 'train_s'):.2f} | "
                  f"{each(variant, 'train_s')} |")
        print(f"| Harness, MLLOG init_start..init_stop (incl. warm-up) | {med('harness', 'init_s'):.2f} | "
              f"{each('harness', 'init_s')} |")
        print(f"| Harness, `train_run` wall (incl. TF set-up) | {med('harness', 'wall_s'):.2f} | "
              f"{each('harness', 'wall_s')} |")
        print(f"| Plain, set-up: TF, build, compile, warm-up | {med('plain', 'init_s'):.2f} | "
              f"{each('plain', 'init_s')} |")
        rest_pairs = [h["train_s"] / p["train_s"] for h, p in zip(rows["harness"], rows["plain"])]
        print(f"| Ratio harness / plain, the rest only (of medians) | "
              f"{med('harness', 'train_s') / med('plain', 'train_s'):.3f} | "
              f"{', '.join(f'{r:.3f}' for r in rest_pairs)} (median {statistics.median(rest_pairs):.3f}) |")
        print(f"| **Ratio harness (MLLOG) / plain** (of medians) | **{ratio:.3f}** | "
              f"{', '.join(f'{r:.3f}' for r in each_pair)} (median {statistics.median(each_pair):.3f}) |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
