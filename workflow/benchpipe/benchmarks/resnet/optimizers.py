"""Optimizers, learning-rate schedule and loss for ResNet-50 v1.5 (MLPerf closed), in Keras.

The hyperparameters, the schedule's step counts and the MLLOG keys are in
benchpipe.benchmarks.resnet, which imports no TensorFlow; they are re-exported here.

Everything here follows the MLPerf training reference for ResNet-50 v1.5 in TensorFlow 2
(mlcommons/training, image_classification/tensorflow2: lars_util.py, lars_optimizer.py,
common.py, resnet_runnable.py), rewritten for the Keras 3 optimizer API.

Which variables are exempt is decided by the Keras variable name (the last component of
``variable.path``), because the optimizer sees variables, not layers. It is decided once, in
``build``, over the model's variables, and looked up by index in each update: under
MirroredStrategy an update sees each replica's own copy, named ``.../gamma/replica_1``.

- LARS exempts ``gamma``, ``beta`` (BatchNormalization) and ``bias`` from both weight decay
  and the trust ratio: the reference's skip list ('batch_normalization', 'bias', 'bn')
  selects exactly these variables of the reference model.
- SGD exempts ``gamma`` and ``beta`` from its L2 term and decays everything else, the
  classifier's bias included: the reference sums the L2 loss over every trainable variable
  whose name lacks 'bn', and only BatchNormalization variables have it.

BatchNormalization's moving statistics are not trainable and never reach an optimizer.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# The workflow checks these against the closed rules while it parses the config, where an
# import of Keras would cost seconds.
from benchpipe.benchmarks.resnet.hyperparameters import (
    ResNetHyperparameters,
    check_optimizer,
    schedule_steps,
)
from benchpipe.contracts.errors import ConfigError

_BATCH_NORM_NAMES = frozenset({"gamma", "beta"})
_BIAS_NAMES = frozenset({"bias"})


def _short_name(variable) -> str:
    path = getattr(variable, "path", None) or variable.name
    return path.rsplit("/", 1)[-1].split(":", 1)[0]


def is_batch_norm(variable) -> bool:
    """A BatchNormalization scale or offset (Keras names them gamma and beta)."""
    return _short_name(variable) in _BATCH_NORM_NAMES


def is_lars_exempt(variable) -> bool:
    """Variables LARS updates with plain momentum SGD: no weight decay, no trust ratio."""
    name = _short_name(variable)
    return name in _BATCH_NORM_NAMES or name in _BIAS_NAMES


@keras.saving.register_keras_serializable(package="benchpipe")
class PolynomialWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0, then polynomial decay: the reference's PolynomialDecayWithWarmup.

    With ``w = warmup_steps`` and ``d = decay_steps``::

        lr(step) = base * step / w                                      step <= w
        lr(step) = (base - end) * (1 - min(step - w, d) / d) ** power + end   step > w

    The decay counts from the end of the warm-up, and ``d`` is what the MLLOG
    ``*_opt_learning_rate_decay_steps`` key reports; the reference sets it to
    ``train_steps - warmup_steps + 1`` (``decay_steps_for``). Keras evaluates the schedule
    at the optimizer's iteration count before the update, so the first step trains at 0.
    """

    def __init__(
        self,
        base_learning_rate: float,
        end_learning_rate: float,
        warmup_steps: int,
        decay_steps: int,
        power: float = 2.0,
    ) -> None:
        super().__init__()
        if not base_learning_rate > 0:
            raise ConfigError(f"base_learning_rate must be positive, got {base_learning_rate}")
        if end_learning_rate < 0:
            raise ConfigError(f"end_learning_rate must not be negative, got {end_learning_rate}")
        if warmup_steps < 0:
            raise ConfigError(f"warmup_steps must not be negative, got {warmup_steps}")
        if decay_steps < 1:
            raise ConfigError(f"decay_steps must be at least 1, got {decay_steps}")
        if power <= 0:
            raise ConfigError(f"power must be positive, got {power}")
        self.base_learning_rate = float(base_learning_rate)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        self.power = float(power)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decayed = ops.clip(step - self.warmup_steps, 0.0, float(self.decay_steps))
        remaining = 1.0 - decayed / self.decay_steps
        poly = (self.base_learning_rate - self.end_learning_rate) * ops.power(
            remaining, self.power
        ) + self.end_learning_rate
        if self.warmup_steps == 0:
            return poly
        warmup = self.base_learning_rate * step / self.warmup_steps
        return ops.where(step <= self.warmup_steps, warmup, poly)

    def get_config(self) -> dict[str, Any]:
        return {
            "base_learning_rate": self.base_learning_rate,
            "end_learning_rate": self.end_learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "power": self.power,
        }


