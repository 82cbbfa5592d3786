#!/usr/bin/env python3
"""The LiteRT (Mobile) backend: int8 and fp32 against TensorFlow, and LoadGen's overhead on it.

One digits CNN, trained here for ``--epochs`` on the prepared digits training split (or
``--digits-model``), exported as a SavedModel and converted by ``benchpipe.mobile.convert``
to fp32 and to int8 (full-integer post-training quantization, calibrated on
``--representative-samples`` training samples). Every LoadGen test runs as a Mobile task run
sets it (``benchpipe.mobile.run``): ``sut_for`` with the scenario's fixed batching (Offline
batch 32, SingleStream batch 1), the SingleStream expected latency at half the predictor's
measured one, the 360 evaluation samples as the performance set.

What is measured, side by side in one process:

* LiteRT against TensorFlow: LoadGen Offline samples/s and SingleStream p90 through the same
  SUTs, ``LiteRTPredictor`` (int8, and fp32 beside it) against ``CompiledPredictor`` (the
  SavedModel, fp32). No goal: it measures the backend.
* The harness's overhead with LiteRT int8: LoadGen's SingleStream p90 against the p90 of
  direct one-sample calls of the predictor (goal ≤ 1.05), and LoadGen's Offline samples/s
  against the predictor called back to back on the same batches, gathered up front (goal
  ≥ 0.97).
* The same two ratios with ``benchpipe.infer.synthetic.SyntheticPredictor`` (a pass over n
  samples sleeps ``--fixed-ms`` + ``--per-sample-us`` x n, 2 ms + 20 us as bench/server_goals.py
  builds it), in the same run, so that the host's load does not decide whether the harness
  meets its goals.

Each repeat runs TensorFlow, LiteRT fp32, LiteRT int8 through LoadGen, LiteRT int8 raw, the
synthetic predictor through LoadGen and raw, in that order on even repeats and the reverse on
odd ones; the ratios are of medians, each repeat's pair ratio beside. The interpreter and
TensorFlow get ``--threads`` each. Several LoadGen tests run in one process: allowed as long as
``TestSettings.FromConfig`` is never called. Timings are reported, never asserted.

Run it from the repository root, in the project's environment::

    python bench/mobile_litert.py                      # 5 repeats of 2000 ms, 2 threads
    python bench/mobile_litert.py --repeats 3 --threads 1
    python bench/mobile_litert.py --digits-model runs/.../model --data data/digits

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

import numpy as np
from benchwork import BENCHMARK, parse_with_smoke, prepared_data, work_dir
from infer_scenarios_vs_raw import loadgen_settings, raw_offline, raw_p90_ns
from server_goals import Row, Section, fmt, pair_ratios, print_section

from benchpipe.infer.sut import Predictor
from benchpipe.mobile.run import EXPECTED_LATENCY_HEADROOM, OFFLINE_BATCH, WARM_UP_S
from benchpipe.package.system import cpu_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TF_FP32, LITERT_FP32, LITERT_INT8, SYNTHETIC = "TensorFlow fp32", "LiteRT fp32", "LiteRT int8", "synthetic"
# One repeat's steps: (predictor, how it is driven). Odd repeats run them in reverse.
STEPS = [(TF_FP32, "loadgen"), (LITERT_FP32, "loadgen"), (LITERT_INT8, "loadgen"), (LITERT_INT8, "raw"),
         (SYNTHETIC, "loadgen"), (SYNTHETIC, "raw")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="rounds of every step, order alternating (default 5)")
    p.add_argument("--duration-ms", type=int, default=2000,
                   help="LoadGen min_duration and the raw timings' duration (default 2000)")
    p.add_argument("--threads", type=int, default=2, help="LiteRT interpreter threads, and TensorFlow's (default 2)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs of the digits CNN (default 10)")
    p.add_argument("--representative-samples", type=int, default=100,
                   help="training samples calibrating the int8 quantization (default 100, the converter's)")
    p.add_argument("--seed", type=int, default=0, help="training's and the representative samples' seed (default 0)")
    p.add_argument("--fixed-ms", type=float, default=2.0, help="the synthetic predictor's cost per pass (default 2)")
    p.add_argument("--per-sample-us", type=float, default=20.0, help="its cost per sample (default 20)")
    p.add_argument("--digits-model", type=Path, default=None, help="a trained digits SavedModel, instead of training")
    p.add_argument("--data", type=Path, default=None, help="reuse a prepared digits dataset directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory (models, LoadGen's logs)")
    return parse_with_smoke(p, argv, repeats=1, duration_ms=300, epochs=1)


# --- the models ----------------------------------------------------------------------------------


def trained_digits(work: Path, data: Path, epochs: int, seed: int) -> Path:
    """The digits CNN fitted ``epochs`` on the training split (Adam), exported as a SavedModel."""
    import keras

    from benchpipe.contracts import registry
    from benchpipe.infer.samples import ParquetSamples

    keras.utils.set_random_seed(seed)
    train = ParquetSamples(data, "train")
    model = registry.get(BENCHMARK).build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train.read(np.arange(train.total)), train.labels, epochs=epochs, batch_size=32, verbose=0)
    out = work / "digits-model"
    model.export(str(out), format="tf_saved_model", verbose=False)
    return out


@dataclass(frozen=True)
class Converted:
    path: Path
    precision: str
    size: int


def converted(model: Path, data: Path, precision: str, work: Path, args: argparse.Namespace) -> Converted:
    """``benchpipe.mobile.convert`` of ``model`` at ``precision``, as ``benchpipe mobile convert`` runs it."""
    from benchpipe.infer.models import savedmodel_sha256
    from benchpipe.mobile.convert import TFLITE, convert

    out = work / f"litert-{precision}"
    record = convert(model, savedmodel_sha256(model), data, precision, out,
                     representative_samples=args.representative_samples, seed=args.seed)
    return Converted(out / TFLITE, precision, record.tflite_bytes)


# --- the predictors ------------------------------------------------------------------------------


@dataclass
class Contestant:
    """One model: a predictor of Offline batches, one of single samples, and LoadGen's Offline target."""

    name: str
    offline: Predictor
    single: Predictor
    target_qps: float = 0.0

    @property
    def expected_latency_ns(self) -> int:
        # As a Mobile task run sets it: LoadGen runs out of queries if the latency is overstated.
        return max(1000, int(self.single.batch_seconds[1] * 1e9 * EXPECTED_LATENCY_HEADROOM))


