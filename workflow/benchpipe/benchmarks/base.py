"""What a benchmark plug-in declares: data, model, hyperparameters, target, runs, inference task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from benchpipe.datasets.source import Source

if TYPE_CHECKING:  # TensorFlow is imported only by the stages that need it.
    import keras


@dataclass(frozen=True)
class Split:
    """One preprocessed split: model inputs and integer labels, in a fixed order."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray


@dataclass(frozen=True)
class Hyperparameters:
    """SGD with momentum and polynomial decay, logged under the ResNet closed-division keys."""

    global_batch_size: int
    base_learning_rate: float
    end_learning_rate: float
    decay_poly_power: float
    weight_decay: float
    momentum: float
    warmup_epochs: int
    max_epochs: int

    def mllog_items(self, steps_per_epoch: int) -> dict[str, Any]:
        return {
            "global_batch_size": self.global_batch_size,
            "gradient_accumulation_steps": 1,
            "opt_name": "sgd",
            "sgd_opt_base_learning_rate": self.base_learning_rate,
            "sgd_opt_end_learning_rate": self.end_learning_rate,
            "sgd_opt_learning_rate_decay_poly_power": self.decay_poly_power,
            "sgd_opt_learning_rate_decay_steps": self.max_epochs * steps_per_epoch,
            "sgd_opt_weight_decay": self.weight_decay,
            "sgd_opt_momentum": self.momentum,
            "model_bn_span": self.global_batch_size,
            "opt_learning_rate_warmup_epochs": self.warmup_epochs,
        }


@dataclass(frozen=True)
class InferenceTask:
    """How LoadGen drives the exported model."""

    accuracy_target: float  # top-1 the inference accuracy run must reach
    offline_batch_size: int
    offline_expected_qps: float  # accuracy runs only; performance runs calibrate their own
    single_stream_expected_latency_ns: int
    performance_sample_count: int


@dataclass(frozen=True)
class Benchmark:
    name: str
    sources: tuple[Source, ...]
    # raw_dir -> (train split, eval split); must be deterministic.
    preprocess: Callable[[Path], tuple[Split, Split]]
    build_model: Callable[[], "keras.Model"]
    hyperparameters: Hyperparameters
    quality_target: float  # eval top-1 a training run must reach
    num_runs: int
    inference: InferenceTask
    rules_file: Path  # compliance-checker rules for the MLLOG training logs
    # Evaluate after every eval_every_epochs-th epoch, the first time after epoch eval_offset
    # (0: after epoch eval_every_epochs), as the reference ResNet's epochs_between_evals and
    # eval_offset_epochs; 0 <= eval_offset < eval_every_epochs.
    eval_every_epochs: int = 1
    eval_offset: int = 0