@keras.saving.register_keras_serializable(package="benchpipe")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman and Ginsburg 2017) as the reference runs it.

    For a variable ``w`` that ``is_lars_exempt`` does not exempt, with gradient ``g``::

        trust = eta * |w| / (|g| + weight_decay * |w| + epsilon)   (1 when |w| or |g| is 0)
        v     = momentum * v - lr * trust * (g + weight_decay * w)
        w     = w + v

    Exempt variables take ``v = momentum * v - lr * g``. Norms are Euclidean over the whole
    variable. The reference replaces an epsilon of 0 by Keras's fuzz factor (1e-7) while
    logging 0; this class uses the value it is given, which the closed rules fix at 0.
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        eta: float = 0.001,
        epsilon: float = 0.0,
        name: str = "lars",
        **kwargs,
    ) -> None:
        # weight_decay is not passed on: the base class would apply it a second time,
        # decoupled, after the update.
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"LARS momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ConfigError(f"LARS weight_decay must not be negative, got {weight_decay}")
        if not eta > 0:
            raise ConfigError(f"LARS eta must be positive, got {eta}")
        if epsilon < 0:
            raise ConfigError(f"LARS epsilon must not be negative, got {epsilon}")
        self.momentum = float(momentum)
        self.lars_weight_decay = float(weight_decay)
        self.eta = float(eta)
        self.epsilon = float(epsilon)

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._momentums = self.add_optimizer_variables(variables, "momentum")
        self._exempt = [is_lars_exempt(v) for v in variables]

    def update_step(self, gradient, variable, learning_rate) -> None:
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if not self._exempt[self._get_variable_index(variable)]:
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            decay = ops.cast(self.lars_weight_decay, dtype)
            ratio = self.eta * w_norm / (g_norm + decay * w_norm + self.epsilon)
            one = ops.ones((), dtype=dtype)
            trust = ops.where(w_norm > 0, ops.where(g_norm > 0, ratio, one), one)
            lr = lr * trust
            gradient = gradient + decay * variable
        velocity = self._momentums[self._get_variable_index(variable)]
        momentum = ops.cast(self.momentum, dtype)
        self.assign(velocity, velocity * momentum - gradient * lr)
        self.assign_add(variable, velocity)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "eta": self.eta,
                "epsilon": self.epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="benchpipe")
class SGDWithL2(keras.optimizers.SGD):
    """Momentum SGD whose gradient carries the reference's L2 loss ``l2 * sum(w ** 2)``.

    The reference adds that loss over every non-BatchNormalization variable, so each such
    variable's gradient gains ``2 * l2 * w`` before momentum; ``l2`` is the value logged as
    ``sgd_opt_weight_decay``. Keras's own ``weight_decay`` (decoupled, outside momentum)
    would be a different optimizer, so it is refused.
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.9,
        l2: float = 1e-4,
        nesterov: bool = False,
        name: str = "sgd",
        **kwargs,
    ) -> None:
        if kwargs.pop("weight_decay", None) is not None:
            raise ConfigError("SGDWithL2 takes l2, not Keras's decoupled weight_decay")
        if l2 < 0:
            raise ConfigError(f"SGD l2 must not be negative, got {l2}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"SGD momentum must be in [0, 1), got {momentum}")
        super().__init__(
            learning_rate=learning_rate, momentum=float(momentum), nesterov=nesterov,
            name=name, **kwargs,
        )
        self.l2 = float(l2)

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._exempt = [is_batch_norm(v) for v in variables]

    def update_step(self, gradient, variable, learning_rate) -> None:
        if self.l2 and not self._exempt[self._get_variable_index(variable)]:
            dtype = variable.dtype
            gradient = ops.cast(gradient, dtype) + ops.cast(2.0 * self.l2, dtype) * variable
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("weight_decay", None)
        config["l2"] = self.l2
        return config


@keras.saving.register_keras_serializable(package="benchpipe")
class SparseLabelSmoothingCrossentropy(keras.losses.Loss):
    """Softmax cross-entropy of logits against smoothed one-hot targets, from integer labels.

    Equal to ``keras.losses.CategoricalCrossentropy(from_logits=True,
    label_smoothing=smoothing)`` on ``one_hot(labels)``: the target is
    ``(1 - smoothing) * one_hot + smoothing / num_classes``. It takes integer labels because
    the datasets store them so; the reference one-hots its labels in the input pipeline
    instead, with the same result. Averaged over the batch, as the reference's
    ``sum(loss) / batch_size``.
    """

    def __init__(self, smoothing: float = 0.1, name: str = "label_smoothing_crossentropy", **kwargs) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {smoothing}")
        super().__init__(name=name, **kwargs)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        targets = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            targets, y_pred, from_logits=True, label_smoothing=self.smoothing
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["smoothing"] = self.smoothing
        return config


def label_smoothing_loss(smoothing: float = 0.1) -> SparseLabelSmoothingCrossentropy:
    """The reference's training loss (label smoothing 0.1) over integer labels."""
    return SparseLabelSmoothingCrossentropy(smoothing)


def learning_rate_schedule(hp: ResNetHyperparameters, steps_per_epoch: int) -> PolynomialWarmup:
    """The reference schedule for a run of ``hp.train_epochs`` epochs of ``steps_per_epoch``."""
    warmup_steps, decay_steps = schedule_steps(hp, steps_per_epoch)
    return PolynomialWarmup(
        base_learning_rate=hp.base_learning_rate,
        end_learning_rate=hp.end_learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=decay_steps,
        power=hp.decay_poly_power,
    )


def make_optimizer(name: str, hp: ResNetHyperparameters, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """``sgd`` (SGDWithL2) or ``lars`` (LARS), both on the reference's warm-up + poly schedule."""
    schedule = learning_rate_schedule(hp, steps_per_epoch)
    if check_optimizer(name) == "lars":
        return LARS(
            learning_rate=schedule, momentum=hp.momentum, weight_decay=hp.weight_decay,
            eta=hp.lars_eta, epsilon=hp.lars_epsilon,
        )
    return SGDWithL2(learning_rate=schedule, momentum=hp.momentum, l2=hp.weight_decay)
