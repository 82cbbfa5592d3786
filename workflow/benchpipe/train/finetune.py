"""The training loop of an LLM fine-tuning benchmark: counted in samples, judged by eval loss.

MLPerf's llama2_70b_lora reference trains by optimizer steps of ``global_batch_size`` samples,
evaluates the loss over the whole validation set every ``eval_every_samples`` samples from
``eval_start_samples`` on, and stops at the first evaluation at or below the target, or after
``max_steps`` steps. Its log counts in samples: ``block_start``/``block_stop``, ``eval_start``/
``eval_stop`` and ``eval_accuracy`` (the loss) carry ``samples_count``, and so does ``run_stop``.
Training rules 6.1.0 also ask every log to state its lowest precisions, its parallelism, its
micro-batch and its config file, which this loop logs from what the run really uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts.benchmark import Benchmark, FineTuneHooks
from benchpipe.contracts.errors import TrainingError
from benchpipe.train.mllog import RunLog
from benchpipe.train.state import state_kept

# The lowest precision of each part of the computation under a Keras dtype policy: matmuls and
# attention run in the compute dtype; gradients cross replicas in the variables' (float32).
PRECISION_NAMES = {"float32": "fp32", "mixed_bfloat16": "bfloat16", "mixed_float16": "fp16"}
# No tensor, pipeline, context or expert parallelism: a replica holds the whole model, and
# data parallelism (the replicas) is not one of these keys.
PARALLELISM_KEYS = ("tensor_parallelism", "pipeline_parallelism", "context_parallelism", "expert_parallelism")
# What config_filename discloses: the file of the submission tree that holds the workflow's
# config, every setting of the run included.
CONFIG_FILENAME = "config.json"


@dataclass(frozen=True)
class Outcome:
    status: str
    steps: int
    samples: int
    best_loss: float | None
    time_to_train_s: float


def eval_points(hp: Any) -> list[int]:
    """The sample counts after which the run evaluates: from eval_start_samples (or the first
    eval_every_samples) every eval_every_samples, and always at the last step."""
    last = hp.max_steps * hp.global_batch_size
    point = hp.eval_start_samples or hp.eval_every_samples
    points = []
    while point < last:
        points.append(point)
        point += hp.eval_every_samples
    return [*points, last]


def disclosure_items(precision: str, hp: Any, config_filename: str) -> dict[str, Any]:
    """The 6.1.0 keys that state precisions, parallelism, micro-batch and the run's config file."""
    if precision not in PRECISION_NAMES:
        raise TrainingError(f"dtype policy {precision!r}: no MLLOG precision name for it")
    name = PRECISION_NAMES[precision]
    return {
        "lowest_numerical_precision_in_linear": name,
        "lowest_numerical_precision_in_attn": name,
        "lowest_numerical_precision_in_comm": "fp32",
        **{key: 1 for key in PARALLELISM_KEYS},
        "config_filename": config_filename,
    }


def loss_step(model, hooks: FineTuneHooks) -> Callable:
    """The tf.function of (summed token loss, counted tokens) over one eval batch, any batch size.

    Its signature leaves the batch dimension open, so that the one trace made by the warm-up
    inside init serves every eval batch, the short last one included, whatever rows the eval
    batches have.
    """
    import tensorflow as tf

    signature = [tf.TensorSpec([None, *spec.shape[1:]], spec.dtype) for spec in hooks.element_spec(1)]

    @tf.function(input_signature=signature)
    def sums(token_ids, labels):
        return hooks.loss_sums(labels, model(token_ids, training=False))

    return sums


def eval_loss(step: Callable, batches: Iterable) -> float:
    total, tokens = 0.0, 0.0
    for token_ids, labels in batches:
        batch_total, batch_tokens = step(token_ids, labels)
        total += float(batch_total)
        tokens += float(batch_tokens)
    if not tokens:
        raise TrainingError("the eval dataset has no labelled token")
    return total / tokens


def mean_loss(hooks: FineTuneHooks) -> Callable:
    """The training loss: the mean over the batch's labelled tokens, as the eval loss is taken."""
    import keras

    def loss(labels, logits):
        total, tokens = hooks.loss_sums(labels, logits)
        return total / keras.ops.maximum(tokens, 1.0)

    return loss


