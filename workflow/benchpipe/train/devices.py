"""What training runs on: the target's tf.distribute strategy and precision, checked.

The global batch size is a hyperparameter, fixed by the rules in the closed division: a
strategy splits it across replicas, it never multiplies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchpipe.config import TrainingDevices
from benchpipe.errors import TrainingError

# Tensor cores, which make float16 matmuls pay, came with compute capability 7.0 (Volta).
MIXED_PRECISION_MIN_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: tuple[int, int] | None


def visible_gpus() -> list[Gpu]:
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(Gpu(details.get("device_name", device.name), details.get("compute_capability")))
    return gpus


def resolve_precision(setting: str, gpus: list[Gpu]) -> str:
    """The Keras dtype policy for ``setting`` (target key training.precision) on ``gpus``."""
    capable = bool(gpus) and all(
        g.compute_capability is not None and tuple(g.compute_capability) >= MIXED_PRECISION_MIN_CAPABILITY
        for g in gpus
    )
    if setting == "auto":
        return "mixed_float16" if capable else "float32"
    if setting == "mixed_float16" and not capable:
        found = ", ".join(f"{g.name} (compute capability {g.compute_capability})" for g in gpus) or "no GPU"
        raise TrainingError(
            f"target key training.precision is mixed_float16, but this device does not support it "
            f"({found}; needs compute capability {'.'.join(map(str, MIXED_PRECISION_MIN_CAPABILITY))}): "
            f"use auto or float32"
        )
    if setting not in ("float32", "mixed_float16"):
        raise TrainingError(f"target key training.precision: unknown value {setting!r}")
    return setting


def make_strategy(setting: str, gpus: list[Gpu]) -> Any:
    """The tf.distribute strategy for ``setting`` (target key training.distribution)."""
    import tensorflow as tf

    if setting == "default":
        return tf.distribute.get_strategy()
    if setting == "mirrored":
        if not gpus:
            raise TrainingError(
                "target key training.distribution is mirrored, but no GPU is visible: "
                "mirrored spreads one node's training across its GPUs; use default on a CPU"
            )
        return tf.distribute.MirroredStrategy()
    raise TrainingError(f"target key training.distribution: unknown value {setting!r}")


def per_replica_batch_size(global_batch_size: int, replicas: int) -> int:
    """Each replica's share of the global batch, which must divide evenly."""
    if replicas < 1 or global_batch_size % replicas:
        raise TrainingError(
            f"global_batch_size {global_batch_size} does not split evenly over {replicas} replicas: "
            f"the global batch is fixed, so choose a device count that divides it"
        )
    return global_batch_size // replicas


@dataclass(frozen=True)
class TrainingPlacement:
    strategy: Any
    precision: str
    replicas: int


def placement(settings: TrainingDevices, gpus: list[Gpu] | None = None) -> TrainingPlacement:
    """Strategy and precision for a target, from the devices this process sees."""
    gpus = visible_gpus() if gpus is None else gpus
    strategy = make_strategy(settings.distribution, gpus)
    return TrainingPlacement(strategy, resolve_precision(settings.precision, gpus), strategy.num_replicas_in_sync)
