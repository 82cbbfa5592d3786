"""What training runs on: the target's tf.distribute strategy, precision and thread counts, checked.

The global batch size is a hyperparameter, fixed by the rules in the closed division: a
strategy splits it across replicas, it never multiplies it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.contracts.config import TrainingDevices
from benchpipe.contracts.errors import TrainingError

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


@dataclass(frozen=True)
class SlurmWorker:
    """This task's place in a multi-node training run, as SlurmClusterResolver reads it from SLURM."""

    resolver: Any
    rank: int
    workers: int
    cluster_spec: dict[str, list[str]]

    @property
    def chief(self) -> bool:
        """Rank 0 writes the run (its one MLLOG log and the model); the others train alongside."""
        return self.rank == 0


_WORKER: SlurmWorker | None = None


def task_output(out: Path, worker: SlurmWorker | None) -> Path:
    """Where this task writes its run: ``out`` for rank 0 (or a run on one node), and for any
    other rank a folder of its own that nobody reads, so that a run has one MLLOG log."""
    if worker is None or worker.chief:
        return out
    return Path(tempfile.mkdtemp(prefix=f"benchpipe-rank{worker.rank}-")) / out.name


def slurm_worker(gpus_per_node: int) -> SlurmWorker:
    """Join the run as the task srun started: call before TensorFlow touches a GPU.

    SlurmClusterResolver reads SLURM_PROCID and the step's node list and tasks per node, and
    (GPU targets) narrows CUDA_VISIBLE_DEVICES to this task's GPU, one per task; make_strategy
    then builds MultiWorkerMirroredStrategy on it.
    """
    global _WORKER
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import SlurmClusterResolver

    try:
        resolver = SlurmClusterResolver(gpus_per_node=gpus_per_node, gpus_per_task=1 if gpus_per_node else 0,
                                        auto_set_gpu=gpus_per_node > 0)
        spec = resolver.cluster_spec().as_dict()
    except RuntimeError as exc:  # a variable missing: not started by srun in a multi-node job
        raise TrainingError(f"training.distribution multi_worker: {exc} (the workflow starts every task with srun "
                            "in a job of slurm.nodes nodes)") from exc
    _WORKER = SlurmWorker(resolver, resolver.task_id, sum(len(hosts) for hosts in spec.values()), spec)
    return _WORKER


def make_strategy(setting: str, gpus: list[Gpu]) -> Any:
    """The tf.distribute strategy for ``setting`` (target key training.distribution)."""
    import tensorflow as tf

    if setting == "default":
        return tf.distribute.get_strategy()
    if setting == "multi_worker":
        if _WORKER is None:
            raise TrainingError("training.distribution multi_worker: this task has not joined its run (slurm_worker)")
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_WORKER.resolver)
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


@dataclass(frozen=True)
class ThreadCounts:
    intra_op: int
    inter_op: int


def thread_counts(settings: TrainingDevices, threads: int) -> ThreadCounts:
    """The target's thread counts; a key left null takes the job's ``threads``."""
    counts = {}
    for key, value in (("intra_op_threads", settings.intra_op_threads), ("inter_op_threads", settings.inter_op_threads)):
        chosen = threads if value is None else value
        if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 1:
            source = "the job's thread count (--threads)" if value is None else f"target key training.{key}"
            raise TrainingError(f"{source} is {chosen!r}: need an integer of at least 1 for training.{key}")
        counts[key] = chosen
    return ThreadCounts(counts["intra_op_threads"], counts["inter_op_threads"])


def configure_threads(counts: ThreadCounts) -> None:
    """Give TensorFlow ``counts``; it takes them only before it runs its first op."""
    import tensorflow as tf

    threading = tf.config.threading
    for key, wanted, current, setter in (
        ("intra_op_threads", counts.intra_op, threading.get_intra_op_parallelism_threads,
         threading.set_intra_op_parallelism_threads),
        ("inter_op_threads", counts.inter_op, threading.get_inter_op_parallelism_threads,
         threading.set_inter_op_parallelism_threads),
    ):
        try:
            setter(wanted)
        except RuntimeError as exc:
            # Setting the count TensorFlow already has is allowed; any other is refused.
            started = current()
            raise TrainingError(
                f"training.{key} (null: the job's --threads) asks for {wanted} threads, but TensorFlow "
                f"already started in this process with {started or 'its own choice'}: thread counts are "
                f"fixed before TensorFlow runs its first op, so train in a fresh process"
            ) from exc


def distribution_name(strategy: Any) -> str:
    """The training.distribution value ``strategy`` stands for; the class name for any other strategy."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if type(strategy) is type(tf.distribute.get_strategy()) and strategy.num_replicas_in_sync == 1:
        return "default"
    return type(strategy).__name__


def device_names(strategy: Any) -> list[str]:
    """The devices ``strategy`` computes on, as /device:<TYPE>:<index>."""
    import tensorflow as tf

    try:
        names = list(strategy.extended.worker_devices)
    except RuntimeError:
        # The default strategy lists no devices: its ops go where TensorFlow places them
        # by default, on the first GPU if there is one.
        names = [(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name]
    return [_short_device_name(name) for name in names]


def _short_device_name(name: str) -> str:
    import tensorflow as tf

    spec = tf.DeviceSpec.from_string(name)
    return f"/device:{spec.device_type}:{spec.device_index}"


def devices_record(used: TrainingPlacement, threads: ThreadCounts, global_batch_size: int) -> dict[str, Any]:
    """What a run trained on, as its devices.json holds it."""
    return {
        "distribution": distribution_name(used.strategy),
        "replicas": used.replicas,
        "precision": used.precision,
        "intra_op_threads": threads.intra_op,
        "inter_op_threads": threads.inter_op,
        "global_batch_size": global_batch_size,
        "per_replica_batch_size": per_replica_batch_size(global_batch_size, used.replicas),
        "devices": device_names(used.strategy),
    }
