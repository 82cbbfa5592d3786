"""Loading and checking the workflow config and the hardware target files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchpipe.contracts import registry
from benchpipe.contracts.errors import ConfigError, ValidationError
from benchpipe.contracts.rounds import COMPLIANCE_TESTS
from benchpipe.contracts.schemas import validate


@dataclass(frozen=True)
class Resources:
    """Limits of one container job; None means the engine's default (no limit)."""

    cpus: float | None = None
    memory: str | None = None
    shm_size: str = "1g"


@dataclass(frozen=True)
class SlurmRequest:
    """What a target's jobs ask SLURM for (target.schema.json's slurm); None: the default."""

    partition: str | None = None
    account: str | None = None
    gpu_model: str | None = None
    cpus_per_task: int | None = None
    mem_mb: int | None = None
    runtime_min: int | None = None
    constraint: str | None = None
    nodes: int = 1


@dataclass(frozen=True)
class TrainingDevices:
    """How training uses the target's devices: a tf.distribute strategy, a precision and thread counts.

    A thread count of None is the job's own (``benchpipe train --threads``).
    """

    distribution: str = "default"
    precision: str = "auto"
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None


@dataclass(frozen=True)
class Target:
    """A hardware target: how jobs run there and what the user says about the system."""

    name: str
    runtime: str
    device_kind: str
    device_count: int
    image: str | None = None
    resources: Resources = field(default_factory=Resources)
    env_allowlist: tuple[str, ...] = ()
    oci_runtime: str | None = None
    ulimits: dict[str, str] = field(default_factory=dict)
    system: dict[str, str] = field(default_factory=dict)
    training: TrainingDevices = field(default_factory=TrainingDevices)
    slurm: SlurmRequest = field(default_factory=SlurmRequest)

    @property
    def containerized(self) -> bool:
        return self.runtime != "local"

    @property
    def gpus(self) -> int:
        return self.device_count if self.device_kind == "gpu" else 0


def read_yaml(path: Path) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_target(path: Path) -> Target:
    data = read_yaml(path)
    try:
        validate(data, "target.schema.json", what=str(path), fill_defaults=True)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc
    if data["name"] != path.stem:
        raise ConfigError(f"{path}: key 'name' is '{data['name']}' but the file is named '{path.stem}'")
    nodes, distribution = data["slurm"]["nodes"], data["training"]["distribution"]
    if (nodes > 1) != (distribution == "multi_worker"):
        raise ConfigError(f"{path}: slurm.nodes is {nodes} and training.distribution is {distribution}: "
                          "training across nodes is multi_worker, and multi_worker needs more than one node")
    if nodes > 1 and data["runtime"] not in ("local", "apptainer"):
        raise ConfigError(f"{path}: slurm.nodes is {nodes}, but runtime {data['runtime']} cannot start one task "
                          "per GPU on every node through srun: use apptainer (or local)")
    return Target(
        name=data["name"],
        runtime=data["runtime"],
        device_kind=data["devices"]["kind"],
        device_count=data["devices"]["count"],
        image=data.get("image"),
        resources=Resources(**data["resources"]),
        env_allowlist=tuple(data["env_allowlist"]),
        oci_runtime=data["oci_runtime"],
        ulimits=dict(data["ulimits"]),
        system=dict(data["system"]),
        training=TrainingDevices(**data["training"]),
        slurm=SlurmRequest(**data["slurm"]),
    )


def check_config(config: dict[str, Any], base_dir: Path) -> dict[str, Target]:
    """What the schema cannot say: that named benchmarks and targets exist; returns the
    targets, by name, as their files (checked) say.

    Called by the Snakefile after snakemake.utils.validate, so that a bad config fails
    before any job runs.
    """
    known = registry.names()
    for i, name in enumerate(config["benchmarks"]):
        if name not in known:
            raise ConfigError(
                f"config key 'benchmarks[{i}]': unknown benchmark '{name}' (known: {', '.join(known)})"
            )
    targets_dir = base_dir / config["targets_dir"]
    targets = {}
    for i, name in enumerate(config["targets"]):
        path = targets_dir / f"{name}.yaml"
        if not path.is_file():
            available = sorted(p.stem for p in targets_dir.glob("*.yaml"))
            raise ConfigError(
                f"config key 'targets[{i}]': unknown target '{name}': no file {path} "
                f"(available: {', '.join(available) or 'none'})"
            )
        targets[name] = load_target(path)
    return targets


def inference_benchmarks(config: dict[str, Any]) -> list[str]:
    """The benchmarks LoadGen tests: ``inference.benchmarks``, or every benchmark that has an
    inference task (null); a training-only one (llama2_70b_lora) is never tested."""
    chosen = config["inference"].get("benchmarks")
    if chosen is None:
        return [name for name in config["benchmarks"] if registry.get(name).inference is not None]
    for name in chosen:
        if name not in config["benchmarks"]:
            raise ConfigError(f"inference.benchmarks: {name} is not in benchmarks")
        if registry.get(name).inference is None:
            raise ConfigError(f"inference.benchmarks: {name} is a training benchmark with no inference task "
                              "(MLPerf inference tests other models)")
    return list(chosen)


def inference_modes(config: dict[str, Any]) -> list[str]:
    """The tests of each scenario: the compliance tests only in the closed division, as the rules ask."""
    modes = ["performance", "accuracy"]
    if config["submission"]["division"] == "closed":
        modes += list(COMPLIANCE_TESTS)
    return modes


def explain_invalid_config(config: dict[str, Any]) -> str:
    """One line naming the key that makes ``config`` invalid against the config schema."""
    try:
        validate(config, "config.schema.json", what="config")
    except ValidationError as exc:
        return str(exc)
    return "config does not match schemas/config.schema.json"
