#!/usr/bin/env python3
"""LoadGen scenarios through benchpipe's SUTs vs the raw predictor, digits and ResNet-50.

What is measured, side by side in one process, for each model:

* Offline: LoadGen's ``result_samples_per_second`` of one Offline test through
  ``BatchSUT`` (gathering each batch from the QSL, building responses,
  ``QuerySamplesComplete``) vs the raw ``CompiledPredictor(batch)`` called back to back on
  full batches of the same samples, gathered up front so that no gathering is timed.
* SingleStream: LoadGen's p90 latency (``result_90.00_percentile_latency_ns``) through
  ``BatchSUT`` with batch 1 vs the p90 of direct ``predictor(one sample)`` calls.
* Server: the highest target QPS whose short Server run was VALID in calibration's search
  (``benchpipe.infer.calibrate``, ``ServerSUT``'s dynamic batching) vs the LoadGen Offline
  rate: how much of the Offline throughput survives the latency bound.
* Offline ceiling: one Offline test through ``BatchSUT`` with ``InstantPredictor``: what
  LoadGen and the SUT cost per sample (the QSL gather, the responses, LoadGen's own work)
  with no model at all.
* Server ceiling: the same search, the same batching, with a predictor that answers at
  once without computing (``InstantPredictor``): the highest rate LoadGen's Server
  scheduling, its Python callback and ``ServerSUT`` sustain with no model at all. No model
  can be served faster than this, so where it is below 0.9 x Offline the Server goal is out
  of reach whatever the batching.

Offline and SingleStream alternate LoadGen/raw, repeat after repeat (LoadGen first on
odd repeats); the Server search runs once per model. Several LoadGen tests run in this
one process: that is allowed as long as ``TestSettings.FromConfig`` is never called
(settings are set field by field here). Timings are reported, never asserted.

Models (weights do not change the timings, so they are random unless ``--digits-model``):

* digits: the benchmark's CNN on the prepared digits eval split (``ParquetSamples``),
  Offline batch 128 (the benchmark's), Server bound 10 ms (its rule).
* resnet: ResNet-50 v1.5 (``build_resnet50(--resnet-size, 10)``) on random images,
  Offline batch ``--resnet-batch``, Server bound ``--resnet-bound-ms`` (15 ms is the
  rules'; a CPU may not meet it, which the table then says).

Run it from the repository root, in the project's environment::

    python bench/infer_scenarios_vs_raw.py                         # 3 repeats of 2000 ms
    python bench/infer_scenarios_vs_raw.py --models digits --repeats 5
    python bench/infer_scenarios_vs_raw.py --duration-ms 500 --repeats 1 --server-budget-s 10

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from benchwork import parse_with_smoke, prepared_data, work_dir

from benchpipe.infer.calibrate import SAFETY_MARGIN, SEARCH_LATENCY_FRACTION
from benchpipe.infer.sut import Predictor
from benchpipe.package.system import cpu_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("digits", "resnet")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, of digits,resnet (default both)")
    p.add_argument("--repeats", type=int, default=3, help="LoadGen/raw pairs for Offline and SingleStream (default 3)")
    p.add_argument("--duration-ms", type=int, default=2000,
                   help="LoadGen min_duration and the raw timings' duration (default 2000)")
    p.add_argument("--server-budget-s", type=float, default=20.0,
                   help="time for each model's Server search (default 20)")
    p.add_argument("--server-run-ms", type=int, default=1500, help="each Server search run's min_duration (default 1500)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="TensorFlow intra/inter-op threads (default: all CPUs)")
    p.add_argument("--resnet-size", type=int, default=32, help="ResNet-50 input size (default 32)")
    p.add_argument("--resnet-batch", type=int, default=32, help="ResNet-50 Offline batch (default 32)")
    p.add_argument("--resnet-bound-ms", type=float, default=15.0, help="ResNet-50 Server p99 bound (default 15)")
    p.add_argument("--digits-model", type=Path, default=None,
                   help="a digits SavedModel to serve instead of random weights")
    p.add_argument("--data", type=Path, default=None, help="reuse a prepared digits dataset directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    return parse_with_smoke(p, argv, repeats=1, duration_ms=300, server_budget_s=4.0, server_run_ms=300,
                            resnet_batch=8)


@dataclass
class Subject:
    name: str
    model_dir: Path
    qsl: object  # SampleLibrary
    sample_shape: tuple[int, ...]
    offline_batch: int
    performance_count: int
    bound_ms: float
    label: str


@dataclass
class Measured:
    offline_loadgen: list[float] = field(default_factory=list)
    offline_raw: list[float] = field(default_factory=list)
    ss_loadgen_ns: list[float] = field(default_factory=list)
    ss_raw_ns: list[float] = field(default_factory=list)
    validity: list[str] = field(default_factory=list)
    server_valid_qps: float | None = None
    server_target_qps: float | None = None
    server_note: str = ""
    server_runs: int = 0
    server_confirmed: bool = False
    ceiling_qps: float | None = None
    ceiling_note: str = ""
    offline_ceiling: float | None = None


class InstantPredictor(Predictor):
    """A CompiledPredictor's interface, answering class 0 for every sample without any work."""

    def __init__(self, batch_sizes: list[int]) -> None:
        self.batch_sizes = sorted(batch_sizes)
        self.batch_seconds = {size: 0.0 for size in self.batch_sizes}

    def __call__(self, batch):
        import numpy as np

        return np.zeros(len(batch), np.int32)


