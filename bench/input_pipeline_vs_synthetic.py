#!/usr/bin/env python3
"""Training throughput fed by the ResNet input pipeline vs by synthetic tensors, side by side.

What is measured: images/s of ``train_on_batch`` steps of one compiled Keras model
(ResNet-50 v1.5-shaped ``keras.applications.ResNet50(weights=None)`` by default, or a
small conv net) at ``--image-size``, fed either

* pipeline: batches of ``train_dataset`` (decode of the crop window, flip, resize, mean)
  from TFRecords converted from a generated tree of photo-sized JPEGs (500x375 and
  375x500), one iterator kept across windows, so that its shuffle buffer is filled once;
* synthetic: one in-memory batch of the same shape and dtype, fed again every step.

Both run in this process on the same model, in windows of ``--steps`` steps, alternating
which goes first each round, after a warm-up of each. The ratio pipeline / synthetic of the
medians says how much of the step time the input costs (goal: at least 0.98). On a CPU
the pipeline's decode competes with the model for the same cores, so the ratio there is
a lower bound for a machine where the model runs on an accelerator. Timings are reported,
never asserted.

Run from the repository root, in the project's environment::

    python bench/input_pipeline_vs_synthetic.py                         # ResNet50 at 64, ~3 min on 2 cores
    python bench/input_pipeline_vs_synthetic.py --model small --image-size 128 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from benchwork import parse_with_smoke, work_dir
from preprocess_workers import make_tree

from benchpipe.package.system import cpu_model


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synsets", type=int, default=8)
    p.add_argument("--per-class", type=int, default=40, help="train images per synset")
    p.add_argument("--model", choices=["resnet50", "small"], default="resnet50")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20, help="steps per timed window")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0: TensorFlow's)")
    p.add_argument("--keep", action="store_true")
    return parse_with_smoke(p, synsets=2, per_class=4, model="small", image_size=32, batch=4, steps=2,
                            rounds=1)


def build_model(kind: str, image_size: int, classes: int):
    import keras

    if kind == "resnet50":
        model = keras.applications.ResNet50(weights=None, input_shape=(image_size, image_size, 3), classes=classes)
    else:
        model = keras.Sequential([
            keras.Input((image_size, image_size, 3)),
            *[layer for width in (32, 64, 128) for layer in (
                keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False),
                keras.layers.BatchNormalization(), keras.layers.ReLU())],
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes),
        ])
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=kind == "small"))
    return model


def window(model, next_batch, steps: int) -> float:
    """Images/s over ``steps`` training steps."""
    start = time.perf_counter()
    for _ in range(steps):
        images, labels = next_batch()
        model.train_on_batch(images, labels)
    return steps * int(images.shape[0]) / (time.perf_counter() - start)


def main() -> int:
    args = parse_args()
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from benchpipe.benchmarks.resnet.input_pipeline import split_size, train_dataset
    from benchpipe.datasets.imagenet import Subset, check_layout
    from benchpipe.datasets.tfrecord import convert

    script_start = time.perf_counter()
    with work_dir("bench-input-pipeline-", args.keep) as work:
        total_bytes = make_tree(work / "src", args.synsets, args.per_class, val=2)  # the fewest a conversion takes
        files = check_layout(work / "src" / "train", work / "src" / "val", work / "src" / "val_map.txt",
                             num_synsets=args.synsets, subset=Subset(args.per_class, 2))
        data = work / "imagenet"
        convert(files, data, workers=min(2, os.cpu_count() or 1))
        images = split_size(data, "train")
        model = build_model(args.model, args.image_size, args.synsets)
        stream = iter(train_dataset(data, global_batch_size=args.batch, image_size=args.image_size, seed=1,
                                    epochs=None))
        rng = np.random.default_rng(1)
        synthetic = (tf.constant(rng.uniform(-120, 130, (args.batch, args.image_size, args.image_size, 3)),
                                 tf.float32),
                     tf.constant(rng.integers(0, args.synsets, args.batch), tf.int32))
        feeds = {"pipeline": lambda: next(stream), "synthetic": lambda: synthetic}
        for feed in feeds.values():  # tracing, the shuffle buffer's first fill, allocator warm-up
            window(model, feed, max(3, args.steps // 4))
        rates: dict[str, list[float]] = {name: [] for name in feeds}
        for r in range(args.rounds):
            order = ("pipeline", "synthetic") if r % 2 == 0 else ("synthetic", "pipeline")
            for name in order:
                rates[name].append(window(model, feeds[name], args.steps))
            print(f"round {r}: pipeline {rates['pipeline'][-1]:.1f}, synthetic {rates['synthetic'][-1]:.1f} images/s",
                  file=sys.stderr)
    pipeline, synthetic_rate = statistics.median(rates["pipeline"]), statistics.median(rates["synthetic"])
    print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}, TensorFlow {tf.__version__}. Model {args.model} at "
          f"{args.image_size}x{args.image_size}, batch {args.batch}, {args.steps} steps a window, {args.rounds} rounds "
          f"(alternating). {images} train images of {total_bytes / (images + 2) / 1024:.0f} KiB on average. "
          f"Script wall time {time.perf_counter() - script_start:.0f} s.\n")
    print("| Feed | Median images/s | Per round (images/s) |")
    print("|---|---:|---|")
    for name in feeds:
        print(f"| {name} | {statistics.median(rates[name]):.1f} | {', '.join(f'{v:.1f}' for v in rates[name])} |")
    pairs = ", ".join(f"{p / s:.3f}" for p, s in zip(rates["pipeline"], rates["synthetic"], strict=True))
    print(f"| **ratio pipeline / synthetic** (of medians) | **{pipeline / synthetic_rate:.3f}** | {pairs} |")
    print("\n" + json.dumps({"model": args.model, "image_size": args.image_size, "batch": args.batch,
                             "median_images_per_s": {"pipeline": pipeline, "synthetic": synthetic_rate},
                             "ratio": pipeline / synthetic_rate}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
