#!/usr/bin/env python3
"""LoRA against full fine-tuning of the same Llama: trainable parameters, optimizer state and peak memory.

The same small Llama (``build_llama``, default 8 layers of width 512, a 32,000-token
vocabulary: about 55 M parameters) is built twice: with LoRA adapters of rank 16 (alpha 32)
on the attention's four projections, everything else frozen, as the Llama-2-70B benchmark
fine-tunes; and with ``lora_rank=0``, every weight trained. For each it reports:

* trainable parameters (``model.trainable_variables``) and all parameters;
* optimizer-state bytes: AdamW built on the trainable variables, the bytes of all its
  variables (two moments per trainable weight, and its step counter and learning rate);
* peak resident memory of a few training steps (``compile`` with AdamW, ``train_on_batch``
  on random tokens, the loss over the labelled tokens as the benchmark computes it). Each
  variant runs in its own fresh process, so one's peak cannot hide the other's; the peak is
  the child's ru_maxrss (``os.wait4``). The children run interleaved, the order alternating
  each repeat, and the script prints medians and the ratio LoRA / full: of the whole peak,
  and of the peak above the process's resident memory once TensorFlow is imported, which is
  what the model, its optimizer and its steps add.

The counts are exact and the same every run; the memory depends on the allocator and the
machine. Memory is reported, never asserted.

Run from the repository root, in the project's environment::

    python bench/llama_lora_memory.py                  # 3 repeats, default sizes
    python bench/llama_lora_memory.py --layers 16 --hidden 1024 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchwork import RESULT_PREFIX, parse_with_smoke

MB = 1_000_000
VARIANTS = ("lora", "full")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds of the two variants (default 3)")
    p.add_argument("--layers", type=int, default=8, help="decoder blocks (default 8)")
    p.add_argument("--hidden", type=int, default=512, help="hidden width (default 512)")
    p.add_argument("--heads", type=int, default=8, help="query heads (default 8)")
    p.add_argument("--kv-heads", type=int, default=2, help="key/value heads (default 2)")
    p.add_argument("--intermediate", type=int, default=1408, help="MLP width (default 1408)")
    p.add_argument("--vocab", type=int, default=32_000, help="vocabulary size (default 32000, Llama 2's)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default 128)")
    p.add_argument("--batch", type=int, default=2, help="sequences per step (default 2)")
    p.add_argument("--steps", type=int, default=3, help="training steps per child (default 3)")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument("--alpha", type=float, default=32.0, help="LoRA alpha (default 32)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra/inter-op threads, both variants (default: all CPUs)")
    # Hidden: one variant in this (fresh) process, one JSON line on stdout.
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    return parse_with_smoke(p, argv, repeats=1, layers=1, hidden=32, heads=4, kv_heads=2, intermediate=64,
                            vocab=64, seq_len=16, batch=1, steps=2)


# ---------------------------------------------------------------- child: one variant


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError("/proc/self/status has no VmRSS")


def variable_bytes(variables) -> int:
    import numpy as np

    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def train_variant(args: argparse.Namespace) -> dict:
    """Build the variant, its optimizer, and run ``args.steps`` training steps; what it measured."""
    import keras
    import numpy as np
    import tensorflow as tf

    from benchpipe.benchmarks.llama.model import LlamaShape, build_llama, token_loss_sums

    import_mb = resident_mb()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    shape = LlamaShape(vocabulary_size=args.vocab, num_layers=args.layers, num_query_heads=args.heads,
                       num_key_value_heads=args.kv_heads, hidden_dim=args.hidden, intermediate_dim=args.intermediate)
    rank = args.rank if args.variant == "lora" else 0
    model = build_llama(shape, args.seq_len, lora_rank=rank, lora_alpha=args.alpha)
    optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=1e-4)
    optimizer.build(model.trainable_variables)

    def loss(labels, logits):
        total, count = token_loss_sums(labels, logits)
        return total / keras.ops.maximum(count, 1.0)

    model.compile(optimizer=optimizer, loss=loss, jit_compile=False)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, args.vocab, size=(args.batch, args.seq_len + 1)).astype("int32")
    step_s = []
    for _ in range(args.steps):
        started = time.perf_counter()
        model.train_on_batch(tokens[:, :-1], tokens[:, 1:])
        step_s.append(time.perf_counter() - started)
    return {
        "trainable": sum(int(np.prod(v.shape)) for v in model.trainable_variables),
        "parameters": sum(int(np.prod(v.shape)) for v in model.variables),
        "optimizer_bytes": variable_bytes(optimizer.variables),
        "import_mb": import_mb,
        "step_s": step_s,
        "tf_version": tf.__version__,
    }


# ---------------------------------------------------------------- parent: the comparison


def spawn(args: argparse.Namespace, variant: str) -> dict:
    """One variant in a fresh process: what it printed, and its peak resident memory (ru_maxrss)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--variant", variant]
    for option in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab", "seq_len", "batch", "steps",
                   "rank", "alpha", "threads"):
        cmd += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    with tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), stdout=subprocess.PIPE,
                                 stderr=stderr, text=True)
        assert child.stdout is not None
        output = child.stdout.read()
        # wait4, not wait: the rusage of this one child, not of every child this script reaped.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
        if child.returncode != 0 or not lines:
            stderr.seek(0)
            sys.exit(f"{variant} failed ({child.returncode}):\n{stderr.read()[-3000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["peak_mb"] = usage.ru_maxrss * 1024 / MB
    return result


def child(args: argparse.Namespace) -> int:
    print(RESULT_PREFIX + json.dumps(train_variant(args)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.variant:
        return child(args)
    started = time.perf_counter()
    rows: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for rep in range(args.repeats):
        for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
            rows[variant].append(spawn(args, variant))
        lora, full = rows["lora"][-1], rows["full"][-1]
        print(f"repeat {rep + 1}: peak RSS LoRA {lora['peak_mb']:,.0f} MB, full {full['peak_mb']:,.0f} MB "
              f"(after importing TensorFlow: {lora['import_mb']:,.0f} and {full['import_mb']:,.0f} MB)", flush=True)
    report(args, rows, time.perf_counter() - started)
    return 0


def report(args: argparse.Namespace, rows: dict[str, list[dict]], wall_s: float) -> None:
    def med(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[variant])

    def added(variant: str) -> list[float]:
        return [r["peak_mb"] - r["import_mb"] for r in rows[variant]]

    def each(values) -> str:
        return ", ".join(f"{v:,.0f}" for v in values)

    lora, full = rows["lora"][0], rows["full"][0]
    step = {v: statistics.median(s for r in rows[v] for s in r["step_s"][1:] or r["step_s"]) for v in VARIANTS}
    peak = {v: med(v, "peak_mb") for v in VARIANTS}
    above = {v: statistics.median(added(v)) for v in VARIANTS}
    print()
    print(f"### LoRA (rank {args.rank}, alpha {args.alpha:g}) vs full fine-tuning, Llama of {args.layers} layers, "
          f"width {args.hidden}")
    print()
    print(f"Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python "
          f"{platform.python_version()}, TensorFlow {lora['tf_version']}. Llama: {args.layers} layers, hidden "
          f"{args.hidden}, {args.heads} query and {args.kv_heads} key/value heads, MLP {args.intermediate}, "
          f"vocabulary {args.vocab}; {full['parameters']:,} parameters (float32). AdamW; {args.steps} steps of "
          f"{args.batch} x {args.seq_len} tokens per child, threads {args.threads}; {args.repeats} repeats, "
          f"each variant in a fresh process, order alternating; script wall time {wall_s:.0f} s.")
    print()
    print("| Measure | LoRA | Full | Ratio LoRA / full | Per repeat (LoRA; full) |")
    print("|---|---:|---:|---:|---|")
    print(f"| Trainable parameters | {lora['trainable']:,} | {full['trainable']:,} | "
          f"**{lora['trainable'] / full['trainable']:.4f}** | exact |")
    print(f"| Optimizer-state bytes (AdamW) | {lora['optimizer_bytes']:,} | {full['optimizer_bytes']:,} | "
          f"**{lora['optimizer_bytes'] / full['optimizer_bytes']:.4f}** | exact |")
    print(f"| Peak RSS, MB (median) | {peak['lora']:,.0f} | {peak['full']:,.0f} | "
          f"**{peak['lora'] / peak['full']:.3f}** | {each(r['peak_mb'] for r in rows['lora'])}; "
          f"{each(r['peak_mb'] for r in rows['full'])} |")
    print(f"| Peak RSS above the process after importing TensorFlow, MB (median) | {above['lora']:,.0f} | "
          f"{above['full']:,.0f} | **{above['lora'] / above['full']:.3f}** | {each(added('lora'))}; "
          f"{each(added('full'))} |")
    print(f"| Training step, s (median, first step left out) | {step['lora']:.3f} | {step['full']:.3f} | "
          f"{step['lora'] / step['full']:.3f} | |")
    print()
    print(json.dumps({v: {"trainable": rows[v][0]["trainable"], "optimizer_bytes": rows[v][0]["optimizer_bytes"],
                          "parameters": rows[v][0]["parameters"], "peak_mb": peak[v], "peak_above_import_mb": above[v],
                          "step_s": step[v]} for v in VARIANTS}))


if __name__ == "__main__":
    sys.exit(main())
