"""Loading and checking the workflow config and the hardware target files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from benchpipe.contracts import registry
from benchpipe.contracts.benchmark import LLMInferenceTask
from benchpipe.contracts.errors import ConfigError, ValidationError
from benchpipe.contracts.rounds import COMPLIANCE_TESTS, RUNNABLE_COMPLIANCE_TESTS, inference_round
from benchpipe.contracts.schemas import validate

# A system description's system_type, as the official checker accepts it, and the round's
# categories whose scenarios each may submit.
SYSTEM_TYPES: dict[str, tuple[str, ...]] = {
    "datacenter": ("datacenter",),
    "edge": ("edge",),
    "datacenter,edge": ("datacenter", "edge"),
    "edge,datacenter": ("datacenter", "edge"),
}
# The round has these scenarios for LLMs only, and benchpipe's LoadGen harness for classifiers
# has no such scenario: a classifier skips them.
LLM_ONLY_SCENARIOS = ("Interactive",)


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
class LiteRTSettings:
    """A backend: litert target's interpreter (target.schema.json's litert)."""

    delegate: str = "cpu"
    delegate_path: str | None = None
    delegate_options: dict[str, str] = field(default_factory=dict)
    threads: int | None = None


@dataclass(frozen=True)
class AdbDevice:
    """An Android device of a runtime: adb target (target.schema.json's adb)."""

    binary: str
    lib_path: str
    serial: str | None = None
    adb: str = "adb"
    native_lib_path: str | None = None
    device_dir: str = "/data/local/tmp/benchpipe"
    custom_config: dict[str, str] = field(default_factory=dict)


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
    backend: str = "tensorflow"
    litert: LiteRTSettings = field(default_factory=LiteRTSettings)
    adb: AdbDevice | None = None

    @property
    def containerized(self) -> bool:
        return self.runtime not in ("local", "adb")

    @property
    def mobile(self) -> bool:
        """Whether it runs the Mobile app's tasks: LiteRT on this host or in an image, or a device."""
        return self.backend == "litert" or self.runtime == "adb"

    @property
    def gpus(self) -> int:
        return self.device_count if self.device_kind == "gpu" else 0

    @property
    def system_type(self) -> str:
        """Its system description's system_type: the target file's ``system.system_type``, else edge
        for a CPU-only target and datacenter for one with accelerators."""
        return self.system.get("system_type") or ("edge" if self.device_kind == "cpu" else "datacenter")


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
    if data["runtime"] == "adb" and data["backend"] != "litert":
        raise ConfigError(f"{path}: runtime adb runs the Mobile app's tasks on LiteRT: set backend: litert")
    if data["backend"] == "litert" and data["litert"]["delegate"] == "nnapi" and data["runtime"] != "adb":
        raise ConfigError(f"{path}: litert.delegate nnapi exists only on an Android device: use runtime adb")
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
        backend=data["backend"],
        litert=LiteRTSettings(**data["litert"]),
        adb=AdbDevice(**data["adb"]) if "adb" in data else None,
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


def _target_file(config: Mapping[str, Any], base_dir: Path, name: str, key: str) -> Path:
    targets_dir = base_dir / config["targets_dir"]
    path = targets_dir / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in targets_dir.glob("*.yaml"))
        raise ConfigError(f"config key '{key}': unknown target '{name}': no file {path} "
                          f"(available: {', '.join(available) or 'none'})")
    return path


def check_mobile_config(config: Mapping[str, Any], base_dir: Path, targets: Mapping[str, Target]) -> dict[str, Target]:
    """The Mobile family's targets, by name, checked: each runs LiteRT (or is a device), no
    training or inference target does, and the benchmarks, model source and precisions fit."""
    for i, name in enumerate(config["targets"]):
        if targets[name].mobile:
            raise ConfigError(f"config key 'targets[{i}]': {name} runs LiteRT (backend litert or runtime adb): it runs "
                              "the Mobile tasks, not training or the Inference family: list it under mobile.targets")
    mobile = config["mobile"]
    found = {}
    for i, name in enumerate(mobile["targets"]):
        target = load_target(_target_file(config, base_dir, name, f"mobile.targets[{i}]"))
        if not target.mobile:
            raise ConfigError(f"config key 'mobile.targets[{i}]': {name} has backend {target.backend}: a Mobile target "
                              "serves LiteRT (backend: litert) or is an Android device (runtime: adb)")
        found[name] = target
    supplied = supplied_models(config, base_dir)
    if not found:
        if supplied:
            raise ConfigError(f"mobile.supplied: {', '.join(supplied)} would run on no target: "
                              "mobile.targets names none")
        return found
    benchmarks = mobile_benchmarks(config)
    if not benchmarks and not supplied:
        able = ", ".join(n for n in registry.names() if registry.get(n).mobile_dataset)
        raise ConfigError(f"mobile.targets is set, but no benchmark of `benchmarks` has Mobile tasks "
                          f"(those that do: {able}) and mobile.supplied names no model")
    if benchmarks and not mobile["tasks"]:
        raise ConfigError("mobile.targets is set, but mobile.tasks names none of the app's tasks")
    source = mobile_model_target(config)
    if source not in config["targets"]:
        raise ConfigError(f"mobile.model_from: {source} is not in targets ({', '.join(config['targets'])})")
    if "int8" in mobile["precisions"] and "fp32" not in mobile["precisions"]:
        raise ConfigError("mobile.precisions: int8 is held to the fp32 model's accuracy on the same samples: "
                          "add fp32")
    return found


