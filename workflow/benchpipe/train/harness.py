"""One seeded training run: MLLOG-logged, evaluated at the benchmark's cadence, stopped at the quality target."""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.benchmark import Benchmark, Split, TrainerHooks
from benchpipe.contracts.config import TrainingDevices
from benchpipe.contracts.errors import TrainingError
from benchpipe.contracts.layout import DEVICES_FILE, MLLOG_FILE, MODEL_DIR
from benchpipe.contracts.paths import SOURCE_ROOT
from benchpipe.datasets.prepare import MANIFEST, load_split, read_manifest, split_rows
from benchpipe.train.devices import (
    ThreadCounts,
    TrainingPlacement,
    configure_threads,
    devices_record,
    distribution_name,
    per_replica_batch_size,
    placement,
    thread_counts,
)
from benchpipe.train.mllog import RunLog
from benchpipe.train.state import state_kept

# An evaluation runs in batches of at most this many samples: it bounds the memory of one
# forward pass, and of the warm-up's zeros, whatever the size of the eval split.
EVAL_BATCH_ROWS = 1024


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


@dataclass(frozen=True)
class Block:
    """The epochs trained between two evaluations: one MLLOG block, numbered from 1 as epoch_num is."""

    first_epoch: int
    epoch_count: int

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.epoch_count - 1


@dataclass(frozen=True)
class DataShape:
    """What init may know of the data without reading it: the manifest's row counts and sample shape."""

    train_rows: int
    eval_rows: int
    sample_shape: tuple[int, ...]

    @classmethod
    def from_manifest(cls, data_dir: Path) -> DataShape:
        manifest = read_manifest(data_dir)
        rows = split_rows(manifest)
        if not rows["train"] or not rows["eval"]:
            raise TrainingError(f"{data_dir / MANIFEST}: {rows['train']} train and {rows['eval']} eval rows: need both")
        return cls(rows["train"], rows["eval"], tuple(int(n) for n in manifest["sample_shape"]))


def configure_tensorflow(seed: int, threads: int, devices: TrainingDevices | None = None) -> ThreadCounts:
    """Thread counts (the target's, else ``threads``), seed and deterministic ops; the counts set.

    Called before anything else touches TensorFlow in a run: the thread counts hold only
    if they are set before TensorFlow runs its first op.
    """
    import keras
    import tensorflow as tf

    counts = thread_counts(devices or TrainingDevices(), threads)
    configure_threads(counts)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return counts


@contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras's global dtype policy ``name`` for the block, the previous one after it.

    Layers take the global policy when they are built, so the model must be built inside.
    """
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def checked_placement(benchmark: Benchmark, used: TrainingPlacement) -> int:
    """The per-replica batch of ``used``; the global batch must split evenly over its replicas."""
    global_batch_size = benchmark.hyperparameters.global_batch_size
    try:
        return per_replica_batch_size(global_batch_size, used.replicas)
    except TrainingError as exc:
        raise TrainingError(
            f"{benchmark.name}: target key training.distribution is {distribution_name(used.strategy)} "
            f"with {used.replicas} replicas: {exc}"
        ) from exc


def check_replicas_agree(benchmark: Benchmark, model) -> None:
    """Refuse a trained model whose replicas hold different weights: there is no one model to export."""
    diverged = diverged_replica_copies(model)
    if diverged:
        shown = ", ".join(diverged[:5]) + (f" and {len(diverged) - 5} more" if len(diverged) > 5 else "")
        raise TrainingError(
            f"{benchmark.name}: after training on {model.distribute_strategy.num_replicas_in_sync} replicas "
            f"their copies of {len(diverged)} trainable variables differ ({shown}): the optimizer updated "
            f"the replicas differently"
        )


def eval_blocks(benchmark: Benchmark, epochs_limit: int) -> list[Block]:
    """The blocks of a run of at most ``epochs_limit`` epochs; each ends with an evaluation.

    Evaluations follow the benchmark's cadence: after epoch ``eval_offset`` (when not 0),
    then every ``eval_every_epochs`` epochs. The limit is rounded up to an evaluation
    epoch, as the reference ResNet rounds its train_epochs: an epoch never followed by an
    evaluation could not count, and a run may reach its target only at an evaluation of
    the cadence.
    """
    every, offset = benchmark.eval_every_epochs, benchmark.eval_offset
    if every < 1 or not 0 <= offset < every:
        raise TrainingError(
            f"{benchmark.name}: evaluation every {every} epochs with offset {offset}: "
            "need eval_every_epochs >= 1 and 0 <= eval_offset < eval_every_epochs"
        )
    if epochs_limit < 1:
        raise TrainingError(f"{benchmark.name}: epoch limit {epochs_limit}: need at least 1")
    blocks = [Block(1, offset or every)]
    while blocks[-1].last_epoch < epochs_limit:
        blocks.append(Block(blocks[-1].last_epoch + 1, every))
    return blocks


def eval_batch_sizes(rows: int) -> list[int]:
    """The distinct batch sizes top1 gives the model for an eval split of ``rows`` samples."""
    full, rest = divmod(rows, EVAL_BATCH_ROWS)
    return ([EVAL_BATCH_ROWS] if full else []) + ([rest] if rest else [])


# One evaluation step per model (top1_step). Weak both ways: the step reaches its model
# through a weak reference, so that the model, and with it the entry, can go.
_TOP1_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def top1_step(model, sample_shape: tuple[int, ...], dtype: Any = "float32") -> Callable:
    """The tf.function counting the correct top-1 predictions of ``model`` in one eval batch.

    It takes a batch of any size, split over the replicas of the model's tf.distribute
    strategy (unevenly for a short batch), and returns the count summed over them; Keras's
    predict_on_batch would instead give every replica the whole batch. There is one step
    per model and sample shape, so that the trace made by the warm-up inside init serves
    every evaluation.
    """
    import tensorflow as tf

    key = (tuple(int(n) for n in sample_shape), tf.as_dtype(dtype))
    steps = _TOP1_STEPS.setdefault(model, {})
    if key in steps:
        return steps[key]
    model_ref = weakref.ref(model)

    def replica_correct(images, labels):
        def count():
            logits = model_ref().predict_step((images,))
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
            return tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.int64))

        # A replica whose share of a short batch is empty skips the model: oneDNN's CPU
        # convolution fails on an empty batch.
        return tf.cond(tf.size(labels) > 0, count, lambda: tf.constant(0, tf.int64))

    @tf.function(
        input_signature=[tf.TensorSpec([None, *key[0]], key[1]), tf.TensorSpec([None], tf.int32)],
        jit_compile=False,
    )
    def correct(images, labels):
        strategy = model_ref().distribute_strategy
        rows, replicas = tf.shape(labels)[0], strategy.num_replicas_in_sync

        def share(context):
            first = rows * context.replica_id_in_sync_group // replicas
            end = rows * (context.replica_id_in_sync_group + 1) // replicas
            return images[first:end], labels[first:end]

        shares = strategy.experimental_distribute_values_from_function(share)
        hits = strategy.run(replica_correct, args=shares)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, hits, axis=None)

    steps[key] = correct
    return correct


def top1(model, split: Split) -> float:
    import numpy as np

    correct = top1_step(model, split.features.shape[1:], split.features.dtype)
    labels = split.labels.astype(np.int32, copy=False)
    hits = 0
    for start in range(0, len(labels), EVAL_BATCH_ROWS):
        hits += int(correct(split.features[start:start + EVAL_BATCH_ROWS], labels[start:start + EVAL_BATCH_ROWS]))
    return hits / len(labels)


def dataset_top1(hooks: TrainerHooks, model) -> Callable[[Iterable], float]:
    """Top-1 over every batch of an eval dataset, through one step traced once.

    The step takes any batch size (the last eval batch is short), so a single trace,
    made by warm_up_dataset_steps inside init, serves every evaluation.
    """
    import tensorflow as tf

    images, _ = hooks.element_spec()
    correct = top1_step(model, tuple(images.shape[1:]), images.dtype)

    def evaluate(batches: Iterable) -> float:
        hits, seen = 0, 0
        for batch_images, labels in batches:
            hits += int(correct(batch_images, tf.cast(labels, tf.int32)))
            seen += int(labels.shape[0])
        if not seen:
            raise TrainingError(f"{model.name}: the eval dataset yielded no samples")
        return hits / seen

    return evaluate


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


def average_replica_copies(model) -> None:
    """Give every replica the mean of the replicas' copies of each non-trainable float variable.

    Under a MirroredStrategy, Keras 3 makes BatchNormalization's moving statistics without
    an aggregation, so each replica updates only its own copy, from its share of the batch:
    the copies drift apart. An evaluation split over the replicas would then use several
    models at once, and the export (which reads the first copy) yet another. Averaged, they
    are what tf.keras 2 read (MEAN aggregation); training never reads them.
    """
    import numpy as np

    strategy = model.distribute_strategy
    if strategy.num_replicas_in_sync == 1:
        return
    for variable in model.non_trainable_variables:
        copies = [np.asarray(c) for c in strategy.experimental_local_results(variable.value)]
        if len(copies) < 2 or not np.issubdtype(copies[0].dtype, np.floating):
            continue
        if any(not np.array_equal(copies[0], c) for c in copies[1:]):
            variable.assign(np.mean(copies, axis=0, dtype=np.float64).astype(copies[0].dtype))


def diverged_replica_copies(model) -> list[str]:
    """Paths of the trainable variables whose copies on the replicas differ.

    A strategy keeps them equal only if the optimizer updates every copy alike, from the
    same summed gradient; one that treats a copy by its per-replica name (".../replica_1")
    does not.
    """
    import numpy as np

    strategy = model.distribute_strategy
    if strategy.num_replicas_in_sync == 1:
        return []
    diverged = []
    for variable in model.trainable_variables:
        copies = [np.asarray(c) for c in strategy.experimental_local_results(variable.value)]
        if any(not np.array_equal(copies[0], c, equal_nan=True) for c in copies[1:]):
            diverged.append(variable.path)
    return diverged


def warm_up_steps(model, batch_size: int, data: DataShape) -> None:
    """Run the training and the evaluation step once each on zeros, leaving the model as it was.

    Each step's first call traces and compiles its tf.function; here, inside init as the
    rules allow, the timed epochs no longer pay for it. The zeros have the dtypes load_split
    returns and the shapes of the real batches, full and short last ones alike, so that no
    real batch traces again or meets a shape for the first time.
    """
    import numpy as np

    rows = min(data.train_rows, batch_size + data.train_rows % batch_size)
    with state_kept(model):
        model.fit(
            np.zeros((rows, *data.sample_shape), np.float32),
            np.zeros((rows,), np.int32),
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
        )
        correct = top1_step(model, data.sample_shape, np.float32)
        for size in eval_batch_sizes(data.eval_rows):
            correct(np.zeros((size, *data.sample_shape), np.float32), np.zeros((size,), np.int32))


def warm_up_dataset_steps(model, hooks: TrainerHooks, evaluate: Callable[[Iterable], float]) -> None:
    """warm_up_steps for a benchmark with trainer hooks: zeros of the hooks' element spec.

    The training batches have a static shape (the spec's), so one zeros batch traces the
    step every real batch takes; the eval step takes any batch size.
    """
    import tensorflow as tf

    images, labels = hooks.element_spec()
    zeros = (tf.zeros(images.shape, images.dtype), tf.zeros(labels.shape, labels.dtype))
    with state_kept(model):
        model.fit(tf.data.Dataset.from_tensors(zeros), epochs=1, shuffle=False, verbose=0)
        evaluate([zeros])


def _run_logger(log: RunLog, evaluate: Callable[[], float], target: float, blocks: list[Block]):
    import keras

    starting = {b.first_epoch: b for b in blocks}
    ending = {b.last_epoch: b for b in blocks}

    class RunLogger(keras.callbacks.Callback):
        """Logs blocks and epochs, evaluates at the end of each block and stops at the quality target."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs = 0
            self.best = 0.0
            self.reached = False

        def on_epoch_begin(self, epoch, logs=None):
            n = epoch + 1
            if n in starting:
                log.start("block_start", metadata={"first_epoch_num": n, "epoch_count": starting[n].epoch_count})
            log.start("epoch_start", metadata={"epoch_num": n})

        def on_epoch_end(self, epoch, logs=None):
            n = epoch + 1
            log.end("epoch_stop", metadata={"epoch_num": n})
            self.epochs = n
            if n not in ending:
                return
            log.end("block_stop", metadata={"first_epoch_num": ending[n].first_epoch})
            log.start("eval_start", metadata={"epoch_num": n})
            # Every block ends with an evaluation, so the exported model has these statistics too.
            average_replica_copies(self.model)
            accuracy = evaluate()
            log.event("eval_accuracy", accuracy, metadata={"epoch_num": n})
            log.end("eval_stop", metadata={"epoch_num": n})
            self.best = max(self.best, accuracy)
            if accuracy >= target:
                self.reached = True
                self.model.stop_training = True

    return RunLogger()


def train_run(
    benchmark: Benchmark,
    data_dir: Path,
    out_dir: Path,
    *,
    seed: int,
    submission: Submission,
    threads: int = 1,
    max_epochs: int | None = None,
    warm_up: bool = True,
    devices: TrainingDevices | None = None,
    resolve_placement: Callable[[TrainingDevices], TrainingPlacement] = placement,
) -> TrainingOutcome:
    """Run one training run into ``out_dir`` (mllog.txt, devices.json and the exported SavedModel).

    The run trains at most ``max_epochs`` (default: the benchmark's), rounded up to an
    evaluation epoch (eval_blocks). A run that does not reach the target by then is logged
    with status aborted: it is an outcome, not an error. Errors leave no ``out_dir``
    behind. ``warm_up=False`` skips warm_up_steps: the logged results are the same, the
    timed run pays for tracing.

    ``devices`` is the hardware target's ``training`` section (default: its defaults): the
    tf.distribute strategy and precision, which ``resolve_placement`` turns into a
    TrainingPlacement inside init, and the thread counts, each defaulting to ``threads``.
    A test may pass its own ``resolve_placement``, e.g. a MirroredStrategy over logical
    CPU devices; it is called after the thread counts are set.
    """
    hp = benchmark.hyperparameters
    # A fine-tuning benchmark counts samples, not epochs: its own loop (train.finetune) has no blocks of epochs.
    blocks = [] if benchmark.lower_is_better else eval_blocks(
        benchmark, hp.max_epochs if max_epochs is None else max_epochs)
    with atomic_dir(out_dir) as tmp:
        log = RunLog(tmp / MLLOG_FILE, root_dir=SOURCE_ROOT)
        try:
            outcome, model, record = _logged_run(
                benchmark, data_dir, log, seed=seed, submission=submission, threads=threads,
                devices=devices or TrainingDevices(), resolve_placement=resolve_placement,
                blocks=blocks, warm_up=warm_up,
            )
        finally:
            log.close()
        check_replicas_agree(benchmark, model)
        if benchmark.inference is not None:  # a training-only benchmark's model is never served
            model.export(str(tmp / MODEL_DIR), format="tf_saved_model", verbose=False)
        (tmp / DEVICES_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
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
    devices: TrainingDevices,
    resolve_placement: Callable[[TrainingDevices], TrainingPlacement],
    blocks: list[Block],
    warm_up: bool,
):
    """The logged run; returns its outcome, the trained model and the devices.json record."""
    hp = benchmark.hyperparameters
    log.event("cache_clear", True)
    log.event("submission_org", submission.org)
    log.event("submission_platform", submission.platform)
    log.event("submission_division", submission.division)
    log.event("submission_status", submission.status)
    log.event("submission_benchmark", benchmark.name)
    log.start("init_start")
    # Threads first: TensorFlow fixes them at its first op, which resolving the placement
    # (listing devices, making a strategy) may run.
    threads_used = configure_tensorflow(seed, threads, devices)
    log.event("seed", seed)
    used = resolve_placement(devices)
    checked_placement(benchmark, used)
    record = devices_record(used, threads_used, hp.global_batch_size)
    # The model's layers and variables are made here: the layers take the global dtype
    # policy, the variables the strategy (mirrored on each of its devices).
    with dtype_policy(used.precision), used.strategy.scope():
        if benchmark.lower_is_better:
            from benchpipe.train.finetune import fine_tune

            tuned, model = fine_tune(benchmark, benchmark.trainer(hp), data_dir, log, seed=seed,
                                     precision=used.precision, replicas=used.replicas, warm=warm_up)
            best = float("nan") if tuned.best_loss is None else tuned.best_loss
            outcome = TrainingOutcome(tuned.status, tuned.steps, best, tuned.time_to_train_s)
        elif benchmark.trainer is not None:
            outcome, model = _dataset_run(benchmark, benchmark.trainer(hp), data_dir, log, seed=seed,
                                          blocks=blocks, warm_up=warm_up, bn_span=record["per_replica_batch_size"])
        else:
            outcome, model = _split_run(benchmark, data_dir, log, blocks=blocks, warm_up=warm_up,
                                        bn_span=record["per_replica_batch_size"])
    return outcome, model, record


def _with_bn_span(benchmark: Benchmark, items: dict, span: int) -> dict:
    """The hyperparameter events with the batch-norm span the run really has.

    The models' BatchNormalization layers normalize over each replica's share of the global
    batch, so that share is what model_bn_span states; a configured span the placement does
    not give is refused rather than logged.
    """
    if "model_bn_span" not in items:
        return items
    configured = getattr(benchmark.hyperparameters, "model_bn_span", None)
    if configured is not None and configured != span:
        raise TrainingError(
            f"training.hyperparameters.{benchmark.name}.model_bn_span is {configured}, but batch "
            f"normalization here spans each replica's batch of {span}: leave it unset, or choose the "
            "global batch and device count that give it"
        )
    return {**items, "model_bn_span": span}


def _split_run(benchmark: Benchmark, data_dir: Path, log: RunLog, *, blocks: list[Block], warm_up: bool,
               bn_span: int):
    """The rest of _logged_run for a benchmark trained on its in-memory Split."""
    hp = benchmark.hyperparameters
    # Init may not read the data (reading is timed, after run_start); the schedule and the
    # warm-up need only the manifest's row counts and sample shape.
    shape = DataShape.from_manifest(data_dir)
    steps_per_epoch = -(-shape.train_rows // hp.global_batch_size)
    model = compile_model(benchmark, steps_per_epoch)
    for key, value in _with_bn_span(benchmark, hp.mllog_items(steps_per_epoch), bn_span).items():
        log.event(key, value)
    if warm_up:
        warm_up_steps(model, hp.global_batch_size, shape)
    # No reseeding here: TensorFlow retraces every tf.function when the global seed changes,
    # which would put the traces the warm-up just made back into the timed run. The warm-up
    # draws no random numbers (no shuffling; the models' seed states are restored), so the
    # run sees the same random stream with or without it.
    log.end("init_stop")

    log.start("run_start")
    started = time.monotonic()
    train = load_split(data_dir, "train")
    evaluation = load_split(data_dir, "eval")
    log.event("train_samples", len(train.labels))
    log.event("eval_samples", len(evaluation.labels))
    callback = _run_logger(log, lambda: top1(model, evaluation), benchmark.quality_target, blocks)
    model.fit(
        train.features,
        train.labels,
        batch_size=hp.global_batch_size,
        epochs=blocks[-1].last_epoch,
        shuffle=True,
        verbose=0,
        callbacks=[callback],
    )
    status = "success" if callback.reached else "aborted"
    log.end("run_stop", metadata={"status": status})
    elapsed = time.monotonic() - started
    return TrainingOutcome(status, callback.epochs, callback.best, elapsed), model


def _dataset_run(
    benchmark: Benchmark,
    hooks: TrainerHooks,
    data_dir: Path,
    log: RunLog,
    *,
    seed: int,
    blocks: list[Block],
    warm_up: bool,
    bn_span: int,
):
    """The rest of _logged_run for a benchmark with trainer hooks: tf.data in, not a Split."""
    # Init: the manifest only (sizes, class count); the shards are read after run_start.
    train_samples, eval_samples = hooks.sizes(data_dir)
    steps_per_epoch = hooks.steps_per_epoch(train_samples)
    if steps_per_epoch < 1:
        raise TrainingError(
            f"{benchmark.name}: {train_samples} train samples in {data_dir} make no training step "
            f"with global_batch_size {benchmark.hyperparameters.global_batch_size}"
        )
    model = hooks.build_model(data_dir)
    model.compile(optimizer=hooks.build_optimizer(steps_per_epoch), loss=hooks.loss(), jit_compile=False)
    for key, value in _with_bn_span(benchmark, hooks.mllog_items(steps_per_epoch), bn_span).items():
        log.event(key, value)
    evaluate = dataset_top1(hooks, model)
    if warm_up:
        warm_up_dataset_steps(model, hooks, evaluate)
    log.end("init_stop")  # not reseeded, as in _split_run

    log.start("run_start")
    started = time.monotonic()
    log.event("train_samples", train_samples)
    log.event("eval_samples", eval_samples)
    epochs = blocks[-1].last_epoch
    # One stream over all epochs, as the reference joins its epochs before batching; fit
    # keeps one iterator across epochs when steps_per_epoch is given.
    train = hooks.train_dataset(data_dir, seed, epochs)
    evaluation = hooks.eval_dataset(data_dir)
    callback = _run_logger(log, lambda: evaluate(evaluation), benchmark.quality_target, blocks)
    model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=0,
              callbacks=[callback])
    if callback.epochs != epochs and not callback.reached:
        # fit stops early, with a warning only, when the stream runs out.
        raise TrainingError(
            f"{benchmark.name}: training stopped after {callback.epochs} of {epochs} epochs: "
            f"the train dataset in {data_dir} ran out of batches"
        )
    status = "success" if callback.reached else "aborted"
    log.end("run_stop", metadata={"status": status})
    elapsed = time.monotonic() - started
    return TrainingOutcome(status, callback.epochs, callback.best, elapsed), model
