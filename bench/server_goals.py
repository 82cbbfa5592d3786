#!/usr/bin/env python3
"""The inference goals measured against a synthetic model whose cost is known.

On two shared cores a real model's compute is large against the latency bound and the host's
stalls decide the tail (``infer_scenarios_vs_raw.py``: Server at 0.135 and 0.141 of Offline).
Here the model is ``benchpipe.infer.synthetic.SyntheticPredictor``: a pass over n samples
sleeps ``--fixed-ms`` + ``--per-sample-us`` x n (2 ms + 20 us: shaped like a GPU), one pass at
a time, using no CPU. What remains is LoadGen, benchpipe's SUTs and calibration's search.

What is measured, side by side in one process, ResNet-style (the rules' 15 ms Server bound,
Offline batch ``--batch``):

* Offline: LoadGen's ``result_samples_per_second`` through ``BatchSUT`` against the raw
  predictor called back to back on the same batches, gathered up front. Goal ≥ 0.97.
* SingleStream: LoadGen's p90 through ``BatchSUT`` with batch 1 against the p90 of direct
  one-sample calls. Goal ≤ 1.05.
* Server: the highest rate calibration's Server search (``calibrate("Server", ...)``, as
  ``benchpipe calibrate`` runs it) counted VALID, against the LoadGen Offline rate. Goal ≥ 0.9.
  Beside it, the best a Server could do on this device (``best_server_rate``: a simulated
  batcher that runs everything waiting the moment the device is free, Poisson arrivals),
  with p99 within the search's margin (70 % of the bound) and within the bound.

Offline and SingleStream alternate LoadGen/raw, repeat after repeat (LoadGen first on odd
repeats); each repeat ends with a Server search. Several LoadGen tests run in one process:
allowed as long as ``TestSettings.FromConfig`` is never called. Timings are reported, never
asserted.

The real models' ratios (digits, ResNet-50 at 32 px, as bench/infer_scenarios_vs_raw.py
measures them) are measured in the same run and printed beside (``--real-models``), so that a
GPU host settles both with this one script. The LLM goals (Server tokens/s against Offline,
continuous against static batching, on ``SyntheticDecoder``, with the tiny Llama beside them)
are measured by bench/llm_serving.py.

Run it from the repository root, in the project's environment::

    python bench/server_goals.py                    # 3 repeats of 2000 ms, 3 Server searches of 60 s
    python bench/server_goals.py --repeats 5 --server-budget-s 90
    python bench/server_goals.py --fixed-ms 5 --per-sample-us 50

The Markdown tables printed at the end can be pasted into docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchwork import parse_with_smoke, work_dir
from infer_scenarios_vs_raw import loadgen_settings, raw_offline, raw_p90_ns, search_summary

from benchpipe.infer.calibrate import SAFETY_MARGIN, SEARCH_LATENCY_FRACTION
from benchpipe.package.system import cpu_model

RESNET_MODEL = "resnet50"  # LoadGen's key for the resnet benchmark
PERFORMANCE_COUNT = 1024  # resnet's performance sample count


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3,
                   help="LoadGen/raw pairs for Offline and SingleStream, and Server searches (default 3)")
    p.add_argument("--duration-ms", type=int, default=2000,
                   help="LoadGen min_duration and the raw timings' duration (default 2000)")
    p.add_argument("--server-budget-s", type=float, default=60.0, help="each Server search's budget (default 60)")
    p.add_argument("--server-run-ms", type=int, default=1500,
                   help="each Server search run's min_duration (default 1500, calibration's)")
    p.add_argument("--fixed-ms", type=float, default=2.0, help="the predictor's cost per pass (default 2)")
    p.add_argument("--per-sample-us", type=float, default=20.0, help="its cost per sample (default 20)")
    p.add_argument("--bound-ms", type=float, default=15.0, help="Server p99 bound (default 15, resnet's)")
    p.add_argument("--batch", type=int, default=64, help="Offline batch (default 64, resnet's)")
    p.add_argument("--sample-values", type=int, default=64,
                   help="float32 values per sample (default 64: small, so that copying samples costs little)")
    p.add_argument("--real-models", default="digits,resnet",
                   help="real models whose ratios (infer_scenarios_vs_raw.py) are measured and printed beside: "
                        "comma-separated of digits,resnet, or none (default digits,resnet)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory (LoadGen's logs)")
    return parse_with_smoke(p, argv, repeats=1, duration_ms=300, server_budget_s=4.0, server_run_ms=300,
                            real_models="digits")


@dataclass(frozen=True)
class Row:
    """One line of a section's table: a figure against its reference, and the goal."""

    measure: str
    ours: str
    reference: str
    ratio: float | None
    goal: str
    met: bool | None
    detail: str