class SuppliedModel(NamedTuple):
    """A model of the app's own that the user supplies (``mobile.supplied.<name>``), paths resolved."""

    name: str
    tasks: tuple[str, ...]
    data: Path
    stand_in_data: bool
    modes: tuple[str, ...]
    tflite: dict[str, tuple[Path, str]]  # precision -> (.tflite, its stated sha256)


def supplied_models(config: Mapping[str, Any], base_dir: Path) -> dict[str, SuppliedModel]:
    """``mobile.supplied``, checked: names apart from benchpipe's benchmarks, files present, an
    int8 model scored against its fp32 one, and a submission's models scored at all."""
    mobile = config["mobile"]
    found = {}
    for name, entry in (mobile.get("supplied") or {}).items():
        key = f"mobile.supplied.{name}"
        if name in registry.names():
            raise ConfigError(f"{key}: {name} is a benchpipe benchmark's name, and the tree's "
                              f"mobile/<target>/{name}/ holds its results: name the supplied model otherwise")
        data = _from_base(base_dir, entry["data"])
        if not data.is_dir():
            raise ConfigError(f"{key}.data: {data}: no such folder (the task's dataset files, named as tasks.pbtxt "
                              "names them)")
        tflite = {}
        for precision in ("fp32", "int8"):
            if precision in entry:
                path = _from_base(base_dir, entry[precision]["tflite"])
                if not path.is_file():
                    raise ConfigError(f"{key}.{precision}.tflite: {path}: no such file")
                tflite[precision] = (path, entry[precision]["sha256"])
        modes = tuple(entry.get("modes") or ("performance", "accuracy"))
        if "accuracy" in modes and "int8" in tflite and "fp32" not in tflite:
            raise ConfigError(f"{key}: int8's accuracy is held to the fp32 model's on the same samples: "
                              "add its fp32 model, or run modes [performance]")
        if mobile["official"] and "accuracy" not in modes:
            raise ConfigError(f"{key}.modes: a submission (mobile.official) runs every task's accuracy too")
        found[name] = SuppliedModel(name, tuple(entry["tasks"]), data, bool(entry.get("stand_in_data")), modes,
                                    tflite)
    return found


def _from_base(base_dir: Path, path: str) -> Path:
    """A configured path: absolute, or from the repository root (where `make submit` runs)."""
    return Path(path) if Path(path).is_absolute() else Path(base_dir) / path


def mobile_benchmarks(config: Mapping[str, Any]) -> list[str]:
    """The benchmarks whose model runs the app's tasks: ``mobile.benchmarks``, or every one that has some."""
    chosen = config["mobile"].get("benchmarks")
    if chosen is None:
        return [name for name in config["benchmarks"] if registry.get(name).mobile_dataset]
    for name in chosen:
        if name not in config["benchmarks"]:
            raise ConfigError(f"mobile.benchmarks: {name} is not in benchmarks")
        if not registry.get(name).mobile_dataset:
            raise ConfigError(f"mobile.benchmarks: {name} answers none of the Mobile app's tasks")
    return list(chosen)


def mobile_model_target(config: Mapping[str, Any]) -> str:
    """The target whose served model the Mobile family converts."""
    return config["mobile"].get("model_from") or config["targets"][0]


def mobile_run_mode(config: Mapping[str, Any]) -> str:
    """A submission (mobile.official) runs the app's normal mode, whatever run_mode says."""
    return "normal" if config["mobile"]["official"] else config["mobile"]["run_mode"]


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


def training_benchmarks(config: Mapping[str, Any]) -> list[str]:
    """The benchmarks benchpipe trains: all but the inference-only ones, which serve a given model."""
    return [name for name in config["benchmarks"] if registry.get(name).trains]


def training_runs(config: Mapping[str, Any], benchmark: str) -> int:
    """The training runs of ``benchmark``: ``training.runs``, or the benchmark's own count; none
    for an inference-only benchmark, whatever training.runs says."""
    bench = registry.get(benchmark)
    if not bench.trains:
        return 0
    return config["training"].get("runs") or bench.num_runs


def is_llm(benchmark: str) -> bool:
    """Whether ``benchmark`` serves a language model (a Llama checkpoint) rather than a classifier."""
    return isinstance(registry.get(benchmark).inference, LLMInferenceTask)


def system_categories(system_type: str, where: str = "system_type") -> tuple[str, ...]:
    """The round's categories (datacenter, edge) a system of ``system_type`` may submit in."""
    if system_type not in SYSTEM_TYPES:
        raise ConfigError(f"{where}: '{system_type}' is not one of {', '.join(SYSTEM_TYPES)}")
    return SYSTEM_TYPES[system_type]