def export_digits(work: Path) -> Path:
    from benchpipe.contracts import registry

    out = work / "digits-model"
    registry.get("digits").build_model().export(str(out), format="tf_saved_model", verbose=False)
    return out


def export_resnet(work: Path, size: int) -> Path:
    from benchpipe.benchmarks.resnet.model import build_resnet50

    out = work / f"resnet50-{size}"
    build_resnet50(size, 10, zero_init_residual=False).export(str(out), format="tf_saved_model", verbose=False)
    return out


def subjects(args: argparse.Namespace, work: Path) -> list[Subject]:
    import numpy as np

    from benchpipe.contracts import registry
    from benchpipe.infer.samples import ArraySamples, ParquetSamples, SampleLibrary

    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(chosen) - set(MODELS)
    if unknown:
        sys.exit(f"--models: unknown {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    found = []
    if "digits" in chosen:
        task = registry.get("digits").inference
        source = ParquetSamples(prepared_data(args.data, work), "eval")
        model = args.digits_model.resolve() if args.digits_model else export_digits(work)
        label = f"digits CNN ({'SavedModel ' + str(model) if args.digits_model else 'random weights'})"
        found.append(Subject("digits", model, SampleLibrary(source), source.sample_shape, task.offline_batch_size,
                             task.performance_sample_count, task.server_latency_ms, label))
    if "resnet" in chosen:
        size = args.resnet_size
        images = np.random.default_rng(0).normal(0, 60, (256, size, size, 3)).astype(np.float32)
        source = ArraySamples(images, np.zeros(len(images), np.int32), f"256 random {size}x{size} images")
        found.append(Subject("resnet", export_resnet(work, size), SampleLibrary(source), (size, size, 3),
                             args.resnet_batch, len(images), args.resnet_bound_ms,
                             f"ResNet-50 v1.5 at {size}x{size}, 10 classes, random weights"))
    return found


def loadgen_settings(scenario: str, duration_ms: int, **values):
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = duration_ms
    for key, value in values.items():
        setattr(settings, key, value)
    return settings


def loadgen_run(sut, subject: Subject, settings, log_dir: Path) -> dict:
    from benchpipe.contracts.layout import DETAIL_LOG
    from benchpipe.infer.sut import start_test
    from benchpipe.results.loadgen_parser import parse_detail_log

    start_test(sut, subject.qsl, settings, log_dir, subject.performance_count)
    detail = parse_detail_log(log_dir / DETAIL_LOG)
    if detail.errors:
        sys.exit(f"{log_dir / DETAIL_LOG}: LoadGen errors: {detail.errors[:3]}")
    return detail.values


def raw_offline(predictor, batches, duration_s: float) -> float:
    predictor(batches[0])  # warm
    done, k, started = 0, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < duration_s:
        done += len(batches[k % len(batches)])
        predictor(batches[k % len(batches)])
        k += 1
    return done / elapsed


def raw_p90_ns(predictor, samples, duration_s: float) -> float:
    import numpy as np

    predictor(samples[0])  # warm
    times, k, until = [], 0, time.perf_counter() + duration_s
    while time.perf_counter() < until or len(times) < 100:
        started = time.perf_counter_ns()
        predictor(samples[k % len(samples)])
        times.append(time.perf_counter_ns() - started)
        k += 1
    return float(np.percentile(times, 90))


def measure(subject: Subject, args: argparse.Namespace, work: Path) -> Measured:
    import numpy as np

    from benchpipe.contracts.errors import InferenceError
    from benchpipe.infer.calibrate import calibrate, measure_offline
    from benchpipe.infer.sut import BatchSUT, CompiledPredictor

    duration_s = args.duration_ms / 1000
    result = Measured()
    offline = CompiledPredictor(subject.model_dir, subject.sample_shape, [subject.offline_batch])
    single = CompiledPredictor(subject.model_dir, subject.sample_shape, [1])
    source = subject.qsl.source
    count = min(source.total, subject.performance_count)
    rows = source.read(np.arange(count))
    batch = subject.offline_batch
    batches = [np.ascontiguousarray(rows[np.arange(k * batch, (k + 1) * batch) % count])
               for k in range(max(1, count // batch))]
    samples = [np.ascontiguousarray(rows[k : k + 1]) for k in range(count)]
    # Offline issues 1.1 x target x min_duration samples: a target below the real rate would
    # end the test early (INVALID), so aim above the raw rate.
    target = 1.5 * measure_offline(offline, subject.qsl, batch, seconds=0.5)
    expected_ns = single.batch_seconds[1] * 1e9

    for rep in range(args.repeats):
        order = ("loadgen", "raw") if rep % 2 == 0 else ("raw", "loadgen")
        for variant in order:
            if variant == "loadgen":
                values = loadgen_run(BatchSUT(offline, subject.qsl, batch), subject,
                                     loadgen_settings("Offline", args.duration_ms, offline_expected_qps=target),
                                     work / f"{subject.name}-offline-{rep}")
                result.offline_loadgen.append(float(values["result_samples_per_second"]))
                result.validity.append(str(values.get("result_validity")))
                values = loadgen_run(BatchSUT(single, subject.qsl, 1), subject,
                                     loadgen_settings("SingleStream", args.duration_ms,
                                                      single_stream_expected_latency_ns=expected_ns),
                                     work / f"{subject.name}-single-{rep}")
                result.ss_loadgen_ns.append(float(values["result_90.00_percentile_latency_ns"]))
                result.validity.append(str(values.get("result_validity")))
            else:
                result.offline_raw.append(raw_offline(offline, batches, duration_s))
                result.ss_raw_ns.append(raw_p90_ns(single, samples, duration_s))
        print(f"{subject.name} repeat {rep + 1}/{args.repeats}: Offline LoadGen {result.offline_loadgen[-1]:,.0f} "
              f"vs raw {result.offline_raw[-1]:,.0f} samples/s; SingleStream p90 LoadGen "
              f"{result.ss_loadgen_ns[-1] / 1e6:.3f} vs raw {result.ss_raw_ns[-1] / 1e6:.3f} ms", flush=True)

    # LoadGen and BatchSUT with a predictor that does no work: the harness's own Offline rate.
    instant = InstantPredictor([batch])
    values = loadgen_run(BatchSUT(instant, subject.qsl, batch), subject,
                         loadgen_settings("Offline", args.duration_ms, offline_expected_qps=20 * target),
                         work / f"{subject.name}-offline-ceiling")
    result.offline_ceiling = float(values["result_samples_per_second"])
    print(f"{subject.name} Offline ceiling (instant predictor): {result.offline_ceiling:,.0f} samples/s", flush=True)

    started = time.perf_counter()
    try:
        calibration = calibrate("Server", subject.model_dir, subject.sample_shape, subject.qsl,
                                offline_batch_size=batch, server_latency_bound_ns=int(subject.bound_ms * 1e6),
                                loadgen_model=subject.name, performance_sample_count=subject.performance_count,
                                budget_s=args.server_budget_s, run_ms=args.server_run_ms,
                                log_dir=work / f"{subject.name}-server")
        summary = search_summary(calibration)
        result.server_valid_qps = summary.best_qps
        result.server_target_qps = calibration.server_target_qps
        result.server_runs = len(calibration.search)
        result.server_confirmed = summary.confirmed
        b = calibration.batching
        fallback = ("" if summary.best_qps is not None else
                    f"no run within the search's margin (p99 ≤ {SEARCH_LATENCY_FRACTION:.0%} of the bound), "
                    f"real-run target {calibration.server_target_qps:,.0f} from LoadGen's verdict alone; ")
        result.server_note = (fallback
                              + f"max_batch {b.max_batch}, max_wait {b.max_wait_s * 1e3:.2f} ms, {b.workers} workers; "
                              f"{len(calibration.search)} runs: {summary.runs}")
    except InferenceError as exc:
        result.server_note = f"no VALID rate: {exc}"
    print(f"{subject.name} Server search: {time.perf_counter() - started:.1f} s; {result.server_note}", flush=True)
    if result.server_valid_qps is not None:
        server_ceiling(subject, args, work, calibration.batching, median_offline=statistics.median(result.offline_loadgen),
                       result=result)
    return result


def runs_text(tried: list[tuple[float, bool, int]]) -> str:
    """A Server search's runs as printed: each rate, ✓ where the search counted it VALID."""
    return ", ".join(f"{q:,.0f}{'✓' if ok else '✗'}" for q, ok, _ in tried)


class SearchSummary(NamedTuple):
    best_qps: float | None  # the highest rate the search counted VALID; None: no run within its margin
    confirmed: bool  # the last run, at the real-run target, was VALID
    runs: str  # runs_text of the search


def search_summary(calibration) -> SearchSummary:
    """What a Server calibration's search found, for the tables."""
    tried = calibration.search
    strict = [q for q, valid, _ in tried if valid]
    last_qps, last_valid, _ = tried[-1]
    confirmed = last_valid and abs(last_qps - calibration.server_target_qps) < 1e-3 * last_qps
    return SearchSummary(max(strict) if strict else None, confirmed, runs_text(tried))


def server_ceiling(subject: Subject, args: argparse.Namespace, work: Path, batching, *, median_offline: float,
                   result: Measured) -> None:
    """The Server search again, same batching, with InstantPredictor: LoadGen's and the SUT's own limit."""
    from benchpipe.contracts.errors import InferenceError
    from benchpipe.infer.calibrate import _Runs, search_server_qps, server_run
    from benchpipe.infer.sut import predictor_batch_sizes

    instant = InstantPredictor(predictor_batch_sizes(batching))
    bound_ns = int(subject.bound_ms * 1e6)
    runs = _Runs(work / f"{subject.name}-ceiling")
    subject.qsl.retain = True
    started = time.perf_counter()
    try:
        _, tried = search_server_qps(
            lambda qps, ms: server_run(instant, subject.qsl, batching, qps, bound_ns, runs, subject.performance_count,
                                       duration_ms=ms),
            median_offline, started + args.server_budget_s, bound_ns, f"{subject.name} ceiling",
            duration_ms=args.server_run_ms)
        result.ceiling_qps = max(q for q, valid, _ in tried if valid)
        result.ceiling_note = f"{len(tried)} runs: {runs_text(tried)}"
    except InferenceError as exc:
        result.ceiling_note = f"no VALID rate: {exc}"
    finally:
        subject.qsl.release()
    print(f"{subject.name} Server ceiling (instant predictor): {time.perf_counter() - started:.1f} s; "
          f"{result.ceiling_note}", flush=True)


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def table(subject: Subject, m: Measured, args: argparse.Namespace) -> None:
    med = statistics.median
    off_l, off_r = med(m.offline_loadgen), med(m.offline_raw)
    ss_l, ss_r = med(m.ss_loadgen_ns) / 1e6, med(m.ss_raw_ns) / 1e6
    print(f"### {subject.label}")
    print()
    print(f"Samples: {subject.qsl.source.describe()}; performance sample count {subject.performance_count}.")
    print()
    print("| Measure | LoadGen | Raw predictor | Ratio LoadGen / raw | Per repeat (LoadGen; raw) |")
    print("|---|---:|---:|---:|---|")
    print(f"| Offline samples/s, batch {subject.offline_batch} | {fmt(off_l)} | {fmt(off_r)} | "
          f"**{off_l / off_r:.3f}** | "
          f"{', '.join(fmt(x) for x in m.offline_loadgen)}; {', '.join(fmt(x) for x in m.offline_raw)} |")
    if m.offline_ceiling is not None:
        print(f"| Offline ceiling: samples/s with an instant predictor (no model) vs raw | {fmt(m.offline_ceiling)} | "
              f"{fmt(off_r)} | **{m.offline_ceiling / off_r:.2f}** | LoadGen and BatchSUT alone: "
              f"{1e6 / m.offline_ceiling:.2f} us a sample, against {1e6 / off_r:.2f} us for the raw model |")
    print(f"| SingleStream p90 latency, ms | {ss_l:.3f} | {ss_r:.3f} | **{ss_l / ss_r:.3f}** | "
          f"{', '.join(f'{x / 1e6:.3f}' for x in m.ss_loadgen_ns)}; "
          f"{', '.join(f'{x / 1e6:.3f}' for x in m.ss_raw_ns)} |")
    if m.server_valid_qps is not None:
        print(f"| Server: highest VALID QPS (p99 ≤ {subject.bound_ms:g} ms) vs LoadGen Offline samples/s | "
              f"{fmt(m.server_valid_qps)} | {fmt(off_l)} (Offline) | **{m.server_valid_qps / off_l:.3f}** | "
              f"real-run target {fmt(m.server_target_qps)} (≥ {SAFETY_MARGIN:.0%} lower"
              f"{', confirmed by a longer run' if m.server_confirmed else ', unconfirmed: budget'}) |")
    else:
        print(f"| Server (p99 ≤ {subject.bound_ms:g} ms) | no VALID rate | {fmt(off_l)} (Offline) | — | |")
    if m.ceiling_qps is not None:
        print(f"| Server ceiling: highest VALID QPS with an instant predictor (no model) vs LoadGen Offline samples/s | "
              f"{fmt(m.ceiling_qps)} | {fmt(off_l)} (Offline) | **{m.ceiling_qps / off_l:.3f}** | "
              f"the most any model could reach through LoadGen and ServerSUT here |")
    print()
    print(f"Server search: {m.server_note}.")
    if m.ceiling_note:
        print(f"Server ceiling search: {m.ceiling_note}.")
    if any(v != "VALID" for v in m.validity):
        print(f"LoadGen validity of the Offline/SingleStream runs: {', '.join(m.validity)} "
              f"(min_duration {args.duration_ms} ms; short runs are for development only).")
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    # LoadGen writes nothing into the working directory, but a stray audit.config there
    # would matter: runs pass an explicit one (start_test), and cwd is the work directory.
    with work_dir("bench-scenarios-", args.keep) as work:
        os.chdir(work)
        found = subjects(args, work)
        results = [(subject, measure(subject, args, work)) for subject in found]
        total = time.perf_counter() - t0
        print()
        print("## LoadGen scenarios vs raw predictor")
        print()
        print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
              f"Python {platform.python_version()}, TensorFlow {tf.__version__}. Threads {args.threads}, "
              f"min duration {args.duration_ms} ms, {args.repeats} repeats (interleaved), Server search budget "
              f"{args.server_budget_s:g} s per model with {args.server_run_ms} ms runs; "
              f"script wall time {total:.0f} s.")
        print()
        for subject, measured in results:
            table(subject, measured, args)
        os.chdir(tempfile.gettempdir())  # leave the work directory before it is removed
    return 0


if __name__ == "__main__":
    sys.exit(main())
