"""What a benchmark plug-in declares: data, model, hyperparameters, target, runs, inference task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from benchpipe.contracts.errors import ConfigError

if TYPE_CHECKING:  # TensorFlow is imported only by the stages that need it.
    import keras
    import tensorflow as tf


@dataclass(frozen=True)
class Source:
    """One raw dataset file: where it comes from, and the size and sha256 it must have.

    ``url`` is ``https://``, ``http://``, ``file://<absolute path>`` or
    ``package://<python.package>/<path inside it>`` for data shipped inside an installed
    Python package. ``mirrors`` are further URLs of the same bytes, tried in order when one
    fails or serves other bytes. ``size`` (bytes), when known, lets a fetch refuse a wrong
    file before reading all of it.
    """

    name: str
    url: str
    sha256: str
    mirrors: tuple[str, ...] = ()
    size: int | None = None

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)


@dataclass(frozen=True)
class Split:
    """One preprocessed split: model inputs and integer labels, in a fixed order."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray


@dataclass(frozen=True)
class FixedInClosed:
    """A hyperparameter that the closed rules fix although no MLLOG event shows it."""

    allowed: tuple[Any, ...]
    rule: str  # where the training rules say so, quoted


def sgd_problems(hp: Any) -> list[tuple[str, str]]:
    """(key, why) for the settings every benchpipe optimizer shares: ``hp`` has
    global_batch_size, base_learning_rate, weight_decay and momentum."""
    found = []
    if hp.global_batch_size < 1:
        found.append(("global_batch_size", "must be at least 1"))
    if not hp.base_learning_rate > 0:
        found.append(("base_learning_rate", "must be positive"))
    if hp.weight_decay < 0:
        found.append(("weight_decay", "must not be negative"))
    if not 0 <= hp.momentum < 1:
        found.append(("momentum", "must be in [0, 1)"))
    return found


@dataclass(frozen=True)
class Hyperparameters:
    """SGD with momentum and polynomial decay, logged under the ResNet closed-division keys.

    Its fields are the keys of ``training.hyperparameters.<benchmark>``. Every hyperparameter
    class offers the methods below: benchpipe.benchmarks.hyperparameters reads them to check a config
    before any job runs.
    """

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

    def mllog_sources(self) -> dict[str, str | None]:
        """The config key behind each MLLOG key of ``mllog_items``; None: benchpipe's own constant."""
        return {
            "global_batch_size": "global_batch_size",
            "gradient_accumulation_steps": None,
            "opt_name": None,
            "sgd_opt_base_learning_rate": "base_learning_rate",
            "sgd_opt_end_learning_rate": "end_learning_rate",
            "sgd_opt_learning_rate_decay_poly_power": "decay_poly_power",
            "sgd_opt_learning_rate_decay_steps": "max_epochs",
            "sgd_opt_weight_decay": "weight_decay",
            "sgd_opt_momentum": "momentum",
            "model_bn_span": "global_batch_size",
            "opt_learning_rate_warmup_epochs": "warmup_epochs",
        }

    def problems(self) -> list[tuple[str, str]]:
        """(key, why) for each value that the harness's Keras SGD and PolynomialDecay cannot run."""
        found = sgd_problems(self)
        if self.end_learning_rate < 0:
            found.append(("end_learning_rate", "must not be negative"))
        if not self.decay_poly_power > 0:
            found.append(("decay_poly_power", "must be positive"))
        if self.warmup_epochs != 0:
            # The log would show a warm-up that the run does not do.
            found.append(("warmup_epochs", "must be 0: the harness's schedule has no warm-up"))
        if self.max_epochs < 1:
            found.append(("max_epochs", "must be at least 1"))
        return found

    def closed_fixed(self) -> dict[str, FixedInClosed]:
        """Keys the closed rules fix that the log does not show: none, the model is the code's own."""
        return {}


class HyperparameterSet(Protocol):
    """What a benchmark's hyperparameter dataclass (Hyperparameters, or its own) offers."""

    def mllog_items(self, steps_per_epoch: int) -> dict[str, Any]:
        """The hyperparameter events of a run."""

    def mllog_sources(self) -> dict[str, str | None]:
        ...

    def problems(self) -> list[tuple[str, str]]:
        ...

    def closed_fixed(self) -> dict[str, FixedInClosed]:
        ...


