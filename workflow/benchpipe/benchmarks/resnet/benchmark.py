"""resnet: ResNet-50 v1.5 on ImageNet to 0.759 top-1, as the MLPerf training reference (closed).

ImageNet is never downloaded: ``benchpipe datasets imagenet`` (the ``datasets.imagenet``
config key) converts the user's licensed copy into TFRecord shards in data/imagenet,
which this benchmark trains on through its trainer hooks. The logs are checked against the
official rules of training ruleset 4.0.0, which know ResNet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.benchmarks.resnet.hyperparameters import (
    CLOSED_FIXED,
    IMAGE_SIZE,
    LABEL_SMOOTHING,
    MIN_IMAGE_SIZE,
    OPTIMIZERS,
    ResNetHyperparameters,
    mllog_hyperparameters,
)
from benchpipe.contracts.benchmark import Benchmark, FixedInClosed, InferenceTask, Split, sgd_problems
from benchpipe.contracts.errors import DatasetError
from benchpipe.mlcommons.rules import training_rules_file

QUALITY_TARGET = 0.759


@dataclass(frozen=True)
class ResNetTraining:
    """The knobs of a run; the image size is one, so that tests and development runs use small images.

    ``max_epochs`` is also the length of the learning-rate schedule (the reference's
    train_epochs). ``model_bn_span`` None: each BatchNormalization sees the whole global
    batch, as on one device. Its fields are the keys of ``training.hyperparameters.resnet``.
    """

    global_batch_size: int
    base_learning_rate: float
    warmup_epochs: float
    max_epochs: int
    weight_decay: float
    momentum: float = 0.9
    optimizer: str = "lars"
    image_size: int = IMAGE_SIZE
    label_smoothing: float = LABEL_SMOOTHING
    model_bn_span: int | None = None

    def schedule(self) -> ResNetHyperparameters:
        return ResNetHyperparameters(
            global_batch_size=self.global_batch_size,
            base_learning_rate=self.base_learning_rate,
            warmup_epochs=self.warmup_epochs,
            train_epochs=self.max_epochs,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            model_bn_span=self.model_bn_span,
        )

    def problems(self) -> list[tuple[str, str]]:
        """(key, why) for each value that the model, the optimizers or the loss cannot run."""
        found = sgd_problems(self)
        if self.warmup_epochs < 0:
            found.append(("warmup_epochs", "must not be negative"))
        if self.max_epochs <= max(self.warmup_epochs, 0):
            found.append(("max_epochs", f"must exceed warmup_epochs ({self.warmup_epochs}): "
                                        "the schedule decays after the warm-up"))
        if self.optimizer not in OPTIMIZERS:
            found.append(("optimizer", "must be " + " or ".join(f'"{name}"' for name in OPTIMIZERS)))
        if self.image_size < MIN_IMAGE_SIZE:
            found.append(("image_size", f"is too small: ResNet-50 halves its input five times, so it "
                                        f"needs at least {MIN_IMAGE_SIZE}"))
        if not 0 <= self.label_smoothing < 1:
            found.append(("label_smoothing", "must be in [0, 1)"))
        if self.model_bn_span is not None and not 0 < self.model_bn_span <= max(self.global_batch_size, 1):
            found.append(("model_bn_span", "must be null or in [1, global_batch_size]"))
        return found

    def closed_fixed(self) -> dict[str, FixedInClosed]:
        return CLOSED_FIXED

    def mllog_items(self, steps_per_epoch: int) -> dict[str, Any]:
        return mllog_hyperparameters(self.optimizer, self.schedule(), steps_per_epoch)

    def mllog_sources(self) -> dict[str, str | None]:
        """The config key behind each MLLOG key of ``mllog_items``; None: benchpipe's own constant."""
        prefix = self.optimizer
        warmup = "lars_opt_learning_rate_warmup_epochs" if prefix == "lars" else "opt_learning_rate_warmup_epochs"
        return {
            "global_batch_size": "global_batch_size",
            "gradient_accumulation_steps": None,
            "opt_name": "optimizer",
            "model_bn_span": "global_batch_size" if self.model_bn_span is None else "model_bn_span",
            f"{prefix}_opt_base_learning_rate": "base_learning_rate",
            f"{prefix}_opt_end_learning_rate": None,
            f"{prefix}_opt_learning_rate_decay_poly_power": None,
            f"{prefix}_opt_learning_rate_decay_steps": "max_epochs",
            f"{prefix}_opt_weight_decay": "weight_decay",
            f"{prefix}_opt_momentum": "momentum",
            "lars_epsilon": None,
            warmup: "warmup_epochs",
        }