def _block_logger(log: RunLog, benchmark: Benchmark, hp: Any, evaluate: Callable[[], float], passes_per_step: int):
    import keras

    points = eval_points(hp)

    class BlockLogger(keras.callbacks.Callback):
        """Counts samples per optimizer step, logs blocks, evaluates at each point, stops at the target."""

        def __init__(self) -> None:
            super().__init__()
            self.passes = 0
            self.samples = 0
            self.best: float | None = None
            self.reached = False
            self.next = 0

        def on_train_begin(self, logs=None):
            log.start("block_start", metadata={"samples_count": 0})

        def on_train_batch_end(self, batch, logs=None):
            self.passes += 1
            if self.passes % passes_per_step:
                return
            self.samples = self.passes // passes_per_step * hp.global_batch_size
            if self.samples < points[self.next]:
                return
            meta = {"samples_count": self.samples}
            log.end("block_stop", metadata=meta)
            log.start("eval_start", metadata=meta)
            loss = evaluate()
            log.event("eval_accuracy", loss, metadata=meta)
            log.end("eval_stop", metadata=meta)
            self.best = loss if self.best is None else min(self.best, loss)
            self.next += 1
            if benchmark.reached(loss):
                self.reached = True
                self.model.stop_training = True
            elif self.next < len(points):
                log.start("block_start", metadata=meta)

    return BlockLogger()


def warm_up(model, hooks: FineTuneHooks, replicas: int, step: Callable) -> None:
    """One training and one eval step on zeros inside init, the model and optimizer left as they were."""
    import tensorflow as tf

    ids, labels = hooks.element_spec(replicas)
    zeros = (tf.zeros(ids.shape, ids.dtype), tf.zeros(labels.shape, labels.dtype))
    with state_kept(model):
        model.fit(tf.data.Dataset.from_tensors(zeros), epochs=1, shuffle=False, verbose=0)
        step(*zeros)


def fine_tune(benchmark: Benchmark, hooks: FineTuneHooks, data_dir: Path, log: RunLog, *, seed: int,
              precision: str, replicas: int, warm: bool, config_filename: str = CONFIG_FILENAME):
    """The rest of the harness's logged run for a FineTuneHooks benchmark; (Outcome, model)."""
    hp = benchmark.hyperparameters
    passes_per_step = hp.accumulation_steps(replicas)
    if not passes_per_step:
        raise TrainingError(
            f"{benchmark.name}: global_batch_size {hp.global_batch_size} is not a multiple of micro_batch_size "
            f"{hp.micro_batch_size} × {replicas} replicas")
    train_samples, eval_samples = hooks.sizes(data_dir)
    model = hooks.build_model(data_dir)
    model.compile(optimizer=hooks.build_optimizer(replicas), loss=mean_loss(hooks), jit_compile=False)
    for key, value in {**hooks.mllog_items(replicas), **disclosure_items(precision, hp, config_filename)}.items():
        log.event(key, value)
    step = loss_step(model, hooks)
    if warm:
        warm_up(model, hooks, replicas, step)
    log.end("init_stop")

    log.start("run_start")
    started = time.monotonic()
    log.event("train_samples", train_samples)
    log.event("eval_samples", eval_samples)
    train = hooks.train_dataset(data_dir, seed, replicas)
    evaluation = hooks.eval_dataset(data_dir)
    callback = _block_logger(log, benchmark, hp, lambda: eval_loss(step, evaluation), passes_per_step)
    model.fit(train, epochs=1, steps_per_epoch=hp.max_steps * passes_per_step, shuffle=False, verbose=0,
              callbacks=[callback])
    if not callback.reached and callback.samples != hp.max_steps * hp.global_batch_size:
        raise TrainingError(f"{benchmark.name}: training stopped after {callback.samples} samples of "
                            f"{hp.max_steps * hp.global_batch_size}: the train dataset in {data_dir} ran out")
    status = "success" if callback.reached else "aborted"
    log.end("run_stop", metadata={"status": status, "samples_count": callback.samples})
    elapsed = time.monotonic() - started
    return Outcome(status, callback.samples // hp.global_batch_size, callback.samples, callback.best, elapsed), model
