#!/usr/bin/env python3
"""Time to train through the benchpipe harness vs a plain ``model.fit``, ResNet-50 at small image size.

The ``resnet`` half of the harness-overhead measurement (bench/train_harness_vs_fit.py is
the ``digits`` half; goal: ratio harness / plain at most 1.02 for both).

Data, made once in the parent: a generated tree in ImageNet's layout (``--synsets``
synsets x ``--per-class`` train images, ``--val`` val images; photo-sized JPEGs, 500x375
and 375x500, from bench/preprocess_workers.py's ``make_tree``), converted to TFRecords by
``benchpipe.datasets.tfrecord.convert`` with 1 worker, or a converted directory given
with ``--data``. The benchmark: ``resnet`` (ResNet-50 v1.5, LARS, label smoothing, its
own tf.data input pipeline) with its hyperparameters replaced for small runs:
``--image-size``, ``--batch`` (global batch size), ``--max-epochs`` (also the length of
the learning-rate schedule), ``--warmup-epochs``; the evaluation cadence is the
benchmark's (after epoch 2, then every 4: epochs 2 and 6 at the default 6 epochs) unless
``--eval-every`` / ``--eval-offset`` say otherwise. A few hundred generated images never
reach the quality target (0.759), so every run is "aborted" after the same number of
epochs (``max_epochs`` rounded up to an evaluation epoch): both variants do the same
training and evaluation work by construction.

What is measured, side by side in one run, for each repeat (seed 1, 2, ...):

* Harness: ``train_run`` as the pipeline runs it: MLLOG events, the benchmark's trainer
  hooks, an evaluation of the val split at the cadence, the check of the target, then the
  SavedModel export. Init builds and compiles the model and warms up the training and
  evaluation steps on zeros. Three figures: run_start..run_stop from the run's own MLLOG
  (time to train: building the input pipelines, reading and decoding the JPEGs, training,
  the evaluations), init_start..init_stop, and the wall time of the whole ``train_run``
  call (also TF set-up and the export).
* Plain: the same pieces with none of the rest: ``configure_tensorflow(seed, threads)``,
  ``hooks.build_model``, ``compile`` with ``hooks.build_optimizer(steps)``,
  ``hooks.loss()`` and ``jit_compile=False``, ``dataset_top1`` and the same
  ``warm_up_dataset_steps`` (no reseeding after it, as in the harness), then, timed,
  ``hooks.train_dataset(data, seed, E)``, ``hooks.eval_dataset(data)`` and
  ``model.fit(train, epochs=E, steps_per_epoch=steps, shuffle=False, verbose=0)`` with one
  bare ``LambdaCallback`` that computes top-1 on the eval dataset at the harness's
  evaluation epochs (``eval_blocks``). The difference is the harness's MLLOG events, its
  block and epoch bookkeeping and its check of the target. Both reach the same eval
  accuracies (same seed, op determinism): the table says whether they did.
* With ``--cold``, the same two without the warm-up: each pays for tracing ResNet-50's
  training and evaluation steps inside its timed part. Off by default: it doubles the run.

TensorFlow's seed and op determinism are process-global, so every variant of every
repeat runs in a fresh subprocess (this script re-invoked in a hidden ``--variant`` mode
that prints one JSON line). The order alternates between repeats (harness first, then
plain first, ...), so that a drift in the machine's load favours neither. The script
prints each repeat, with each epoch's training time (without its evaluation), so that a
one-off cost inside the timed part, such as a step traced again in the first epoch, shows;
then the median of each variant and the ratios harness / plain. Timings are reported,
never asserted: they depend on the machine and on its load.

Run it from the repository root, in the project's environment::

    python bench/resnet_harness_vs_fit.py                    # 3 repeats, 64 px; ~4-5 min on 2 cores
    python bench/resnet_harness_vs_fit.py --repeats 5 --cold
    python bench/resnet_harness_vs_fit.py --repeats 1 --image-size 32 --synsets 2 --per-class 8 --val 8 \\
        --batch 4 --max-epochs 2 --eval-every 1 --eval-offset 0     # smoke run, ~1.5 min

At the defaults (4 synsets x 24 train images, 32 val, 64x64, batch 16: 6 steps an
epoch, 6 epochs, 2 evaluations) on 2 CPU cores: the data takes ~15 s; one variant
~30-40 s, of which the timed part ~20 s (~0.45 s a step) and the rest TensorFlow's
start, building ResNet-50, tracing its steps and, for the harness, the export; so
~1.3 min a repeat, ~4-5 min in all, about twice that with ``--cold``. The Markdown
table printed at the end can be pasted into docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from benchwork import parse_with_smoke, report_child, run_child, work_dir

from benchpipe.package.system import cpu_model

BENCHMARK = "resnet"
VARIANTS = ("harness", "plain", "harness-cold", "plain-cold")
# What the parent passes on to each child, so that every variant builds the same benchmark.
SHARED = ("threads", "image_size", "batch", "max_epochs", "warmup_epochs", "eval_every", "eval_offset")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds of the variants (default 3)")
    p.add_argument("--first-seed", type=int, default=1, help="seed of the first repeat (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra/inter-op threads, every variant (default: all CPUs)")
    p.add_argument("--cold", action="store_true",
                   help="also run both variants without the warm-up (doubles the run)")
    g = p.add_argument_group("data (generated once, unless --data)")
    g.add_argument("--synsets", type=int, default=4, help="classes (default 4)")
    g.add_argument("--per-class", type=int, default=24, help="train images per synset (default 24)")
    g.add_argument("--val", type=int, default=32, help="val images (default 32)")
    g.add_argument("--data", type=Path, default=None,
                   help="reuse a converted ImageNet directory (`benchpipe datasets imagenet`, or a --keep'd run)")
    g.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    h = p.add_argument_group("benchmark (resnet's hyperparameters, replaced)")
    h.add_argument("--image-size", type=int, default=64, help="square input size (default 64; the benchmark's 224)")
    h.add_argument("--batch", type=int, default=16, help="global batch size (default 16)")
    h.add_argument("--max-epochs", type=int, default=6,
                   help="epochs, rounded up to an evaluation epoch; also the schedule's length (default 6)")
    h.add_argument("--warmup-epochs", type=float, default=1.0, help="learning-rate warm-up epochs (default 1)")
    h.add_argument("--eval-every", type=int, default=None, help="evaluate every N epochs (default: the benchmark's, 4)")
    h.add_argument("--eval-offset", type=int, default=None,
                   help="first evaluation after this epoch, 0: none apart (default: the benchmark's, 2)")
    # Hidden: one variant in this (fresh) process, one JSON line on stdout.
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parse_with_smoke(p, argv, repeats=1, synsets=2, per_class=4, val=4, image_size=32, batch=4, max_epochs=2,
                            eval_every=1, eval_offset=0)


def small_benchmark(args: argparse.Namespace):
    """``resnet`` with the size knobs of ``args``; the rest (LARS, label smoothing, target) as is."""
    from benchpipe.contracts import registry

    resnet = registry.get(BENCHMARK)
    hp = dataclasses.replace(resnet.hyperparameters, image_size=args.image_size, global_batch_size=args.batch,
                             max_epochs=args.max_epochs, warmup_epochs=args.warmup_epochs)
    return dataclasses.replace(
        resnet,
        hyperparameters=hp,
        eval_every_epochs=resnet.eval_every_epochs if args.eval_every is None else args.eval_every,
        eval_offset=resnet.eval_offset if args.eval_offset is None else args.eval_offset,
    )


# ---------------------------------------------------------------- child: one variant


def run_harness(args: argparse.Namespace, warm_up: bool) -> dict:
    from benchpipe.results.mllog_parser import parse_mllog, read_run
    from benchpipe.train.harness import Submission, train_run

    benchmark = small_benchmark(args)
    started = time.perf_counter()
    outcome = train_run(benchmark, args.data, args.out, seed=args.seed,
                        submission=Submission("bench", "local", "closed", "research"),
                        threads=args.threads, warm_up=warm_up)
    wall = time.perf_counter() - started
    run = read_run(args.out)
    events = parse_mllog(args.out / "mllog.txt")
    first = {}
    for e in events:
        first.setdefault(e.key, e)
    return {
        "status": outcome.status,
        "epochs": outcome.epochs,
        "accuracies": [float(e.value) for e in events if e.key == "eval_accuracy"],
        # Training only, as plain's: each evaluation runs after its epoch_stop.
        "epoch_s": [(stop.time_ms - start.time_ms) / 1000.0 for start, stop in zip(
            (e for e in events if e.key == "epoch_start"), (e for e in events if e.key == "epoch_stop"))],
        "timed_s": (run.run_stop_ms - run.run_start_ms) / 1000.0,
        "init_s": (first["init_stop"].time_ms - first["init_start"].time_ms) / 1000.0,
        "wall_s": wall,
    }


def run_plain(args: argparse.Namespace, warm_up: bool) -> dict:
    import keras

    from benchpipe.train.harness import configure_tensorflow, dataset_top1, eval_blocks, warm_up_dataset_steps

    benchmark = small_benchmark(args)
    hooks = benchmark.trainer(benchmark.hyperparameters)
    blocks = eval_blocks(benchmark, benchmark.hyperparameters.max_epochs)
    epochs = blocks[-1].last_epoch
    eval_epochs = {b.last_epoch for b in blocks}

    started_all = time.perf_counter()
    configure_tensorflow(args.seed, args.threads)
    train_samples, _ = hooks.sizes(args.data)
    steps = hooks.steps_per_epoch(train_samples)
    model = hooks.build_model(args.data)
    model.compile(optimizer=hooks.build_optimizer(steps), loss=hooks.loss(), jit_compile=False)
    evaluate = dataset_top1(hooks, model)
    if warm_up:
        warm_up_dataset_steps(model, hooks, evaluate)
    init = time.perf_counter() - started_all
    accuracies: list[float] = []
    epoch_s: list[float] = []
    epoch_started = [0.0]

    def on_epoch_begin(epoch: int, logs: dict) -> None:
        epoch_started[0] = time.perf_counter()

    def on_epoch_end(epoch: int, logs: dict) -> None:
        epoch_s.append(time.perf_counter() - epoch_started[0])
        if epoch + 1 in eval_epochs:
            accuracies.append(evaluate(evaluation))

    started = time.perf_counter()
    train = hooks.train_dataset(args.data, args.seed, epochs)
    evaluation = hooks.eval_dataset(args.data)
    history = model.fit(train, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.LambdaCallback(on_epoch_begin=on_epoch_begin,
                                                                   on_epoch_end=on_epoch_end)])
    timed = time.perf_counter() - started
    return {"epochs": len(history.epoch), "accuracies": accuracies, "epoch_s": epoch_s, "timed_s": timed,
            "init_s": init, "wall_s": time.perf_counter() - started_all}


def child(args: argparse.Namespace) -> int:
    return report_child(args, run_harness, run_plain)


# ---------------------------------------------------------------- parent: the comparison


def prepared_imagenet(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    """The converted dataset directory, and a few words on it for the machine line."""
    if args.data is not None:
        data = args.data.resolve()
    else:
        from preprocess_workers import make_tree

        from benchpipe.datasets.imagenet import Subset, check_layout
        from benchpipe.datasets.tfrecord import convert

        src = work / "src"
        make_tree(src, args.synsets, args.per_class, args.val)
        files = check_layout(src / "train", src / "val", src / "val_map.txt", num_synsets=args.synsets,
                             subset=Subset(args.per_class, args.val))
        data = work / "imagenet"
        convert(files, data, workers=1)
    manifest = json.loads((data / "manifest.json").read_text())
    counts = manifest["counts"]
    return data, (f"{counts['train']} train / {counts['val']} val images in {manifest['classes']} classes "
                  f"({'given' if args.data else 'generated, photo-sized JPEGs'})")


def spawn(args: argparse.Namespace, variant: str, seed: int, data_dir: Path, work: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--seed", str(seed),
           "--data", str(data_dir)]
    for name in SHARED:
        value = getattr(args, name)
        if value is not None:
            cmd += ["--" + name.replace("_", "-"), str(value)]
    if variant.startswith("harness"):
        cmd += ["--out", str(work / "runs" / f"{variant}_seed_{seed}")]
    return run_child(cmd, work, variant, seed)


def top1s(result: dict) -> str:
    return "/".join(f"{a:.3f}" for a in result["accuracies"])


def epochs_s(result: dict) -> str:
    return "/".join(f"{s:.1f}" for s in result["epoch_s"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.variant:
        return child(args)

    from benchpipe.train.harness import eval_blocks

    benchmark = small_benchmark(args)
    blocks = eval_blocks(benchmark, args.max_epochs)
    epochs, eval_epochs = blocks[-1].last_epoch, [b.last_epoch for b in blocks]
    variants = VARIANTS if args.cold else VARIANTS[:2]
    t0 = time.perf_counter()

    with work_dir("bench-resnet-train-", args.keep) as work:
        data_dir, data_words = prepared_imagenet(args, work)
        print(f"data: {data_words}, prepared in {time.perf_counter() - t0:.0f} s", flush=True)
        rows: dict[str, list[dict]] = {v: [] for v in variants}
        for rep in range(args.repeats):
            seed = args.first_seed + rep
            # Alternate who goes first; cold after warm, as in the digits script.
            order = [v for pair in zip(variants[0::2], variants[1::2]) for v in (pair if rep % 2 == 0 else pair[::-1])]
            results = {v: spawn(args, v, seed, data_dir, work) for v in order}
            for variant in variants:
                result = results[variant]
                result["first_epoch_s"] = result["epoch_s"][0]
                result["later_epoch_s"] = statistics.median(result["epoch_s"][1:] or result["epoch_s"])
                rows[variant].append(result)
            h, p = results["harness"], results["plain"]
            line = (f"seed {seed} ({' then '.join(order)}): harness {h['status']} after {h['epochs']} epochs "
                    f"(top-1 {top1s(h)}), run_start..run_stop {h['timed_s']:.2f} s (epochs {epochs_s(h)}), "
                    f"init {h['init_s']:.2f} s, train_run {h['wall_s']:.2f} s; plain {p['epochs']} epochs "
                    f"(top-1 {top1s(p)}), datasets+fit {p['timed_s']:.2f} s (epochs {epochs_s(p)}), "
                    f"init {p['init_s']:.2f} s, all {p['wall_s']:.2f} s")
            if args.cold:
                hc, pc = results["harness-cold"], results["plain-cold"]
                line += f"; cold: harness {hc['timed_s']:.2f} s, plain {pc['timed_s']:.2f} s"
            print(line, flush=True)
            if h["status"] != "aborted" or h["epochs"] != epochs:
                print(f"  note: the harness ran {h['epochs']} epochs ({h['status']}), not {epochs}: "
                      "the two variants did different work this repeat", flush=True)

        def med(variant: str, key: str) -> float:
            return statistics.median(r[key] for r in rows[variant])

        def each(variant: str, key: str) -> str:
            return ", ".join(f"{r[key]:.2f}" for r in rows[variant])

        def ratios(num: str, den: str, key: str = "timed_s") -> str:
            each_seed = [a[key] / b[key] for a, b in zip(rows[num], rows[den])]
            return f"{', '.join(f'{r:.3f}' for r in each_seed)} (median {statistics.median(each_seed):.3f})"

        harness = rows["harness"]
        seeds = ", ".join(str(h["seed"]) for h in harness)
        same = all(h["accuracies"] == p["accuracies"] for h, p in zip(rows["harness"], rows["plain"]))
        hp = benchmark.hyperparameters
        order_words = "harness, plain" + (", harness cold, plain cold" if args.cold else "")
        total = time.perf_counter() - t0
        print()
        print(f"### Training: harness vs plain `model.fit` ({BENCHMARK}, ResNet-50 at {hp.image_size}x{hp.image_size})")
        print()
        print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
              f"Python {platform.python_version()}, TensorFlow {harness[0]['tf_version']}. "
              f"Data: {data_words}. Batch {hp.global_batch_size}, {epochs} epochs (aborted: target not reached), "
              f"evaluations after epochs {', '.join(map(str, eval_epochs))}, LR warm-up {hp.warmup_epochs:g} epochs. "
              f"Threads {args.threads}, seeds {seeds}, each variant in a fresh process, order {order_words} "
              f"alternating per seed; eval top-1 identical in both: {'yes' if same else 'NO'}; "
              f"script wall time {total:.0f} s.")
        print()
        print("| Variant | Median s | Per seed (s) or ratio |")
        print("|---|---:|---|")
        print(f"| Harness, MLLOG run_start..run_stop | {med('harness', 'timed_s'):.2f} | "
              f"{each('harness', 'timed_s')} |")
        print(f"| Harness, MLLOG init_start..init_stop (incl. warm-up) | {med('harness', 'init_s'):.2f} | "
              f"{each('harness', 'init_s')} |")
        print(f"| Harness, `train_run` wall (incl. set-up, export) | {med('harness', 'wall_s'):.2f} | "
              f"{each('harness', 'wall_s')} |")
        print(f"| Plain, datasets + `model.fit` with top-1 at each evaluation epoch | {med('plain', 'timed_s'):.2f} | "
              f"{each('plain', 'timed_s')} |")
        print(f"| Plain, set-up: TF, build, compile, warm-up | {med('plain', 'init_s'):.2f} | "
              f"{each('plain', 'init_s')} |")
        for variant in ("harness", "plain"):
            print(f"| {variant.capitalize()}, first epoch (training only) | {med(variant, 'first_epoch_s'):.2f} | "
                  f"{each(variant, 'first_epoch_s')} |")
            print(f"| {variant.capitalize()}, later epochs (training only, median each) | "
                  f"{med(variant, 'later_epoch_s'):.2f} | {each(variant, 'later_epoch_s')} |")
        if args.cold:
            print(f"| Harness cold (no warm-up), MLLOG run_start..run_stop | {med('harness-cold', 'timed_s'):.2f} | "
                  f"{each('harness-cold', 'timed_s')} |")
            print(f"| Plain cold (no warm-up), datasets + `model.fit` | {med('plain-cold', 'timed_s'):.2f} | "
                  f"{each('plain-cold', 'timed_s')} |")
        print(f"| **Ratio harness (MLLOG) / plain** (of medians) | "
              f"**{med('harness', 'timed_s') / med('plain', 'timed_s'):.3f}** | {ratios('harness', 'plain')} |")
        if args.cold:
            print(f"| Ratio harness cold / plain cold (of medians) | "
                  f"{med('harness-cold', 'timed_s') / med('plain-cold', 'timed_s'):.3f} | "
                  f"{ratios('harness-cold', 'plain-cold')} |")
            print(f"| Ratio harness / harness cold (of medians) | "
                  f"{med('harness', 'timed_s') / med('harness-cold', 'timed_s'):.3f} | "
                  f"{ratios('harness', 'harness-cold')} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