@dataclass(frozen=True)
class InferenceTask:
    """How LoadGen drives the exported model."""

    accuracy_target: float  # top-1 the inference accuracy run must reach (closed division)
    offline_batch_size: int
    performance_sample_count: int
    loadgen_model: str  # the model key of user.conf and mlperf.conf
    server_latency_ms: float  # p99 bound of the Server scenario
    # The model's folder in MLPerf's inference tree, whose results the official checker
    # reads; None: not an MLPerf model, its results go to benchpipe's own section.
    official_name: str | None = None


@dataclass(frozen=True)
class LLMInferenceTask:
    """How LoadGen drives a language model: greedy generation of each prompt, token latencies on.

    Its scenarios are the round's for ``official_name`` (edge: SingleStream and Offline;
    datacenter: Offline, Server and Interactive), and its TTFT and TPOT limits the round's
    ``llm_latency_limits_ns``. Interactive runs as LoadGen's Server scenario under the model
    key ``interactive_loadgen_model``, whose mlperf.conf entry holds the tighter limits.
    """

    official_name: str  # the model's folder in the tree: "llama3.1-8b"
    loadgen_model: str  # its user.conf and mlperf.conf key: "llama3_1-8b"
    performance_sample_count: int  # the whole dataset, as mlperf.conf sets it for LLMs
    # The checker's accuracy targets in the closed division, by its names (ROUGE1, ..., GEN_LEN).
    accuracy_targets: tuple[tuple[str, float], ...]
    # The reference's generation: at most this many new tokens, stopping at these ids.
    max_output_tokens: int
    eos_token_ids: tuple[int, ...]
    interactive_loadgen_model: str | None = None  # None: no Interactive scenario
    slots: int = 8  # sequences decoded at once, unless the config says otherwise

    def loadgen_model_for(self, scenario: str) -> str:
        if scenario == "Interactive":
            if self.interactive_loadgen_model is None:
                raise ConfigError(f"{self.official_name} has no Interactive scenario")
            return self.interactive_loadgen_model
        return self.loadgen_model


class TrainerHooks(Protocol):
    """A benchmark's own training pieces, for data that the in-memory Split path cannot hold.

    The harness calls ``sizes``, ``steps_per_epoch``, ``element_spec``, ``build_model``,
    ``build_optimizer``, ``loss`` and ``mllog_items`` inside init, where the data may not be
    read: they may look at the dataset's manifest only. ``train_dataset`` and
    ``eval_dataset`` read the data and are called after run_start.
    """

    def sizes(self, data_dir: Path) -> tuple[int, int]:
        """(train samples, eval samples), from the manifest."""

    def steps_per_epoch(self, train_samples: int) -> int:
        """Training steps the harness counts as one epoch."""

    def element_spec(self) -> tuple["tf.TensorSpec", "tf.TensorSpec"]:
        """(images, labels) of one training batch, with its static batch dimension."""

    def train_dataset(self, data_dir: Path, seed: int, epochs: int) -> "tf.data.Dataset":
        """Batches for ``epochs`` epochs in one stream: at least ``epochs * steps_per_epoch`` of them."""

    def eval_dataset(self, data_dir: Path) -> "tf.data.Dataset":
        """Batches of every eval sample once; the last one may be short."""

    def build_model(self, data_dir: Path) -> "keras.Model":
        """The untrained model, shaped by the manifest (e.g. its class count)."""

    def build_optimizer(self, steps_per_epoch: int) -> "keras.optimizers.Optimizer":
        ...

    def loss(self) -> "keras.losses.Loss":
        ...

    def mllog_items(self, steps_per_epoch: int) -> dict[str, Any]:
        """The hyperparameter events of the run."""