def contestants(model: Path, fp32: Converted, int8: Converted, shape: tuple[int, ...], qsl,
                args: argparse.Namespace) -> dict[str, Contestant]:
    from benchpipe.infer.calibrate import measure_offline
    from benchpipe.infer.litert import LiteRTPredictor
    from benchpipe.infer.sut import CompiledPredictor
    from benchpipe.infer.synthetic import SyntheticPredictor

    def synthetic(size: int) -> SyntheticPredictor:
        return SyntheticPredictor([size], fixed_s=args.fixed_ms / 1e3, per_sample_s=args.per_sample_us / 1e6,
                                  sample_shape=shape)

    def litert(tflite: Converted, size: int) -> LiteRTPredictor:
        return LiteRTPredictor(tflite.path, shape, [size], threads=args.threads)

    def tensorflow(size: int) -> CompiledPredictor:
        return CompiledPredictor(model, shape, [size])

    found = {
        TF_FP32: Contestant(TF_FP32, tensorflow(OFFLINE_BATCH), tensorflow(1)),
        LITERT_FP32: Contestant(LITERT_FP32, litert(fp32, OFFLINE_BATCH), litert(fp32, 1)),
        LITERT_INT8: Contestant(LITERT_INT8, litert(int8, OFFLINE_BATCH), litert(int8, 1)),
        SYNTHETIC: Contestant(SYNTHETIC, synthetic(OFFLINE_BATCH), synthetic(1)),
    }
    for contestant in found.values():
        contestant.offline.warm_up(WARM_UP_S)
        contestant.single.warm_up(WARM_UP_S)
        # Offline issues 1.1 x target x min_duration samples: a target below the real rate would
        # end the test early (INVALID), so aim above the raw rate.
        contestant.target_qps = 1.5 * measure_offline(contestant.offline, qsl, OFFLINE_BATCH, seconds=0.5)
    return found


