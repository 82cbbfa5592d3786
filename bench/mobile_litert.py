#!/usr/bin/env python3
"""The LiteRT (Mobile) backend: int8 and fp32 against TensorFlow, and LoadGen's overhead on it.

``--model`` picks what is served (``digits``, the default, ``mobilenet``, or ``both``, one after
the other, each measured as below):

* digits: the digits CNN, trained here for ``--epochs`` on the prepared digits training split
  (or ``--digits-model``), exported as a SavedModel and converted by ``benchpipe.mobile.convert``
  to fp32 and to int8 (full-integer post-training quantization, calibrated on
  ``--representative-samples`` training samples); the 360 evaluation samples are the
  performance set. Its int8 call takes about 20 us, so LoadGen's fixed cost per query weighs on
  the harness ratios far more than it would on a Mobile app's model.
* mobilenet: an image classifier of a Mobile app's size, so that the harness ratios meet a
  realistic per-query cost: ``keras.applications.MobileNetV2`` at ``--mobilenet-size`` pixels
  square (default 224), width ``--mobilenet-alpha`` (default 0.5), 10 classes, logits out,
  randomly initialised with ``--seed`` (``weights=None``: nothing is downloaded), its batch
  normalization statistics set by one training-mode pass over the representative images (fresh
  ones shrink the logits to about 1e-11, which int8 rounds to zero), exported as a SavedModel.
  ``benchpipe.mobile.convert`` calibrates int8 on a prepared benchpipe dataset's training split,
  which this model has none of, so it is converted here with
  ``tf.lite.TFLiteConverter.from_saved_model`` and the options ``convert`` sets (fp32: none;
  int8: Optimize.DEFAULT, TFLITE_BUILTINS_INT8 only, int8 input and output), calibrated on
  ``--mobilenet-representative`` random images (default 32, seed ``--seed`` + 1). The
  performance set is ``--mobilenet-samples`` other random images (default 256, seed ``--seed``),
  uniform in [-1, 1] as MobileNetV2's preprocessing leaves pixels; their labels are all 0, so
  no accuracy is reported for it, only how often LiteRT answers as TensorFlow.

Every LoadGen test runs as a Mobile task run sets it (``benchpipe.mobile.run``): ``sut_for``
with the scenario's fixed batching (Offline batch 32, SingleStream batch 1), the SingleStream
expected latency at half the predictor's measured one, the model's samples as the performance
set.

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

    python bench/mobile_litert.py                      # digits: 5 repeats of 2000 ms, 2 threads
    python bench/mobile_litert.py --model mobilenet    # MobileNetV2 at 224 px, width 0.5
    python bench/mobile_litert.py --model both --repeats 3 --threads 1
    python bench/mobile_litert.py --digits-model runs/.../model --data data/digits

``--smoke`` runs both models, MobileNetV2 at 32 px and width 0.35, one short repeat each.

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
from typing import TYPE_CHECKING

import numpy as np
from benchwork import BENCHMARK, parse_with_smoke, prepared_data, work_dir
from infer_scenarios_vs_raw import loadgen_settings, raw_offline, raw_p90_ns
from server_goals import Row, Section, fmt, pair_ratios, print_section

from benchpipe.infer.sut import Predictor
from benchpipe.mobile.run import EXPECTED_LATENCY_HEADROOM, OFFLINE_BATCH, WARM_UP_S
from benchpipe.package.system import cpu_model

if TYPE_CHECKING:
    from benchpipe.infer.samples import SampleLibrary

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TF_FP32, LITERT_FP32, LITERT_INT8, SYNTHETIC = "TensorFlow fp32", "LiteRT fp32", "LiteRT int8", "synthetic"
# One repeat's steps: (predictor, how it is driven). Odd repeats run them in reverse.
STEPS = [(TF_FP32, "loadgen"), (LITERT_FP32, "loadgen"), (LITERT_INT8, "loadgen"), (LITERT_INT8, "raw"),
         (SYNTHETIC, "loadgen"), (SYNTHETIC, "raw")]
DIGITS, MOBILENET = "digits", "mobilenet"
MODEL_CHOICES = {DIGITS: [DIGITS], MOBILENET: [MOBILENET], "both": [DIGITS, MOBILENET]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODEL_CHOICES), default=DIGITS,
                   help="the digits CNN, MobileNetV2 (an app-sized image classifier), or both (default digits)")
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
    p.add_argument("--mobilenet-size", type=int, default=224, help="MobileNetV2's input, pixels square (default 224)")
    p.add_argument("--mobilenet-alpha", type=float, default=0.5, help="MobileNetV2's width multiplier (default 0.5)")
    p.add_argument("--mobilenet-samples", type=int, default=256,
                   help="random images of MobileNetV2's performance set (default 256)")
    p.add_argument("--mobilenet-representative", type=int, default=32,
                   help="random images calibrating MobileNetV2's int8 quantization (default 32)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory (models, LoadGen's logs)")
    return parse_with_smoke(p, argv, repeats=1, duration_ms=300, epochs=1, model="both", mobilenet_size=32,
                            mobilenet_alpha=0.35, mobilenet_samples=64, mobilenet_representative=4)


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


def random_images(count: int, size: int, seed: int) -> np.ndarray:
    """``count`` images of ``size`` x ``size`` x 3, uniform in [-1, 1]: MobileNetV2's input range after
    its preprocessing, so that the int8 calibration sees the values the performance set holds."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (count, size, size, 3)).astype(np.float32)


