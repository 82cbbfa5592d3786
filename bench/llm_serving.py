#!/usr/bin/env python3
"""LLM serving through LoadGen: Server against Offline, continuous against static batching.

Measured side by side in one process, each through benchpipe's LLM SUT (``LLMSUT``) and its
calibration (``benchpipe.infer.llm_calibrate``), token latencies on:

* Synthetic LLM (``SyntheticDecoder``: a decode step sleeps ``2 ms + 20 us x slots``, a prefill
  ``2 ms + 25 us x prompt tokens``; prompts and output lengths drawn like CNN/DailyMail's, about
  730 and 122 tokens at the median). Sleeping uses no CPU, so the host's noise barely moves it.
  - Offline tokens/s (one LoadGen Offline query) with continuous batching.
  - Server: calibration's search for the highest rate whose run is VALID with TTFT and TPOT p99
    within 0.7 of the limits; the tokens/s LoadGen completed in that run, against Offline's.
    Goal: >= 0.8.
  - The same search with static batching (a batch admitted only once the last one finished):
    continuous / static tokens/s at the same limits. Goal: >= 1.5.
  The limits are llama3.1-8b's Server limits (TTFT 2 s, TPOT 100 ms) scaled to the synthetic
  model: the TPOT limit is ``--tpot-steps`` (10) full-batch decode steps, as 100 ms is about ten
  decode steps of an 8B model at batch 64 on one H100 (16 GB of bf16 weights and about 7 GB of
  KV cache read per step at 3.35 TB/s: 7 ms, with overheads about 10), and the TTFT limit 20
  TPOT limits, as 2 s is to 100 ms.
* The tiny Llama stand-in (``benchpipe stand-in-llama``, trained here in seconds) on the
  generated CNN/DailyMail, under llama3.1-8b's own Server limits: Offline tokens/s and the
  Server search's best tokens/s, printed beside; a CPU host cannot settle these (its compute
  is large against its own step), a GPU host can with the same script.

Timings are reported, never asserted. Run from the repository root, in the project's environment::

    python bench/llm_serving.py                      # about 4 minutes
    python bench/llm_serving.py --smoke              # seconds: checks that it runs

The Markdown table printed at the end can be pasted into docs/performance.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchwork import parse_with_smoke

from benchpipe.contracts.errors import InferenceError
from benchpipe.infer.decoding import GenerationLimits
from benchpipe.infer.llm_calibrate import LLMCalibration, TokenLimits, _Runs, calibrate_llm, measure_offline
from benchpipe.infer.llm_sut import PromptLibrary
from benchpipe.infer.synthetic import (
    LLAMA3_EOS,
    PREFILL_PER_TOKEN_S,
    STEP_FIXED_S,
    STEP_PER_SLOT_S,
    SyntheticDecoder,
    cnn_dailymail_prompts,
)

REAL_TTFT_NS, REAL_TPOT_NS = 2_000_000_000, 100_000_000  # llama3.1-8b Server (LLM_LATENCY_LIMITS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slots", type=int, default=64, help="sequences decoded at once (default 64)")
    p.add_argument("--prompts", type=int, default=1024, help="distinct prompts in the QSL (default 1024)")
    p.add_argument("--max-output-tokens", type=int, default=2000, help="the reference's limit (default 2000)")
    p.add_argument("--tpot-steps", type=float, default=10.0,
                   help="the scaled TPOT limit in full-batch decode steps (default 10)")
    p.add_argument("--prefill-per-token-us", type=float, default=PREFILL_PER_TOKEN_S * 1e6,
                   help=f"the synthetic prefill's cost per prompt token (default {PREFILL_PER_TOKEN_S * 1e6:g})")
    p.add_argument("--search-runs", type=int, default=8, help="each Server search's most runs (default 8)")
    p.add_argument("--offline-slots-factor", type=int, default=16,
                   help="Offline's query: this many times --slots samples (default 16)")
    p.add_argument("--budget-s", type=float, default=300.0, help="each Server search's budget (default 300)")
    p.add_argument("--run-ms", type=int, default=3000, help="each search run's min_duration (default 3000)")
    p.add_argument("--skip-stand-in", action="store_true", help="leave out the tiny Llama")
    return parse_with_smoke(p, argv, slots=8, prompts=64, max_output_tokens=16, offline_slots_factor=4,
                            budget_s=8.0, run_ms=300, prefill_per_token_us=1.0, search_runs=2)


@dataclass
class Served:
    label: str
    offline_tokens_per_s: float
    offline_qps: float
    server: LLMCalibration | None = None
    runs: list[dict] = field(default_factory=list)  # every Server search run, VALID or not

    def best(self) -> dict | None:
        valid = [run for run in self.runs if run["valid"]]
        return max(valid, key=lambda run: run["tokens_per_s"]) if valid else None


def scaled_limits(slots: int, tpot_steps: float) -> TokenLimits:
    step_s = STEP_FIXED_S + STEP_PER_SLOT_S * slots
    tpot_ns = int(step_s * tpot_steps * 1e9)
    return TokenLimits(ttft_ns=tpot_ns * (REAL_TTFT_NS // REAL_TPOT_NS), tpot_ns=tpot_ns)


def offline(make, prompts: PromptLibrary, limits: GenerationLimits, work: Path, factor: int) -> tuple[float, float]:
    decoder = make()
    return measure_offline(decoder, prompts, limits, _Runs(work), prompts.total, samples=decoder.slots * factor)


def serve(label: str, make, prompts: PromptLibrary, limits: GenerationLimits, token_limits: TokenLimits,
          args: argparse.Namespace, work: Path, policy: str) -> Served:
    started = time.perf_counter()
    samples_s, tokens_s = offline(make, prompts, limits, work / f"{label}-offline", args.offline_slots_factor)
    print(f"{label}: Offline {tokens_s:,.0f} tokens/s ({samples_s:,.1f} samples/s)", flush=True)
    served = Served(label, tokens_s, samples_s)
    try:
        served.server = calibrate_llm("Server", make, prompts, limits, performance_count=prompts.total,
                                      token_limits=token_limits, policy=policy, budget_s=args.budget_s,
                                      run_ms=args.run_ms, search_max_runs=args.search_runs,
                                      log_dir=work / f"{label}-server", search_record=served.runs)
    except InferenceError as exc:  # a search that finds no rate is a figure too
        print(f"{label}: Server search found no VALID rate: {exc}", flush=True)
    best = served.best()
    found = f"{best['tokens_per_s']:,.0f} tokens/s at {best['qps']:g} queries/s" if best else "no VALID rate"
    print(f"{label}: Server ({policy}) best {found}; {time.perf_counter() - started:.0f} s", flush=True)
    return served


def synthetic(args: argparse.Namespace, work: Path) -> tuple[Served, Served, TokenLimits]:
    prompts = PromptLibrary(cnn_dailymail_prompts(args.prompts, seed=0), "synthetic CNN/DailyMail prompts")
    limits = GenerationLimits(args.max_output_tokens, (LLAMA3_EOS,))
    token_limits = scaled_limits(args.slots, args.tpot_steps)

    def make():
        return SyntheticDecoder(args.slots, prefill_per_token_s=args.prefill_per_token_us * 1e-6)

    continuous = serve("synthetic-continuous", make, prompts, limits, token_limits, args, work, "continuous")
    static = serve("synthetic-static", make, prompts, limits, token_limits, args, work, "static")
    return continuous, static, token_limits


def stand_in(args: argparse.Namespace, work: Path) -> Served:
    from benchpipe.benchmarks.llama.cnndm import EVAL_FILE, TOKENIZER_FILE, load_tokenizer, read_reference
    from benchpipe.benchmarks.llama.cnndm_stand_in import write_stand_in
    from benchpipe.benchmarks.llama.generate import KVCacheDecoder
    from benchpipe.benchmarks.llama.stand_in_model import MAX_NEW_TOKENS, write_stand_in_checkpoint

    write_stand_in(work / "cnndm")
    write_stand_in_checkpoint(work / "cnndm" / EVAL_FILE, work / "cnndm" / TOKENIZER_FILE, work / "model")
    tokenizer = load_tokenizer(work / "cnndm" / TOKENIZER_FILE)
    data = read_reference(work / "cnndm" / EVAL_FILE, tokenizer.get_vocab_size())
    prompts = PromptLibrary([data.prompt(i) for i in range(len(data))], "stand-in CNN/DailyMail")
    limits = GenerationLimits(MAX_NEW_TOKENS, (tokenizer.token_to_id("<|end_of_text|>"),))
    longest = max(len(prompts.prompt(i)) for i in range(prompts.total))

    def make():
        decoder = KVCacheDecoder.from_checkpoint(work / "model", args.slots, longest + limits.max_output_tokens,
                                                 prompt_buckets=[16, 32, 64])
        decoder.warm_up()
        return decoder

    return serve("stand-in", make, prompts, limits, TokenLimits(REAL_TTFT_NS, REAL_TPOT_NS), args, work,
                 "continuous")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a and b else "n/a"


def table(continuous: Served, static: Served, token_limits: TokenLimits, real: Served | None,
          args: argparse.Namespace) -> None:
    cont, stat = continuous.best(), static.best()
    print()
    print(f"### LLM serving ({platform.node()}, {platform.processor() or platform.machine()})")
    print()
    print(f"Synthetic decoder: {args.slots} slots, step {STEP_FIXED_S * 1e3:g} ms + {STEP_PER_SLOT_S * 1e6:g} us "
          f"x slots; limits scaled to it: TTFT {token_limits.ttft_ns / 1e6:.1f} ms, "
          f"TPOT {token_limits.tpot_ns / 1e6:.2f} ms (p99).")
    print()
    print("| Measure | Value | Goal |")
    print("|---|---:|---|")
    print(f"| Synthetic Offline tokens/s (continuous) | {continuous.offline_tokens_per_s:,.0f} | |")
    print(f"| Synthetic Offline tokens/s (static) | {static.offline_tokens_per_s:,.0f} | |")
    print(f"| Synthetic Server tokens/s (continuous), best VALID | {cont['tokens_per_s'] if cont else 0:,.0f} | |")
    print(f"| Synthetic Server tokens/s (static), best VALID | {stat['tokens_per_s'] if stat else 0:,.0f} | |")
    print(f"| **Server / Offline tokens/s** (continuous) | "
          f"**{ratio(cont and cont['tokens_per_s'], continuous.offline_tokens_per_s)}** | >= 0.8 |")
    if stat:
        versus = ratio(cont and cont["tokens_per_s"], stat["tokens_per_s"])
    else:  # static batching met the limits at no rate tried: say how far off its lowest rate was
        lowest = min(static.runs, key=lambda run: run["qps"], default=None)
        versus = "static: no VALID rate" + (
            f" (lowest tried {lowest['qps']:g} queries/s: TTFT p99 {lowest['ttft_p99_ns'] / 1e6:.0f} ms, "
            f"TPOT p99 {lowest['tpot_p99_ns'] / 1e6:.1f} ms)" if lowest else "")
    print(f"| **Continuous / static** Server tokens/s | **{versus}** | >= 1.5 |")
    if real is not None:
        best = real.best()
        print(f"| Stand-in Llama: Server / Offline tokens/s (llama3.1-8b limits) | "
              f"{ratio(best and best['tokens_per_s'], real.offline_tokens_per_s)} "
              f"({best['tokens_per_s'] if best else 0:,.0f} / {real.offline_tokens_per_s:,.0f}) | none on a CPU |")
    for served in (continuous, static, *([real] if real else [])):
        runs = served.runs
        text = ", ".join(f"{r['qps']:g}{'✓' if r['valid'] else ''} (TTFT {r['ttft_p99_ns'] / 1e6:.0f} ms, "
                         f"TPOT {r['tpot_p99_ns'] / 1e6:.1f} ms)" for r in runs)
        print(f"\n{served.label} search: {text or 'none'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="benchpipe-llm-serving-") as tmp:
        work = Path(tmp)
        continuous, static, token_limits = synthetic(args, work)
        real = None if args.skip_stand_in else stand_in(args, work)
        table(continuous, static, token_limits, real, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