def _classes(data_dir: Path) -> int:
    from benchpipe.benchmarks.resnet.input_pipeline import read_manifest

    classes = read_manifest(data_dir).get("classes")
    if not isinstance(classes, int) or classes < 1:
        raise DatasetError(f"{data_dir / 'manifest.json'}: key 'classes' is {classes!r}, not a positive integer")
    return classes


@dataclass(frozen=True)
class ResNetTrainer:
    """The trainer hooks (benchpipe.contracts.benchmark.TrainerHooks) of ResNet-50 v1.5."""

    hp: ResNetTraining

    def sizes(self, data_dir: Path) -> tuple[int, int]:
        from benchpipe.benchmarks.resnet.input_pipeline import split_size

        return split_size(data_dir, "train"), split_size(data_dir, "val")

    def steps_per_epoch(self, train_samples: int) -> int:
        # The train stream drops only its last short batch (input_pipeline.train_dataset),
        # so every epoch of whole batches is there.
        return train_samples // self.hp.global_batch_size

    def element_spec(self):
        import tensorflow as tf

        batch, size = self.hp.global_batch_size, self.hp.image_size
        return tf.TensorSpec([batch, size, size, 3], tf.float32), tf.TensorSpec([batch], tf.int32)

    def train_dataset(self, data_dir: Path, seed: int, epochs: int):
        from benchpipe.benchmarks.resnet.input_pipeline import train_dataset

        return train_dataset(data_dir, global_batch_size=self.hp.global_batch_size,
                             image_size=self.hp.image_size, seed=seed, epochs=epochs)

    def eval_dataset(self, data_dir: Path):
        from benchpipe.benchmarks.resnet.input_pipeline import eval_dataset

        return eval_dataset(data_dir, batch_size=self.hp.global_batch_size, image_size=self.hp.image_size)

    def build_model(self, data_dir: Path):
        from benchpipe.benchmarks.resnet.model import build_resnet50

        # The reference initialises the last gamma of each block to one.
        return build_resnet50(self.hp.image_size, _classes(data_dir), zero_init_residual=False)

    def build_optimizer(self, steps_per_epoch: int):
        from benchpipe.benchmarks.resnet.optimizers import make_optimizer

        return make_optimizer(self.hp.optimizer, self.hp.schedule(), steps_per_epoch)

    def loss(self):
        from benchpipe.benchmarks.resnet.optimizers import label_smoothing_loss

        return label_smoothing_loss(self.hp.label_smoothing)

    def mllog_items(self, steps_per_epoch: int) -> dict[str, Any]:
        return self.hp.mllog_items(steps_per_epoch)


def preprocess(raw_dir: Path) -> tuple[Split, Split]:
    raise DatasetError(
        "ImageNet is never downloaded: set datasets.imagenet in the config to your licensed copy "
        "(train_dir, val_dir, val_map), or run `benchpipe datasets imagenet` to write data/imagenet"
    )


def build_model():
    """The full-size network, for a caller that has no dataset at hand."""
    from benchpipe.benchmarks.resnet.model import build_resnet50

    return build_resnet50(IMAGE_SIZE, 1000, zero_init_residual=False)


BENCHMARK = Benchmark(
    name="resnet",
    sources=(),
    preprocess=preprocess,
    build_model=build_model,
    # The reference's LARS settings for the RCP of global batch 3264 (mlperf-logging's
    # rcps_resnet.json, resnet_ref_3264); 39 epochs reproduce its decay steps.
    hyperparameters=ResNetTraining(
        global_batch_size=3264,
        base_learning_rate=10.5,
        warmup_epochs=2,
        max_epochs=39,
        weight_decay=5e-5,
        momentum=0.9,
    ),
    quality_target=QUALITY_TARGET,
    num_runs=5,
    inference=InferenceTask(
        accuracy_target=0.99 * 0.7646,  # MLPerf inference: 99 % of the FP32 reference's top-1
        offline_batch_size=64,
        performance_sample_count=1024,  # the rules' QSL size for resnet50
        loadgen_model="resnet50",
        server_latency_ms=15.0,  # the rules' p99 bound (mlperf.conf resnet50.Server.target_latency)
        official_name="resnet",
    ),
    # The 4.0.0 ruleset's entry file: it routes a resnet log to the closed or open ResNet rules.
    rules_file=training_rules_file("common.yaml", "4.0.0"),
    eval_every_epochs=4,
    eval_offset=2,
    trainer=ResNetTrainer,
    dataset="imagenet",
    rulesets=("4.0.0",),
    mobile_dataset="IMAGENET",
)