@dataclass
class Section:
    title: str
    notes: list[str]
    rows: list[Row]
    more: list[str] = field(default_factory=list)  # lines printed under the table


# --- ResNet-style: one request, one sample -------------------------------------------------------


@dataclass
class ServerRound:
    best_qps: float | None  # the highest rate the search counted VALID
    target_qps: float | None  # the real run's, backed off
    confirmed: bool
    note: str


@dataclass
class ResnetMeasured:
    offline_loadgen: list[float] = field(default_factory=list)
    offline_raw: list[float] = field(default_factory=list)
    ss_loadgen_ns: list[float] = field(default_factory=list)
    ss_raw_ns: list[float] = field(default_factory=list)
    validity: list[str] = field(default_factory=list)
    server: list[ServerRound] = field(default_factory=list)
    max_batch: int | None = None


def synthetic(args: argparse.Namespace, sizes: list[int]):
    from benchpipe.infer.synthetic import SyntheticPredictor

    return SyntheticPredictor(sizes, fixed_s=args.fixed_ms / 1e3, per_sample_s=args.per_sample_us / 1e6,
                              sample_shape=(args.sample_values,))


def sample_library(args: argparse.Namespace):
    import numpy as np

    from benchpipe.infer.samples import ArraySamples, SampleLibrary

    rows = np.random.default_rng(0).random((PERFORMANCE_COUNT, args.sample_values), dtype=np.float32)
    return SampleLibrary(ArraySamples(rows, np.zeros(len(rows), np.int32),
                                      f"{PERFORMANCE_COUNT} random samples of {args.sample_values} float32 values"))


def loadgen_values(sut, qsl, settings, log_dir: Path) -> dict:
    from benchpipe.contracts.layout import DETAIL_LOG
    from benchpipe.infer.sut import start_test
    from benchpipe.results.loadgen_parser import parse_detail_log

    start_test(sut, qsl, settings, log_dir, PERFORMANCE_COUNT)
    detail = parse_detail_log(log_dir / DETAIL_LOG)
    if detail.errors:
        sys.exit(f"{log_dir / DETAIL_LOG}: LoadGen errors: {detail.errors[:3]}")
    return detail.values


def server_round(args: argparse.Namespace, qsl, log_dir: Path) -> tuple[ServerRound, int]:
    """Calibration's whole Server search on a fresh synthetic predictor; (what it found, max_batch)."""
    from benchpipe.contracts.errors import InferenceError
    from benchpipe.infer.calibrate import SERVER_MAX_BATCH_CAP, calibrate
    from benchpipe.infer.sut import powers_of_two_up_to

    predictor = synthetic(args, powers_of_two_up_to(SERVER_MAX_BATCH_CAP))
    try:
        calibration = calibrate("Server", predictor, (args.sample_values,), qsl, offline_batch_size=args.batch,
                                server_latency_bound_ns=int(args.bound_ms * 1e6), loadgen_model=RESNET_MODEL,
                                performance_sample_count=PERFORMANCE_COUNT, budget_s=args.server_budget_s,
                                run_ms=args.server_run_ms, log_dir=log_dir)
    except InferenceError as exc:
        return ServerRound(None, None, False, f"no VALID rate: {exc}"), 0
    summary = search_summary(calibration)
    b = calibration.batching
    contended = predictor.contended / max(1, sum(predictor.passes.values()))
    runs = ", ".join(f"{q:,.0f}{'✓' if ok else '✗'} ({p99 / 1e6:.1f} ms)" for q, ok, p99 in calibration.search)
    note = (f"max_batch {b.max_batch}, max_wait {b.max_wait_s * 1e3:.2f} ms, {b.workers} workers; "
            f"{len(calibration.search)} runs (rate, ✓ VALID for the search, p99): {runs}; passes that waited for "
            f"another: {contended:.1%}")
    return ServerRound(summary.best_qps, calibration.server_target_qps, summary.confirmed, note), b.max_batch


