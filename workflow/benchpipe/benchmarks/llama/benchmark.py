"""llama2_70b_lora: LoRA fine-tuning of Llama-2-70B on SCROLLS GovReport to an eval loss of 0.925.

MLPerf training's LLM fine-tuning benchmark (rules 6.1.0): a frozen Llama-2-70B with LoRA
adapters (rank 16, alpha 32, dropout 0.1) on its attention projections, AdamW with a cosine
schedule and no warm-up, gradient norm clipped at 0.3, on the reference's tokenized GovReport;
quality is the eval loss over the summaries' tokens, lower is better. The reference model is the
user's own checkpoint (``checkpoint``), never downloaded; ``model: stand-in`` swaps in a tiny
Llama of the same architecture, from random weights, for tests and development runs, which only
the open division accepts.

The data are the user's copy of the reference's two Parquet files: their URLs and sha256 are
set in ``datasets.sources.llama2_70b_lora`` (config/llama2_70b_lora.yaml), since the reference
hands them out under its licence and benchpipe ships no checksum it could not verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.benchmarks.llama import govreport
from benchpipe.benchmarks.llama.hyperparameters import STAND_IN_MODEL, LoraHyperparameters
from benchpipe.contracts.benchmark import Benchmark, Source
from benchpipe.contracts.errors import DatasetError, TrainingError
from benchpipe.mlcommons.rules import training_rules_file

NAME = "llama2_70b_lora"
QUALITY_TARGET = 0.925  # closed_llama2_70b_lora.yaml: an eval_accuracy (the loss) in (0, 0.925]
RULESET = "6.1.0"
# The tiny Llama of tests and development runs: 2 blocks, hidden size 64, grouped-query attention.
STAND_IN_LAYERS, STAND_IN_HEADS, STAND_IN_KV_HEADS, STAND_IN_HIDDEN, STAND_IN_MLP = 2, 4, 2, 64, 128
# Where the sources' bytes are declared: no URL or checksum is built in (see the module's docstring).
UNSET_SHA256 = ""


def stand_in_shape(vocabulary_size: int):
    from benchpipe.benchmarks.llama.model import LlamaShape

    return LlamaShape(vocabulary_size=vocabulary_size, num_layers=STAND_IN_LAYERS, num_query_heads=STAND_IN_HEADS,
                      num_key_value_heads=STAND_IN_KV_HEADS, hidden_dim=STAND_IN_HIDDEN,
                      intermediate_dim=STAND_IN_MLP)


class StepCosine:
    """Cosine decay over ``steps`` optimizer steps, without warm-up, read from Keras's count of
    forward passes: with gradient accumulation the optimizer hands the schedule its passes, not
    its updates, so the pass count is divided by the passes per update."""

    def __new__(cls, base: float, steps: int, passes_per_step: int):
        import keras

        class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
            def __init__(self) -> None:
                self.cosine = keras.optimizers.schedules.CosineDecay(base, steps, alpha=0.0)

            def __call__(self, passes):
                return self.cosine(keras.ops.floor_divide(passes, passes_per_step))

            def get_config(self) -> dict[str, Any]:
                return {"base": base, "steps": steps, "passes_per_step": passes_per_step}

        return _Schedule()


def _tokens(data_dir: Path, split: str, vocabulary_size: int):
    """(token ids, labels) of ``split``, shifted for next-token prediction, as int32."""
    import numpy as np

    from benchpipe.datasets.prepare import load_split

    features = load_split(data_dir, split).features
    if features.ndim != 3 or features.shape[1] != 2:
        raise DatasetError(f"{data_dir}: samples of shape {features.shape[1:]}, not (2, length): "
                           f"not a {NAME} dataset")
    ids, labels = features[:, 0].astype(np.int32), features[:, 1].astype(np.int32)
    if int(ids.max()) >= vocabulary_size:
        raise TrainingError(f"{data_dir}: token id {int(ids.max())} in split {split} is outside the model's "
                            f"vocabulary of {vocabulary_size}")
    # Position i predicts token i + 1: the inputs lose their last token, the labels their first.
    return ids[:, :-1], labels[:, 1:]


@dataclass(frozen=True)
class LlamaTrainer:
    """The FineTuneHooks (benchpipe.contracts.benchmark) of llama2_70b_lora."""

    hp: LoraHyperparameters

    def sizes(self, data_dir: Path) -> tuple[int, int]:
        from benchpipe.datasets.prepare import read_manifest, split_rows

        rows = split_rows(read_manifest(data_dir))
        return rows["train"], rows["eval"]

    def _length(self) -> int:
        return self.hp.sequence_length - 1

    def element_spec(self, replicas: int):
        import tensorflow as tf

        shape = [self.hp.micro_batch_size * replicas, self._length()]
        return tf.TensorSpec(shape, tf.int32), tf.TensorSpec(shape, tf.int32)

    def _vocabulary(self) -> int:
        if self.hp.model == STAND_IN_MODEL:
            return self.hp.stand_in_vocabulary_size
        from benchpipe.benchmarks.llama.checkpoint import read_shape

        return read_shape(Path(self.hp.checkpoint)).vocabulary_size

    def _check_length(self, data_dir: Path) -> None:
        from benchpipe.datasets.prepare import read_manifest

        shape = read_manifest(data_dir)["sample_shape"]
        if list(shape) != [2, self.hp.sequence_length]:
            raise DatasetError(f"{data_dir}: samples of shape {shape}, the hyperparameters' sequence_length is "
                               f"{self.hp.sequence_length}: set training.hyperparameters.{NAME}.sequence_length "
                               f"to the data's")

    def train_dataset(self, data_dir: Path, seed: int, replicas: int):
        import tensorflow as tf

        ids, labels = _tokens(data_dir, "train", self._vocabulary())
        rows = self.hp.micro_batch_size * replicas
        if len(ids) < rows:
            raise TrainingError(f"{data_dir}: {len(ids)} train samples make no batch of {rows}")
        data = tf.data.Dataset.from_tensor_slices((ids, labels))
        return (data.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True).repeat()
                .batch(rows, drop_remainder=True).prefetch(2))

    def eval_dataset(self, data_dir: Path):
        import tensorflow as tf

        ids, labels = _tokens(data_dir, "eval", self._vocabulary())
        # Whole batches of the eval set, cached: every evaluation reads the same tensors.
        return list(tf.data.Dataset.from_tensor_slices((ids, labels)).batch(max(self.hp.micro_batch_size, 8)))

    def build_model(self, data_dir: Path):
        from benchpipe.benchmarks.llama.model import build_llama

        self._check_length(data_dir)
        hp = self.hp
        lora = {"lora_rank": hp.lora_rank, "lora_alpha": hp.lora_alpha, "lora_dropout": hp.lora_dropout}
        if hp.model == STAND_IN_MODEL:
            return build_llama(stand_in_shape(hp.stand_in_vocabulary_size), self._length(), name="stand_in", **lora)
        from benchpipe.benchmarks.llama.checkpoint import load_checkpoint, read_shape

        model = build_llama(read_shape(Path(hp.checkpoint)), self._length(), name="llama2_70b", **lora)
        load_checkpoint(model, Path(hp.checkpoint))
        return model

    def build_optimizer(self, replicas: int):
        import keras

        hp = self.hp
        passes = hp.accumulation_steps(replicas)
        return keras.optimizers.AdamW(
            learning_rate=StepCosine(hp.base_learning_rate, hp.max_steps, passes),
            weight_decay=hp.weight_decay,
            global_clipnorm=hp.gradient_clip_norm,
            gradient_accumulation_steps=passes if passes > 1 else None,
        )

    def mllog_items(self, replicas: int) -> dict[str, Any]:
        return self.hp.mllog_items(replicas=replicas)

    def loss_sums(self, labels, logits):
        from benchpipe.benchmarks.llama.model import token_loss_sums

        return token_loss_sums(labels, logits)


def build_model():
    """The stand-in at Llama 2's vocabulary, for a caller with no checkpoint or dataset at hand."""
    from benchpipe.benchmarks.llama.model import build_llama

    return build_llama(stand_in_shape(32_000), lora_rank=16, lora_alpha=32, lora_dropout=0.1, name="stand_in")


BENCHMARK = Benchmark(
    name=NAME,
    sources=(
        Source(govreport.TRAIN_FILE, "https://github.com/mlcommons/training/tree/master/llama2_70b_lora", UNSET_SHA256),
        Source(govreport.EVAL_FILE, "https://github.com/mlcommons/training/tree/master/llama2_70b_lora", UNSET_SHA256),
    ),
    preprocess=govreport.preprocess,
    build_model=build_model,
    hyperparameters=LoraHyperparameters(),
    quality_target=QUALITY_TARGET,
    num_runs=10,
    inference=None,
    # 6.1.0's entry file: it routes a log to the closed or open llama2_70b_lora rules.
    rules_file=training_rules_file("common.yaml", RULESET),
    trainer=LlamaTrainer,
    quality_metric="eval_loss",
    rulesets=(RULESET,),
)
