#!/usr/bin/env python3
"""ImageNet preprocessing with 1 and with 2 worker processes, side by side in one run.

What is measured: `benchpipe datasets imagenet` on a generated tree of the ImageNet layout
(train/<synset>/*.JPEG, val/, val_map.txt; photo-sized JPEGs, 500x375 and 375x500), in a
fresh process per conversion, exactly as the workflow's rule runs it, alternating the
worker counts each round. Reported, with the ratio 2 / 1 of the medians (goal: at least
1.8 on 2 cores):

* end to end: images / wall time of the whole command (process start, TensorFlow's import
  in each worker, layout check, conversion, manifest), what a user waits for;
* conversion: the shards alone (`write_shard` over every shard of the same tree), in this
  process for 1 worker and by a spawned pool whose 2 workers have already imported
  TensorFlow: the part that grows with the dataset, without the fixed start-up.

Each round also checks that both worker counts give byte-identical shards. Timings are
reported, never asserted.

Run from the repository root, in the project's environment::

    python bench/preprocess_workers.py                       # 12 synsets x 40 + 160 val, 2 rounds; ~2 min
    python bench/preprocess_workers.py --per-class 100 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchwork import parse_with_smoke, work_dir

from benchpipe.datasets.tfrecord import init_worker
from benchpipe.package.system import cpu_model

BENCHPIPE = str(Path(sys.executable).parent / "benchpipe")
SIZES = ((375, 500), (500, 375))  # (height, width): ImageNet's most common shapes


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synsets", type=int, default=12)
    p.add_argument("--per-class", type=int, default=40, help="train images per synset")
    p.add_argument("--val", type=int, default=160, help="val images")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--keep", action="store_true")
    return parse_with_smoke(p, synsets=2, per_class=4, val=4, rounds=1)


def photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth shapes plus sensor-like noise: compresses to about the size of a real photo."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3))
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(30, 200)
        image += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(0, 120, 3)
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_tree(root: Path, synsets: int, per_class: int, val: int) -> int:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    total_bytes = 0

    def write(path: Path) -> None:
        nonlocal total_bytes
        height, width = SIZES[int(rng.integers(len(SIZES)))]
        data = tf.io.encode_jpeg(photo_like(rng, height, width), quality=90).numpy()
        path.write_bytes(data)
        total_bytes += len(data)

    names = [f"n{10000000 + k:08d}" for k in range(synsets)]
    for synset in names:
        (root / "train" / synset).mkdir(parents=True)
        for n in range(per_class):
            write(root / "train" / synset / f"{synset}_{n}.JPEG")
    (root / "val").mkdir()
    lines = []
    for n in range(1, val + 1):
        write(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG")
        lines.append(f"ILSVRC2012_val_{n:08d}.JPEG {n % synsets}\n")
    (root / "val_map.txt").write_text("".join(lines))
    return total_bytes


def convert(src: Path, out: Path, args: argparse.Namespace, workers: int) -> float:
    command = [BENCHPIPE, "datasets", "imagenet", "--train-dir", str(src / "train"), "--val-dir", str(src / "val"),
               "--val-map", str(src / "val_map.txt"), "--synsets", str(args.synsets),
               "--train-per-class", str(args.per_class), "--val-images", str(args.val),
               "--workers", str(workers), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def shards_only(src: Path, out: Path, args: argparse.Namespace, pool: Any | None) -> float:
    """Seconds to write every shard, by this process (pool None) or by the warm pool."""
    from benchpipe.datasets.imagenet import Subset, check_layout
    from benchpipe.datasets.tfrecord import plan_shards, write_shard

    files = check_layout(src / "train", src / "val", src / "val_map.txt", num_synsets=args.synsets,
                         subset=Subset(args.per_class, args.val))
    (out / "tfrecords").mkdir(parents=True)
    (out / "preprocessed" / "val").mkdir(parents=True)
    tasks = sorted(plan_shards(files, out), key=lambda t: (t.split != "val", t.index))
    start = time.perf_counter()
    results = list(pool.imap_unordered(write_shard, tasks)) if pool else [write_shard(t) for t in tasks]
    seconds = time.perf_counter() - start
    assert not any(r.problems for r in results)
    return seconds


def table(title: str, rates: dict[int, list[float]]) -> None:
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"| {title}, 1 worker | {one:.1f} | {', '.join(f'{v:.1f}' for v in rates[1])} |")
    print(f"| {title}, 2 workers | {two:.1f} | {', '.join(f'{v:.1f}' for v in rates[2])} |")
    pairs = ", ".join(f"{b / a:.2f}" for a, b in zip(rates[1], rates[2]))
    print(f"| **{title}: ratio 2 / 1** (of medians) | **{two / one:.2f}** | {pairs} |")


def main() -> int:
    args = parse_args()
    images = args.synsets * args.per_class + args.val
    script_start = time.perf_counter()
    with work_dir("bench-preprocess-", args.keep) as work:
        total_bytes = make_tree(work / "src", args.synsets, args.per_class, args.val)
        end_to_end: dict[int, list[float]] = {1: [], 2: []}
        conversion: dict[int, list[float]] = {1: [], 2: []}
        init_worker()
        with multiprocessing.get_context("spawn").Pool(2, initializer=init_worker) as pool:
            pool.map(time.sleep, [0.5, 0.5])  # both workers started and past their imports
            for r in range(args.rounds):
                order = (1, 2) if r % 2 == 0 else (2, 1)
                shards = {}
                for workers in order:
                    out = work / f"out-{r}-{workers}" / "imagenet"
                    end_to_end[workers].append(images / convert(work / "src", out, args, workers))
                    shards[workers] = json.loads((out / "manifest.json").read_text())["shards"]
                    seconds = shards_only(work / "src", work / f"shards-{r}-{workers}", args,
                                          pool if workers == 2 else None)
                    conversion[workers].append(images / seconds)
                if shards[1] != shards[2]:
                    print(f"round {r}: outputs differ between 1 and 2 workers", file=sys.stderr)
                    return 1
                print(f"round {r}: end to end {end_to_end[1][-1]:.1f} / {end_to_end[2][-1]:.1f}, conversion "
                      f"{conversion[1][-1]:.1f} / {conversion[2][-1]:.1f} images/s (1 / 2 workers)", file=sys.stderr)
    print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}. {images} images ({args.synsets} synsets x {args.per_class} train, "
          f"{args.val} val; {total_bytes / images / 1024:.0f} KiB each on average), "
          f"{args.rounds} rounds (alternating), script wall time {time.perf_counter() - script_start:.0f} s.\n")
    print("| Measure | Median images/s | Per round (images/s) |")
    print("|---|---:|---|")
    table("End to end", end_to_end)
    table("Conversion (shards only)", conversion)
    medians = {name: {w: statistics.median(v) for w, v in rates.items()}
               for name, rates in (("end_to_end", end_to_end), ("conversion", conversion))}
    print("\n" + json.dumps({"images": images, "median_images_per_s": medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