def measure_resnet(args: argparse.Namespace, work: Path) -> ResnetMeasured:
    import numpy as np

    from benchpipe.infer.calibrate import measure_offline
    from benchpipe.infer.sut import BatchSUT

    duration_s = args.duration_ms / 1000
    qsl = sample_library(args)
    offline, single = synthetic(args, [args.batch]), synthetic(args, [1])
    rows = qsl.source.read(np.arange(PERFORMANCE_COUNT))
    batch = args.batch
    batches = [np.ascontiguousarray(rows[np.arange(k * batch, (k + 1) * batch) % PERFORMANCE_COUNT])
               for k in range(max(1, PERFORMANCE_COUNT // batch))]
    samples = [np.ascontiguousarray(rows[k : k + 1]) for k in range(PERFORMANCE_COUNT)]
    # Offline issues 1.1 x target x min_duration samples: a target below the real rate would
    # end the test early (INVALID), so aim above the raw rate.
    target = 1.5 * measure_offline(offline, qsl, batch, seconds=0.5)
    measured = ResnetMeasured()
    for rep in range(args.repeats):
        order = ("loadgen", "raw") if rep % 2 == 0 else ("raw", "loadgen")
        for variant in order:
            if variant == "loadgen":
                values = loadgen_values(BatchSUT(offline, qsl, batch), qsl,
                                        loadgen_settings("Offline", args.duration_ms, offline_expected_qps=target),
                                        work / f"offline-{rep}")
                measured.offline_loadgen.append(float(values["result_samples_per_second"]))
                measured.validity.append(str(values.get("result_validity")))
                values = loadgen_values(BatchSUT(single, qsl, 1), qsl,
                                        loadgen_settings("SingleStream", args.duration_ms,
                                                         single_stream_expected_latency_ns=single.cost(1) * 1e9),
                                        work / f"single-{rep}")
                measured.ss_loadgen_ns.append(float(values["result_90.00_percentile_latency_ns"]))
                measured.validity.append(str(values.get("result_validity")))
            else:
                measured.offline_raw.append(raw_offline(offline, batches, duration_s))
                measured.ss_raw_ns.append(raw_p90_ns(single, samples, duration_s))
        started = time.perf_counter()
        found, max_batch = server_round(args, qsl, work / f"server-{rep}")
        measured.server.append(found)
        measured.max_batch = max_batch or measured.max_batch
        best = "none" if found.best_qps is None else f"{found.best_qps:,.0f}"
        print(f"repeat {rep + 1}/{args.repeats}: Offline LoadGen {measured.offline_loadgen[-1]:,.0f} vs raw "
              f"{measured.offline_raw[-1]:,.0f} samples/s; SingleStream p90 LoadGen "
              f"{measured.ss_loadgen_ns[-1] / 1e6:.3f} vs raw {measured.ss_raw_ns[-1] / 1e6:.3f} ms; Server "
              f"search {time.perf_counter() - started:.0f} s, highest VALID {best}; {found.note}", flush=True)
    return measured


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def pair_ratios(ours: list[float], reference: list[float]) -> str:
    """Each repeat's ratio and their median: a pair ran back to back, so it met the same host."""
    ratios = [a / b for a, b in zip(ours, reference)]
    return f"ratios {', '.join(f'{r:.3f}' for r in ratios)} (median {statistics.median(ratios):.3f})"


def resnet_rows(m: ResnetMeasured, args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    from benchpipe.infer.synthetic import best_server_rate

    med = statistics.median
    off_l, off_r = med(m.offline_loadgen), med(m.offline_raw)
    ss_l, ss_r = med(m.ss_loadgen_ns) / 1e6, med(m.ss_raw_ns) / 1e6
    rows = [
        Row(f"Offline samples/s, batch {args.batch}", fmt(off_l), fmt(off_r), off_l / off_r, "≥ 0.97",
            off_l / off_r >= 0.97, f"{', '.join(map(fmt, m.offline_loadgen))}; {', '.join(map(fmt, m.offline_raw))}; "
            f"{pair_ratios(m.offline_loadgen, m.offline_raw)}"),
        Row("SingleStream p90 latency, ms", f"{ss_l:.3f}", f"{ss_r:.3f}", ss_l / ss_r, "≤ 1.05", ss_l / ss_r <= 1.05,
            f"{', '.join(f'{x / 1e6:.3f}' for x in m.ss_loadgen_ns)}; "
            f"{', '.join(f'{x / 1e6:.3f}' for x in m.ss_raw_ns)}; {pair_ratios(m.ss_loadgen_ns, m.ss_raw_ns)}"),
    ]
    found = [r.best_qps or 0.0 for r in m.server]
    server = med(found)
    targets = ", ".join(f"{r.target_qps:,.0f}{'✓' if r.confirmed else '✗'}" if r.target_qps else "none"
                        for r in m.server)
    fixed_s, per_sample_s, bound_s = args.fixed_ms / 1e3, args.per_sample_us / 1e6, args.bound_ms / 1e3
    # What a batcher could reach on this device at all: the search's figure against it is
    # what benchpipe's scheduling and the host leave.
    references = [(fraction, label, best_server_rate(fixed_s, per_sample_s, m.max_batch, bound_s * fraction))
                  for fraction, label in ((SEARCH_LATENCY_FRACTION, "the search's margin"), (1.0, "the bound"))
                  ] if m.max_batch else []
    against = f"; {server / references[0][2]:.3f} of the simulated best below" if references else ""
    rows.append(Row(f"Server: highest VALID QPS (p99 ≤ {args.bound_ms:g} ms), median of {len(found)} searches, "
                    "vs LoadGen Offline samples/s", fmt(server), f"{fmt(off_l)} (Offline)", server / off_l, "≥ 0.9",
                    server / off_l >= 0.9,
                    f"{', '.join(map(fmt, found))}; real-run targets {targets} (≥ {SAFETY_MARGIN:.0%} lower; "
                    f"✓ confirmed by a longer run){against}"))
    more = []
    if m.max_batch:
        capacity = m.max_batch / (fixed_s + per_sample_s * m.max_batch)
        for fraction, label, best in references:
            rows.append(Row(f"Server reference: simulated best QPS, batches of up to {m.max_batch} started when the "
                            f"device is free, p99 ≤ {fraction:.0%} of the bound ({label}), vs LoadGen Offline",
                            fmt(best), f"{fmt(off_l)} (Offline)", best / off_l, "", None,
                            f"{best / capacity:.3f} of the device's {fmt(capacity)} samples/s at batch {m.max_batch}"))
    more += [f"Server search {k + 1}: {r.note}." for k, r in enumerate(m.server)]
    if any(v != "VALID" for v in m.validity):
        more.append(f"LoadGen validity of the Offline/SingleStream runs: {', '.join(m.validity)}.")
    return rows, more


def resnet_section(args: argparse.Namespace, work: Path) -> Section:
    measured = measure_resnet(args, work)
    rows, more = resnet_rows(measured, args)
    return Section(
        f"ResNet-style: synthetic predictor, {args.fixed_ms:g} ms + {args.per_sample_us:g} us a sample",
        [f"Samples: {PERFORMANCE_COUNT} random samples of {args.sample_values} float32 values (performance sample "
         f"count {PERFORMANCE_COUNT}); a pass over n samples sleeps {args.fixed_ms:g} ms + {args.per_sample_us:g} "
         f"us x n, one at a time. Server bound {args.bound_ms:g} ms; a search run counts as VALID with p99 ≤ "
         f"{SEARCH_LATENCY_FRACTION:.0%} of it."],
        rows, more)


# The LLM goals have their own script, bench/llm_serving.py: its searches run minutes, not seconds.
SECTIONS: list[Callable[[argparse.Namespace, Path], Section]] = [resnet_section]


def print_section(section: Section, measured: str = "benchpipe") -> None:
    """``section`` as Markdown; ``measured`` heads the column of what is measured against the reference."""
    print(f"### {section.title}")
    print()
    for note in section.notes:
        print(note)
        print()
    print(f"| Measure | {measured} | Reference | Ratio | Goal | Met | Per repeat ({measured}; reference; ratios) |")
    print("|---|---:|---:|---:|---:|---|---|")
    for row in section.rows:
        ratio = "" if row.ratio is None else f"**{row.ratio:.3f}**"
        met = "" if row.met is None else ("yes" if row.met else "no")
        print(f"| {row.measure} | {row.ours} | {row.reference} | {ratio} | {row.goal} | {met} | {row.detail} |")
    print()
    for line in section.more:
        print(line)
    if section.more:
        print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    with work_dir("bench-server-goals-", args.keep) as work:
        # LoadGen writes nothing into the working directory, but a stray audit.config there
        # would matter: runs pass an explicit one (start_test), and cwd is the work directory.
        os.chdir(work)
        sections = [measure(args, work) for measure in SECTIONS]
        print_real = real_models(args, work)
        os.chdir(tempfile.gettempdir())  # leave the work directory before it is removed
    from importlib.metadata import version

    print()
    print("## Inference goals against a synthetic model")
    print()
    print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}, mlcommons-loadgen {version('mlcommons-loadgen')}. Min duration "
          f"{args.duration_ms} ms, {args.repeats} repeats (interleaved), Server searches of {args.server_budget_s:g} s "
          f"with {args.server_run_ms} ms runs; script wall time {time.perf_counter() - t0:.0f} s.")
    print()
    for section in sections:
        print_section(section)
    print_real()
    return 0


def real_models(args: argparse.Namespace, work: Path) -> Callable[[], None]:
    """Measure the real models' ratios as infer_scenarios_vs_raw.py does, in this run; returns
    what prints their tables. On these cores they swing with the host's load, which the
    synthetic figures above do not: a GPU host settles both with this one script."""
    if args.real_models == "none":
        return lambda: None
    import infer_scenarios_vs_raw as real

    options = ["--models", args.real_models, "--repeats", str(args.repeats), "--duration-ms", str(args.duration_ms),
               "--server-budget-s", str(args.server_budget_s), "--server-run-ms", str(args.server_run_ms)]
    real_args = real.parse_args(options + (["--smoke"] if args.smoke else []))
    measured, failed = [], []
    for subject in real.subjects(real_args, work):
        try:
            measured.append((subject, real.measure(subject, real_args, work)))
        except SystemExit as stopped:  # a LoadGen error in a real model's run: its figures are missing,
            failed.append(f"{subject.name}: not measured ({stopped})")  # not the synthetic ones

    def print_tables() -> None:
        print("## Real models beside (as bench/infer_scenarios_vs_raw.py measures them)")
        print()
        for subject, result in measured:
            real.table(subject, result, real_args)
        for line in failed:
            print(line)
            print()

    return print_tables


if __name__ == "__main__":
    sys.exit(main())