def mobilenet(work: Path, size: int, alpha: float, seed: int, images: np.ndarray) -> Path:
    """MobileNetV2 with random weights (none downloaded), 10 classes, logits out, its batch
    normalization's statistics taken from ``images``, as a SavedModel."""
    import keras

    keras.utils.set_random_seed(seed)
    # Logits, as the digits CNN answers: a softmax quantized to int8 would tie the near-equal
    # scores of random weights, and the top-1 agreement with TensorFlow would measure the ties.
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, classes=10,
                                           classifier_activation=None)
    # With fresh statistics (mean 0, variance 1) the activations shrink layer after layer, to
    # logits of about 1e-11, which int8 rounds to all zeros: the answers would mean nothing. One
    # training-mode pass with momentum 0 sets each layer's statistics to what it sees, as a
    # trained model's are; the weights stay random.
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momentum = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, kept in zip(norms, momentum):
        layer.momentum = kept
    out = work / "mobilenet-model"
    model.export(str(out), format="tf_saved_model", verbose=False)
    return out


def converted_directly(model: Path, precision: str, representative: np.ndarray, work: Path) -> Converted:
    """``model`` converted as ``benchpipe.mobile.convert`` converts, calibrated on ``representative``
    instead of a prepared dataset's training split (which a model of random weights has none of)."""
    import tensorflow as tf

    from benchpipe.mobile.convert import TFLITE

    converter = tf.lite.TFLiteConverter.from_saved_model(str(model))
    if precision == "int8":  # convert()'s full-integer options, one for one
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([row[None]] for row in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    content = converter.convert()
    out = work / f"litert-{precision}"
    out.mkdir(parents=True, exist_ok=True)
    (out / TFLITE).write_bytes(content)
    return Converted(out / TFLITE, precision, len(content))


@dataclass
class Subject:
    """One model to measure: its SavedModel, its two conversions, and the samples LoadGen serves."""

    key: str  # DIGITS or MOBILENET
    label: str  # how the tables name it
    model: Path
    fp32: Converted
    int8: Converted
    shape: tuple[int, ...]
    qsl: SampleLibrary
    rows: np.ndarray  # the performance set, as read from the QSL's source
    labels: np.ndarray | None  # None: random samples, no accuracy to score
    description: str  # the notes' first sentences: what the model is and how it was converted


def digits_subject(args: argparse.Namespace, work: Path) -> Subject:
    from benchpipe.contracts import registry
    from benchpipe.infer.samples import ParquetSamples, SampleLibrary

    data = prepared_data(args.data, work)
    model = args.digits_model.resolve() if args.digits_model else trained_digits(work, data, args.epochs, args.seed)
    fp32, int8 = (converted(model, data, precision, work, args) for precision in ("fp32", "int8"))
    source = ParquetSamples(data, "eval")
    count = min(source.total, registry.get(BENCHMARK).inference.performance_sample_count)
    trained = f"SavedModel {args.digits_model}" if args.digits_model else f"trained {args.epochs} epochs (Adam) here"
    description = (f"Model: the digits CNN, {trained}; .tflite fp32 {fmt(fp32.size)} bytes, int8 {fmt(int8.size)} "
                   f"bytes ({args.representative_samples} representative training samples, seed {args.seed}). "
                   f"Samples: the {count} evaluation samples (the performance set).")
    return Subject(DIGITS, "digits CNN", model, fp32, int8, source.sample_shape, SampleLibrary(source),
                   source.read(np.arange(count)), source.labels[:count], description)


def mobilenet_subject(args: argparse.Namespace, work: Path) -> Subject:
    from benchpipe.infer.samples import ArraySamples, SampleLibrary

    size, alpha = args.mobilenet_size, args.mobilenet_alpha
    # A seed apart from the performance set's: no image LoadGen serves calibrated the quantization
    # (nor the batch normalization's statistics).
    representative = random_images(args.mobilenet_representative, size, args.seed + 1)
    model = mobilenet(work, size, alpha, args.seed, representative)
    fp32, int8 = (converted_directly(model, precision, representative, work) for precision in ("fp32", "int8"))
    images = random_images(args.mobilenet_samples, size, args.seed)
    source = ArraySamples(images, np.zeros(len(images), np.int32), f"{len(images)} random {size}x{size} images")
    label = f"MobileNetV2 {size}x{size}, width {alpha:g}"
    description = (f"Model: MobileNetV2 at {size}x{size}x3, width {alpha:g}, 10 classes (logits), random weights "
                   f"(seed {args.seed}), batch normalization statistics from the representative images; .tflite "
                   f"fp32 {fmt(fp32.size)} bytes, int8 {fmt(int8.size)} bytes (int8 calibrated on "
                   f"{len(representative)} random images, seed {args.seed + 1}; converted with "
                   f"benchpipe.mobile.convert's options). Samples: {len(images)} random images uniform in [-1, 1] "
                   f"(seed {args.seed}), the performance set.")
    return Subject(MOBILENET, label, model, fp32, int8, (size, size, 3), SampleLibrary(source), images, None,
                   description)


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


def measure(found: dict[str, Contestant], qsl, rows: np.ndarray, args: argparse.Namespace, work: Path,
            label: str) -> Measured:
    measured = Measured()
    for rep in range(args.repeats):
        steps = STEPS if rep % 2 == 0 else STEPS[::-1]
        for name, how in steps:
            if how == "loadgen":
                log_dir = work / f"r{rep}-{name.replace(' ', '-').lower()}"
                loadgen_step(found[name], qsl, args, log_dir, len(rows), measured)
            else:
                raw_step(found[name], rows, args.duration_ms / 1000, measured)
        print(f"{label}, repeat {rep + 1}/{args.repeats}: " + "; ".join(
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


def backend_section(m: Measured, notes: list[str], label: str) -> Section:
    tf, rows = m.series[TF_FP32], []
    for name in (LITERT_INT8, LITERT_FP32):
        rows.append(samples_row(f"Offline samples/s, batch {OFFLINE_BATCH}: {name} vs {TF_FP32}",
                                m.series[name].offline, tf.offline))
    for name in (LITERT_INT8, LITERT_FP32):
        rows.append(latency_row(f"SingleStream p90 latency, ms: {name} vs {TF_FP32}", m.series[name].p90_ns, tf.p90_ns))
    return Section(f"LiteRT against TensorFlow, through LoadGen ({label}; ratio LiteRT / TensorFlow)", notes, rows)


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


def model_notes(subject: Subject, found: dict[str, Contestant]) -> list[str]:
    """What was served: the model, its conversions, and each predictor's top-1 on the samples (of
    random samples, only how often LiteRT answers as TensorFlow)."""
    labels = subject.labels if subject.labels is not None else np.zeros(len(subject.rows), np.int32)
    accuracy, answers = {}, {}
    for name in (TF_FP32, LITERT_FP32, LITERT_INT8):
        accuracy[name], answers[name] = top1(found[name].offline, subject.rows, labels)
    agree = {name: float(np.mean(answers[name] == answers[TF_FP32])) for name in (LITERT_INT8, LITERT_FP32)}
    if subject.labels is None:
        return [f"{subject.description} Top-1 answers as TensorFlow's: {LITERT_INT8} on {agree[LITERT_INT8]:.1%}, "
                f"{LITERT_FP32} on {agree[LITERT_FP32]:.1%} of the samples."]
    return [f"{subject.description} Top-1 on them: " + ", ".join(f"{name} {accuracy[name]:.3f}" for name in accuracy)
            + f"; int8 answers as TensorFlow on {agree[LITERT_INT8]:.1%}."]


def sections(m: Measured, notes: list[str], args: argparse.Namespace, label: str) -> list[Section]:
    synthetic = f"synthetic predictor ({args.fixed_ms:g} ms + {args.per_sample_us:g} us a sample)"
    return [
        backend_section(m, notes, label),
        harness_section(LITERT_INT8, f"Harness overhead: {LITERT_INT8} on the {label}, LoadGen against the "
                        "interpreter called directly", m,
                        [f"Interpreter threads {args.threads}, XNNPACK (delegate cpu)."]),
        harness_section(SYNTHETIC, f"Harness overhead: {synthetic}, measured in the same run as the {label}", m,
                        ["A pass sleeps its cost, one at a time, using no CPU: what remains is LoadGen and "
                         "benchpipe's SUT on this host now."]),
    ]


@dataclass
class Outcome:
    subject: Subject
    notes: list[str]
    measured: Measured


def run_model(key: str, args: argparse.Namespace, work: Path) -> Outcome:
    """One model built, converted, and measured; its predictors dropped before the next model's."""
    work.mkdir(parents=True, exist_ok=True)
    subject = digits_subject(args, work) if key == DIGITS else mobilenet_subject(args, work)
    found = contestants(subject.model, subject.fp32, subject.int8, subject.shape, subject.qsl, args)
    notes = model_notes(subject, found)
    return Outcome(subject, notes, measure(found, subject.qsl, subject.rows, args, work, subject.label))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    with work_dir("bench-mobile-litert-", args.keep) as work:
        # LoadGen writes nothing into the working directory, but a stray audit.config there
        # would matter: runs pass an explicit one (start_test), and cwd is the work directory.
        os.chdir(work)
        outcomes = [run_model(key, args, work / key) for key in MODEL_CHOICES[args.model]]
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
    for outcome in outcomes:
        measured = outcome.measured
        for section in sections(measured, outcome.notes, args, outcome.subject.label):
            print_section(section, measured="Measured")
        if any(v.rsplit(" ", 1)[-1] != "VALID" for v in measured.validity):
            print(f"LoadGen validity, {outcome.subject.label}: {', '.join(measured.validity)} "
                  f"(min_duration {args.duration_ms} ms).")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
