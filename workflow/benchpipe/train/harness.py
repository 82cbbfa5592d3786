"""One seeded training run: MLLOG-logged, evaluated every epoch, stopped at the quality target."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from benchpipe.atomic import atomic_dir
from benchpipe.benchmarks.base import Benchmark, Split
from benchpipe.datasets.prepare import load_split, read_manifest
from benchpipe.layout import MLLOG_FILE, MODEL_DIR
from benchpipe import provenance
from benchpipe.paths import SOURCE_ROOT
from benchpipe.train.mllog import RunLog



@dataclass(frozen=True)
class Submission:
    """Who submits, and where: the submission_* keys of every log."""

    org: str
    platform: str
    division: str
    status: str


@dataclass(frozen=True)
class TrainingOutcome:
    status: str  # "success" or "aborted"
    epochs: int
    best_accuracy: float
    time_to_train_s: float


def configure_tensorflow(seed: int, threads: int) -> None:
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def top1(model, split: Split) -> float:
    import numpy as np

    logits = model.predict_on_batch(split.features)
    return float(np.mean(np.argmax(logits, axis=1) == split.labels))


def compile_model(benchmark: Benchmark, steps_per_epoch: int):
    import keras

    hp = benchmark.hyperparameters
    model = benchmark.build_model()
    schedule = keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=hp.base_learning_rate,
        decay_steps=hp.max_epochs * steps_per_epoch,
        end_learning_rate=hp.end_learning_rate,
        power=hp.decay_poly_power,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=schedule, momentum=hp.momentum, weight_decay=hp.weight_decay
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,  # XLA compile time would dominate such a small model
    )
    return model


def _epoch_logger(log: RunLog, eval_split: Split, target: float):
    import keras

    class EpochLogger(keras.callbacks.Callback):
        """Logs each epoch as a block, evaluates after it and stops at the quality target."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs = 0
            self.best = 0.0
            self.reached = False

        def on_epoch_begin(self, epoch, logs=None):
            log.start("block_start", metadata={"first_epoch_num": epoch + 1, "epoch_count": 1})

        def on_epoch_end(self, epoch, logs=None):
            n = epoch + 1
            log.end("block_stop", metadata={"first_epoch_num": n})
            log.start("eval_start", metadata={"epoch_num": n})
            accuracy = top1(self.model, eval_split)
            log.event("eval_accuracy", accuracy, metadata={"epoch_num": n})
            log.end("eval_stop", metadata={"epoch_num": n})
            self.epochs, self.best = n, max(self.best, accuracy)
            if accuracy >= target:
                self.reached = True
                self.model.stop_training = True

    return EpochLogger()


def train_run(
    benchmark: Benchmark,
    data_dir: Path,
    out_dir: Path,
    *,
    seed: int,
    submission: Submission,
    threads: int = 1,
    max_epochs: int | None = None,
) -> TrainingOutcome:
    """Run one training run into ``out_dir`` (mllog.txt and the exported SavedModel).

    A run that does not reach the target by its epoch limit is logged with status
    aborted: it is an outcome, not an error. Errors leave no ``out_dir`` behind.
    """
    hp = benchmark.hyperparameters
    epochs_limit = max_epochs or hp.max_epochs
    with atomic_dir(out_dir) as tmp:
        log = RunLog(tmp / MLLOG_FILE, root_dir=SOURCE_ROOT)
        try:
            outcome, model = _logged_run(
                benchmark, data_dir, log, seed=seed, submission=submission,
                threads=threads, epochs_limit=epochs_limit,
            )
        finally:
            log.close()
        model.export(str(tmp / MODEL_DIR), format="tf_saved_model", verbose=False)
        provenance.write(tmp, data_dir)
    return outcome


def _logged_run(
    benchmark: Benchmark,
    data_dir: Path,
    log: RunLog,
    *,
    seed: int,
    submission: Submission,
    threads: int,
    epochs_limit: int,
):
    hp = benchmark.hyperparameters
    log.event("cache_clear", True)
    log.event("submission_org", submission.org)
    log.event("submission_platform", submission.platform)
    log.event("submission_division", submission.division)
    log.event("submission_status", submission.status)
    log.event("submission_benchmark", benchmark.name)
    log.start("init_start")
    configure_tensorflow(seed, threads)
    log.event("seed", seed)
    # The schedule needs steps_per_epoch before the data are read (reading is timed, after
    # run_start): the manifest records the row counts.
    manifest = read_manifest(data_dir)
    train_rows = sum(s["rows"] for s in manifest["shards"] if s["split"] == "train")
    steps_per_epoch = -(-train_rows // hp.global_batch_size)
    model = compile_model(benchmark, steps_per_epoch)
    for key, value in hp.mllog_items(steps_per_epoch).items():
        log.event(key, value)
    log.end("init_stop")

    log.start("run_start")
    started = time.monotonic()
    train = load_split(data_dir, "train")
    evaluation = load_split(data_dir, "eval")
    log.event("train_samples", len(train.labels))
    log.event("eval_samples", len(evaluation.labels))
    callback = _epoch_logger(log, evaluation, benchmark.quality_target)
    model.fit(
        train.features,
        train.labels,
        batch_size=hp.global_batch_size,
        epochs=epochs_limit,
        shuffle=True,
        verbose=0,
        callbacks=[callback],
    )
    status = "success" if callback.reached else "aborted"
    log.end("run_stop", metadata={"status": status})
    elapsed = time.monotonic() - started
    return TrainingOutcome(status, callback.epochs, callback.best, elapsed), model