class FineTuneHooks(Protocol):
    """A benchmark trained by optimizer steps and judged by its eval loss (lower is better), as
    MLPerf's LLM fine-tuning benchmarks are: the harness evaluates every few samples, not epochs.

    ``sizes``, ``element_spec``, ``build_model``, ``build_optimizer`` and ``mllog_items`` run
    inside init and may read the dataset's manifest only; ``train_dataset`` and
    ``eval_dataset`` read the data after run_start.
    """

    def sizes(self, data_dir: Path) -> tuple[int, int]:
        """(train samples, eval samples), from the manifest."""

    def element_spec(self, replicas: int) -> tuple["tf.TensorSpec", "tf.TensorSpec"]:
        """(token ids, labels) of one forward pass over every replica: micro_batch_size × replicas rows."""

    def train_dataset(self, data_dir: Path, seed: int, replicas: int) -> "tf.data.Dataset":
        """Forward-pass batches, shuffled by ``seed``, never running out."""

    def eval_dataset(self, data_dir: Path) -> "tf.data.Dataset":
        """Batches of every eval sample once; the last one may be short."""

    def build_model(self, data_dir: Path) -> "keras.Model":
        """The model to fine-tune, its base weights loaded and frozen."""

    def build_optimizer(self, replicas: int) -> "keras.optimizers.Optimizer":
        ...

    def mllog_items(self, replicas: int) -> dict[str, Any]:
        """The hyperparameter events of the run."""

    def loss_sums(self, labels: Any, logits: Any) -> tuple[Any, Any]:
        """(summed loss, counted tokens) of one batch: the tokens the loss counts."""


# What eval_accuracy holds: top-1 accuracy (higher is better), or the eval loss of a
# language model (lower is better), as llama2_70b_lora logs it.
QUALITY_METRICS = ("top1", "eval_loss")


@dataclass(frozen=True)
class Benchmark:
    name: str
    sources: tuple[Source, ...]
    # raw_dir -> (train split, eval split); must be deterministic.
    # The training pieces; None in an inference-only benchmark (num_runs 0, ``trains`` False).
    preprocess: Callable[[Path], tuple[Split, Split]] | None
    build_model: Callable[[], "keras.Model"] | None
    hyperparameters: Hyperparameters | None  # or, with ``trainer``, whatever it takes
    quality_target: float  # the eval_accuracy a training run must reach (quality_metric's direction)
    num_runs: int
    # None: a training-only benchmark, which LoadGen never tests.
    inference: InferenceTask | LLMInferenceTask | None
    # Compliance-checker rules for the MLLOG training logs: a benchmark's own, or the
    # official ruleset's entry file for a benchmark the official rules know.
    rules_file: Path | None
    # Evaluate after every eval_every_epochs-th epoch, the first time after epoch eval_offset
    # (0: after epoch eval_every_epochs), as the reference ResNet's epochs_between_evals and
    # eval_offset_epochs; 0 <= eval_offset < eval_every_epochs.
    eval_every_epochs: int = 1
    eval_offset: int = 0
    # Built from ``hyperparameters`` by the harness, so that a test's dataclasses.replace of
    # them reaches every piece. None: train on the in-memory Split of ``preprocess``. A
    # benchmark whose quality_metric is eval_loss has FineTuneHooks.
    trainer: Callable[[Any], TrainerHooks | FineTuneHooks] | None = None
    # The folder under data/ that it trains on, when not its own name: several benchmarks
    # may share one dataset (ImageNet), and a licensed one is prepared only once.
    dataset: str | None = None
    quality_metric: str = "top1"
    # The training rulesets whose rules this plug-in follows (its logs' keys, its rules file);
    # empty: any, as for a benchmark no round has.
    rulesets: tuple[str, ...] = ()
    # A dataset that is not train and eval Splits (an LLM's prompts): it prepares its own
    # data folder, as ``prepare_dataset(sources, out_dir, cache_dir, offline=...)`` -> manifest.
    prepare_dataset: Callable[..., dict[str, Any]] | None = None
    # The Mobile app's dataset type (tasks.pbtxt) whose tasks its served model answers, converted
    # to LiteRT: a classifier's top-1 runs every IMAGENET task of the app's round. None: none.
    mobile_dataset: str | None = None

    @property
    def trains(self) -> bool:
        """False for an inference-only benchmark (num_runs 0): it serves a given model, never trains one."""
        return self.num_runs > 0

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.name

    @property
    def lower_is_better(self) -> bool:
        return self.quality_metric == "eval_loss"

    def reached(self, quality: float) -> bool:
        """Whether one evaluation's ``quality`` meets the target, in the metric's direction."""
        return quality <= self.quality_target if self.lower_is_better else quality >= self.quality_target