def benchmark_scenarios(config: Mapping[str, Any], benchmark: str, system_type: str | None) -> list[str]:
    """The scenarios LoadGen runs for ``benchmark`` on a system of ``system_type``, in the config's order.

    A classifier runs every configured scenario but the LLM-only ones, whatever the system. An
    LLM runs those the round allows its official model in the system's categories: llama3.1-8b
    is a datacenter model (Offline, Server, Interactive), llama3.1-8b-edge an edge one
    (SingleStream, Offline), and the checker would refuse a scenario outside its system type's
    lists; an unknown ``system_type`` (None) is a ConfigError for it.
    """
    configured = config["inference"]["scenarios"]
    task = registry.get(benchmark).inference
    if not isinstance(task, LLMInferenceTask):
        return [s for s in configured if s not in LLM_ONLY_SCENARIOS]
    if system_type is None:
        raise ConfigError(f"{benchmark}: its scenarios depend on the system_type, which is unknown")
    round_ = inference_round(config["inference"]["round"])
    allowed = round_.scenarios_of(task.official_name, system_categories(system_type))
    return [s for s in configured if s in allowed]


def compliance_tests(config: Mapping[str, Any], benchmark: str | None = None) -> tuple[str, ...]:
    """The compliance tests a closed-division scenario of ``benchmark`` runs.

    An MLPerf model's are those the round requires of it (resnet: TEST01 and TEST04;
    llama3.1-8b: TEST06; llama3.1-8b-edge: none). benchpipe's own models, which no round names,
    and no benchmark at all (a tree's layout judged without its config) take a classifier's
    TEST01 and TEST04: benchpipe runs them to check its own SUT.
    """
    official = registry.get(benchmark).inference.official_name if benchmark else None
    if official is None:
        return COMPLIANCE_TESTS
    round_ = config["inference"]["round"]
    tests = inference_round(round_).compliance_tests_of(official)
    if unknown := [t for t in tests if t not in RUNNABLE_COMPLIANCE_TESTS]:
        raise ConfigError(f"inference.round: {round_} requires {', '.join(unknown)} of {official}, "
                          f"which benchpipe does not run (it runs {', '.join(RUNNABLE_COMPLIANCE_TESTS)})")
    return tests


def inference_modes(config: Mapping[str, Any], benchmark: str | None = None) -> list[str]:
    """The tests of each scenario of ``benchmark``: performance and accuracy, and the compliance
    tests (``compliance_tests``) only in the closed division, as the rules ask."""
    modes = ["performance", "accuracy"]
    if config["submission"]["division"] == "closed":
        modes += list(compliance_tests(config, benchmark))
    return modes


class MobileRunSpec(NamedTuple):
    """One Mobile app task run of the workflow: one job,
    runs/<target>/<benchmark>/mobile/<precision>/<task>/<mode>."""

    target: str
    benchmark: str
    precision: str
    task: str
    mode: str


class InferenceTest(NamedTuple):
    """One LoadGen test of the workflow: one job, runs/<target>/<benchmark>/infer/<scenario>/<mode>."""

    target: str
    benchmark: str
    scenario: str
    mode: str


def inference_tests(config: Mapping[str, Any], system_types: Mapping[str, str]) -> list[InferenceTest]:
    """Every LoadGen test of the config: each target (``system_types``: its system_type), each
    benchmark LoadGen tests, each scenario it may run there, each mode.

    A benchmark that may run none of the configured scenarios on any target is a ConfigError:
    it would be configured and silently never tested.
    """
    tests = []
    for benchmark in inference_benchmarks(config):
        modes = inference_modes(config, benchmark)
        scenarios = {target: benchmark_scenarios(config, benchmark, system_types[target])
                     for target in config["targets"]}
        if not any(scenarios.values()):
            raise _no_scenario(config, benchmark, system_types)
        tests += [InferenceTest(target, benchmark, scenario, mode)
                  for target in config["targets"] for scenario in scenarios[target] for mode in modes]
    return tests


def _no_scenario(config: Mapping[str, Any], benchmark: str, system_types: Mapping[str, str]) -> ConfigError:
    task = registry.get(benchmark).inference
    if isinstance(task, LLMInferenceTask):
        round_ = inference_round(config["inference"]["round"])
        allowed = "; ".join(f"{category}: {', '.join(round_.scenarios_of(task.official_name, (category,)))}"
                            for category in round_.categories_of(task.official_name))
        why = (f"round {round_.name} has {task.official_name} for {allowed} (a target file's "
               "system.system_type sets its system's)")
    else:
        why = f"{', '.join(LLM_ONLY_SCENARIOS)} is a scenario of LLMs only"
    systems = ", ".join(f"{target} ({system_types[target]})" for target in config["targets"])
    return ConfigError(f"inference.scenarios: {benchmark} may run none of "
                       f"{', '.join(config['inference']['scenarios'])} on {systems}: {why}")


def explain_invalid_config(config: dict[str, Any]) -> str:
    """One line naming the key that makes ``config`` invalid against the config schema."""
    try:
        validate(config, "config.schema.json", what="config")
    except ValidationError as exc:
        return str(exc)
    return "config does not match schemas/config.schema.json"