def top1(predictor: Predictor, rows: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """(top-1 accuracy, the answers) of ``predictor`` on every row."""
    answers = np.asarray(predictor(rows))
    return float(np.mean(answers == labels)), answers


# --- the measurements ----------------------------------------------------------------------------


@dataclass
class Series:
    offline: list[float] = field(default_factory=list)  # samples/s
    p90_ns: list[float] = field(default_factory=list)


@dataclass
class Measured:
    series: dict[str, Series] = field(default_factory=dict)  # by "<name>" (LoadGen) and "<name> raw"
    validity: list[str] = field(default_factory=list)

    def of(self, name: str, how: str) -> Series:
        return self.series.setdefault(name if how == "loadgen" else f"{name} raw", Series())


def loadgen_values(scenario: str, contestant: Contestant, qsl, settings, log_dir: Path, count: int) -> dict:
    """One LoadGen test through the SUT a Mobile task run uses; the detail log's values."""
    from benchpipe.contracts.layout import DETAIL_LOG
    from benchpipe.infer.sut import Batching, start_test, sut_for
    from benchpipe.results.loadgen_parser import parse_detail_log

    predictor = contestant.offline if scenario == "Offline" else contestant.single
    sut = sut_for(scenario, predictor, qsl, Batching.for_scenario(scenario, OFFLINE_BATCH))
    start_test(sut, qsl, settings, log_dir, count)
    detail = parse_detail_log(log_dir / DETAIL_LOG)
    if detail.errors:
        sys.exit(f"{log_dir / DETAIL_LOG}: LoadGen errors: {detail.errors[:3]}")
    return detail.values


def loadgen_step(contestant: Contestant, qsl, args: argparse.Namespace, log_dir: Path, count: int,
                 measured: Measured) -> None:
    series = measured.of(contestant.name, "loadgen")
    values = loadgen_values("Offline", contestant, qsl,
                            loadgen_settings("Offline", args.duration_ms, offline_expected_qps=contestant.target_qps),
                            log_dir / "offline", count)
    series.offline.append(float(values["result_samples_per_second"]))
    measured.validity.append(f"{contestant.name} Offline {values.get('result_validity')}")
    values = loadgen_values("SingleStream", contestant, qsl,
                            loadgen_settings("SingleStream", args.duration_ms,
                                             single_stream_expected_latency_ns=contestant.expected_latency_ns),
                            log_dir / "single", count)
    series.p90_ns.append(float(values["result_90.00_percentile_latency_ns"]))
    measured.validity.append(f"{contestant.name} SingleStream {values.get('result_validity')}")


def raw_step(contestant: Contestant, rows: np.ndarray, duration_s: float, measured: Measured) -> None:
    """The predictor called directly: Offline batches back to back, then one sample at a time."""
    count = len(rows)
    batches = [np.ascontiguousarray(rows[np.arange(k * OFFLINE_BATCH, (k + 1) * OFFLINE_BATCH) % count])
               for k in range(max(1, count // OFFLINE_BATCH))]
    samples = [np.ascontiguousarray(rows[k : k + 1]) for k in range(count)]
    series = measured.of(contestant.name, "raw")
    series.offline.append(raw_offline(contestant.offline, batches, duration_s))
    series.p90_ns.append(raw_p90_ns(contestant.single, samples, duration_s))


def measure(found: dict[str, Contestant], qsl, rows: np.ndarray, args: argparse.Namespace, work: Path) -> Measured:
    measured = Measured()
    for rep in range(args.repeats):
        steps = STEPS if rep % 2 == 0 else STEPS[::-1]
        for name, how in steps:
            if how == "loadgen":
                log_dir = work / f"r{rep}-{name.replace(' ', '-').lower()}"
                loadgen_step(found[name], qsl, args, log_dir, len(rows), measured)
            else:
                raw_step(found[name], rows, args.duration_ms / 1000, measured)
        print(f"repeat {rep + 1}/{args.repeats}: " + "; ".join(
            f"{key} Offline {fmt(s.offline[-1])} samples/s, SingleStream p90 {s.p90_ns[-1] / 1e6:.3f} ms"
            for key, s in measured.series.items()), flush=True)
    return measured


# --- the tables ----------------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    return ", ".join(f"{x / 1e6:.3f}" for x in values)


def samples_row(measure_name: str, ours: list[float], reference: list[float], goal: str = "",
                met: bool | None = None) -> Row:
    a, b = statistics.median(ours), statistics.median(reference)
    return Row(measure_name, fmt(a), fmt(b), a / b, goal, met,
               f"{', '.join(map(fmt, ours))}; {', '.join(map(fmt, reference))}; {pair_ratios(ours, reference)}")


def latency_row(measure_name: str, ours: list[float], reference: list[float], goal: str = "",
                met: bool | None = None) -> Row:
    a, b = statistics.median(ours) / 1e6, statistics.median(reference) / 1e6
    return Row(measure_name, f"{a:.3f}", f"{b:.3f}", a / b, goal, met,
               f"{ms(ours)}; {ms(reference)}; {pair_ratios(ours, reference)}")


def backend_section(m: Measured, notes: list[str]) -> Section:
    tf, rows = m.series[TF_FP32], []
    for name in (LITERT_INT8, LITERT_FP32):
        rows.append(samples_row(f"Offline samples/s, batch {OFFLINE_BATCH}: {name} vs {TF_FP32}",
                                m.series[name].offline, tf.offline))
    for name in (LITERT_INT8, LITERT_FP32):
        rows.append(latency_row(f"SingleStream p90 latency, ms: {name} vs {TF_FP32}", m.series[name].p90_ns, tf.p90_ns))
    return Section("LiteRT against TensorFlow, through LoadGen (digits CNN; ratio LiteRT / TensorFlow)", notes, rows)


def harness_section(name: str, title: str, m: Measured, notes: list[str]) -> Section:
    loadgen, raw = m.series[name], m.series[f"{name} raw"]
    off = statistics.median(loadgen.offline) / statistics.median(raw.offline)
    p90 = statistics.median(loadgen.p90_ns) / statistics.median(raw.p90_ns)
    rows = [samples_row(f"Offline samples/s, batch {OFFLINE_BATCH}: LoadGen vs raw calls", loadgen.offline,
                        raw.offline, "≥ 0.97", off >= 0.97),
            latency_row("SingleStream p90 latency, ms: LoadGen vs raw one-sample calls", loadgen.p90_ns, raw.p90_ns,
                        "≤ 1.05", p90 <= 1.05)]
    return Section(title, notes, rows)


# --- the run -------------------------------------------------------------------------------------


def model_notes(args: argparse.Namespace, found: dict[str, Contestant], fp32: Converted, int8: Converted,
                rows: np.ndarray, labels: np.ndarray) -> list[str]:
    """What was served: the model, its conversions, and each predictor's top-1 on the samples."""
    accuracy, answers = {}, {}
    for name in (TF_FP32, LITERT_FP32, LITERT_INT8):
        accuracy[name], answers[name] = top1(found[name].offline, rows, labels)
    agree = float(np.mean(answers[LITERT_INT8] == answers[TF_FP32]))
    trained = f"SavedModel {args.digits_model}" if args.digits_model else f"trained {args.epochs} epochs (Adam) here"
    return [f"Model: the digits CNN, {trained}; .tflite fp32 {fmt(fp32.size)} bytes, int8 {fmt(int8.size)} bytes "
            f"({args.representative_samples} representative training samples, seed {args.seed}). Samples: the "
            f"{len(rows)} evaluation samples (the performance set). Top-1 on them: "
            + ", ".join(f"{name} {accuracy[name]:.3f}" for name in accuracy)
            + f"; int8 answers as TensorFlow on {agree:.1%}."]


def sections(m: Measured, notes: list[str], args: argparse.Namespace) -> list[Section]:
    synthetic = f"synthetic predictor ({args.fixed_ms:g} ms + {args.per_sample_us:g} us a sample)"
    return [
        backend_section(m, notes),
        harness_section(LITERT_INT8, f"Harness overhead: {LITERT_INT8}, LoadGen against the interpreter called "
                        "directly", m, [f"Interpreter threads {args.threads}, XNNPACK (delegate cpu)."]),
        harness_section(SYNTHETIC, f"Harness overhead: {synthetic}, measured in the same run", m,
                        ["A pass sleeps its cost, one at a time, using no CPU: what remains is LoadGen and "
                         "benchpipe's SUT on this host now."]),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from benchpipe.contracts import registry
    from benchpipe.infer.samples import ParquetSamples, SampleLibrary

    with work_dir("bench-mobile-litert-", args.keep) as work:
        # LoadGen writes nothing into the working directory, but a stray audit.config there
        # would matter: runs pass an explicit one (start_test), and cwd is the work directory.
        os.chdir(work)
        data = prepared_data(args.data, work)
        model = args.digits_model.resolve() if args.digits_model else trained_digits(work, data, args.epochs, args.seed)
        fp32, int8 = (converted(model, data, precision, work, args) for precision in ("fp32", "int8"))
        source = ParquetSamples(data, "eval")
        qsl = SampleLibrary(source)
        count = min(source.total, registry.get(BENCHMARK).inference.performance_sample_count)
        rows = source.read(np.arange(count))
        found = contestants(model, fp32, int8, source.sample_shape, qsl, args)
        notes = model_notes(args, found, fp32, int8, rows, source.labels[:count])
        measured = measure(found, qsl, rows, args, work)
        os.chdir(tempfile.gettempdir())  # leave the work directory before it is removed
    from importlib.metadata import version

    print()
    print("## LiteRT (Mobile) backend: int8 and fp32 against TensorFlow, and LoadGen's overhead")
    print()
    print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}, TensorFlow {tf.__version__}, ai-edge-litert "
          f"{version('ai-edge-litert')}, mlcommons-loadgen {version('mlcommons-loadgen')}. Threads {args.threads} "
          f"(interpreter and TensorFlow), min duration {args.duration_ms} ms, {args.repeats} repeats (order reversed "
          f"on odd repeats); script wall time {time.perf_counter() - t0:.0f} s.")
    print()
    for section in sections(measured, notes, args):
        print_section(section, measured="Measured")
    if any(v.rsplit(" ", 1)[-1] != "VALID" for v in measured.validity):
        print(f"LoadGen validity: {', '.join(measured.validity)} (min_duration {args.duration_ms} ms).")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
