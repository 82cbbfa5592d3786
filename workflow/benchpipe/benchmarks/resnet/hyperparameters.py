"""ResNet-50's hyperparameters under the training rules: the closed division's fixed values,
the optimizer's MLLOG keys and the schedule's steps. No TensorFlow here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchpipe.contracts.benchmark import FixedInClosed
from benchpipe.contracts.errors import ConfigError

IMAGE_SIZE = 224
OPTIMIZERS = ("sgd", "lars")
# ResNet-50 halves its input five times (conv1, pool1 and the first block of stages 3 to 5):
# at 32 pixels the last stage sees a 1x1 map; below, a stride-2 layer has nothing left to halve.
MIN_IMAGE_SIZE = 32
LABEL_SMOOTHING = 0.1

# What the closed rules fix that no MLLOG event shows, so that the compliance checker never sees it.
CLOSED_FIXED = {
    "image_size": FixedInClosed(
        allowed=(IMAGE_SIZE,),
        rule='training rules, Data Representation: "CLOSED: Images must have the same size as in '
             'the reference implementation."',
    ),
    "label_smoothing": FixedInClosed(
        allowed=(0.0, LABEL_SMOOTHING),
        rule='training rules, Hyperparameters, resnet: "label smoothing** | 0 or 0.1" '
             "(** not logged, checked in the code)",
    ),
}


# ---------------------------------------------------------------------------------------------
# The schedule's arithmetic and the MLLOG keys, without TensorFlow: the workflow checks them
# against the closed rules while it parses the config, before any job (and before any import
# of Keras). benchpipe.benchmarks.resnet.optimizers builds the Keras pieces from the same values.


@dataclass(frozen=True)
class ResNetHyperparameters:
    """The closed-division knobs; defaults are the values the 4.0.0 rules fix or the reference uses."""

    global_batch_size: int
    base_learning_rate: float
    warmup_epochs: float
    train_epochs: int
    weight_decay: float
    momentum: float = 0.9
    end_learning_rate: float = 1e-4  # fixed by the closed rules for both optimizers
    decay_poly_power: float = 2.0  # fixed by the closed rules for LARS
    lars_epsilon: float = 0.0  # fixed by the closed rules
    lars_eta: float = 0.001
    model_bn_span: int | None = None  # samples each BatchNormalization sees; None: the global batch

    def __post_init__(self) -> None:
        if self.global_batch_size < 1:
            raise ConfigError(f"global_batch_size must be positive, got {self.global_batch_size}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must not be negative, got {self.warmup_epochs}")
        if self.train_epochs <= self.warmup_epochs:
            raise ConfigError(
                f"train_epochs ({self.train_epochs}) must exceed warmup_epochs ({self.warmup_epochs})"
            )
        if self.model_bn_span is not None and not 0 < self.model_bn_span <= self.global_batch_size:
            raise ConfigError(
                f"model_bn_span must be in [1, global_batch_size], got {self.model_bn_span}"
            )

    @property
    def bn_span(self) -> int:
        return self.model_bn_span or self.global_batch_size


def check_optimizer(name: str) -> str:
    if name not in OPTIMIZERS:
        raise ConfigError(f"opt_name must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return name


def decay_steps_for(train_steps: int, warmup_steps: int) -> int:
    """The reference's decay length: the steps after warm-up, plus one."""
    if train_steps <= warmup_steps:
        raise ConfigError(
            f"train steps ({train_steps}) must exceed the warm-up steps ({warmup_steps})"
        )
    return train_steps - warmup_steps + 1


def schedule_steps(hp: ResNetHyperparameters, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, decay steps) of a run of ``hp.train_epochs`` epochs of ``steps_per_epoch``."""
    if steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    # The reference multiplies epochs by steps without rounding; fractional warm-up epochs
    # round to whole steps here so that the schedule stays integral.
    warmup_steps = round(hp.warmup_epochs * steps_per_epoch)
    return warmup_steps, decay_steps_for(hp.train_epochs * steps_per_epoch, warmup_steps)


def _plain(value: float) -> int | float:
    """MLLOG values are plain numbers; whole floats are written as integers."""
    return int(value) if float(value).is_integer() else float(value)


def mllog_hyperparameters(name: str, hp: ResNetHyperparameters, steps_per_epoch: int) -> dict[str, Any]:
    """The hyperparameter events of a closed ResNet run (ruleset training 4.0.0) for ``name``.

    The keys are those closed_resnet.yaml requires (global_batch_size, opt_name), the one
    closed_common.yaml adds (gradient_accumulation_steps) and those of
    closed_resnet_{sgd,lars}.yaml. ``model_bn_span`` is required for SGD only; it is logged
    for LARS too, as the reference does.
    """
    prefix = check_optimizer(name)
    _, decay_steps = schedule_steps(hp, steps_per_epoch)
    items: dict[str, Any] = {
        "global_batch_size": hp.global_batch_size,
        "gradient_accumulation_steps": 1,  # both optimizers apply every step's gradient
        "opt_name": name,
        "model_bn_span": hp.bn_span,
        f"{prefix}_opt_base_learning_rate": float(hp.base_learning_rate),
        f"{prefix}_opt_end_learning_rate": float(hp.end_learning_rate),
        f"{prefix}_opt_learning_rate_decay_poly_power": float(hp.decay_poly_power),
        f"{prefix}_opt_learning_rate_decay_steps": decay_steps,
        f"{prefix}_opt_weight_decay": float(hp.weight_decay),
        f"{prefix}_opt_momentum": float(hp.momentum),
    }
    warmup = _plain(hp.warmup_epochs)
    if name == "lars":
        items["lars_epsilon"] = float(hp.lars_epsilon)
        items["lars_opt_learning_rate_warmup_epochs"] = warmup
    else:
        items["opt_learning_rate_warmup_epochs"] = warmup
    return items
