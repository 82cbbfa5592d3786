"""The workflow's config, checked before any job runs.

The schema (``schemas/config.schema.json``) has been applied by then; what is checked here
needs the package: that benchmarks and targets exist and are in the chosen training ruleset,
that each benchmark's data can be reached (its sources, the user's licensed copy, or the
offline cache), hyperparameters the division allows, inference settings with a checker where
MLPerf models are tested, and, in the process that drives the run, the engines and base images
of container targets and the lock that keeps a second run out of the same directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchpipe.benchmarks.hyperparameters import resolve_hyperparameters
from benchpipe.contracts import registry, rounds
from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.config import (
    InferenceTest,
    MobileRunSpec,
    SuppliedModel,
    Target,
    check_config,
    check_mobile_config,
    inference_benchmarks,
    inference_modes,
    inference_tests,
    is_llm,
    mobile_benchmarks,
    supplied_models,
    training_benchmarks,
)
from benchpipe.contracts.errors import ConfigError, DatasetError, RuntimeSetupError
from benchpipe.contracts.layout import DATASET_MANIFEST
from benchpipe.datasets.fetch import default_cache_dir
from benchpipe.datasets.offline import require_cached
from benchpipe.datasets.source import benchmark_sources
from benchpipe.mlcommons import training
from benchpipe.mlcommons.inference_checker import checker_dir
from benchpipe.pipeline.lock import hold_workflow_lock
from benchpipe.runtime.launch import preflight
from benchpipe.runtime.slurm_plugin import mend_slurm_node_exclusion, mend_slurm_status_query


@dataclass(frozen=True)
class Workflow:
    """What the rules read from a checked config."""

    targets: dict[str, Target]  # by name, as their files say
    infer_benchmarks: list[str]  # the benchmarks LoadGen tests
    modes: list[str]  # every mode some scenario runs (the compliance tests differ per benchmark)
    sources: dict[str, tuple[Source, ...]]  # each downloaded dataset's sources, overrides applied
    sif_source: str  # the engine whose image an apptainer SIF is converted from
    lock: Any = field(default=None, repr=False)  # held while this process lives
    # Every LoadGen test: the scenarios of a benchmark depend on the target's system_type.
    tests: list[InferenceTest] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)  # every scenario some test runs
    mobile_targets: dict[str, Target] = field(default_factory=dict)
    # Every Mobile app task run: the tasks come from the app's tasks.pbtxt, per benchmark's kind.
    mobile_runs: list[MobileRunSpec] = field(default_factory=list)
    # The app's own models the user supplies (mobile.supplied), paths resolved: only with Mobile targets.
    supplied: dict[str, SuppliedModel] = field(default_factory=dict)


def dataset_dir(benchmark: str) -> str:
    """The folder under data/ a benchmark trains on (resnet: data/imagenet)."""
    return f"data/{registry.get(benchmark).dataset_name}"


def check_licensed_datasets(config: Mapping[str, Any]) -> None:
    """A benchmark whose data is never downloaded needs the user's copy, or data/ prepared by hand."""
    for name in config["benchmarks"]:
        bench = registry.get(name)
        if bench.sources or Path(dataset_dir(name), DATASET_MANIFEST).is_file():
            continue
        if bench.dataset_name == "imagenet" and config["datasets"]["imagenet"]:
            continue
        raise ConfigError(
            f"benchmarks: {name} trains on {dataset_dir(name)}, which is never downloaded: set "
            "datasets.imagenet to your licensed copy (train_dir, val_dir, val_map), or write "
            f"{dataset_dir(name)} with `benchpipe datasets imagenet`"
        )


def check_training_ruleset(config: Mapping[str, Any]) -> None:
    """Every MLPerf benchmark of the config is in training.ruleset.

    A benchmark that no training round has (digits, mnist) is benchpipe's own: it goes with any
    ruleset, checked by its own rules file. One that some round has but the chosen ruleset does
    not would be skipped by the package checker: refused here, naming the rounds that have it.
    """
    ruleset = config["training"]["ruleset"]
    # An inference-only benchmark has no training rules, whatever training round shares its name
    # (llama31_8b is also training 5.1.0's pretraining benchmark).
    for name in training_benchmarks(config):
        followed = registry.get(name).rulesets
        if followed and ruleset not in followed and name in training.ruleset_benchmarks(ruleset):
            raise ConfigError(
                f"training.ruleset: {ruleset}, but benchpipe's {name} follows the rules of training "
                f"{', '.join(followed)} (its logged keys and rules file); set training.ruleset: {followed[-1]}"
            )
        having = training.rulesets_with(name)
        if not having or name in training.ruleset_benchmarks(ruleset):
            continue
        supported = [r for r in having if r in rounds.TRAINING_RULESETS]
        advice = (f"set training.ruleset: {supported[-1]}" if supported
                  else f"benchpipe supports training {', '.join(rounds.TRAINING_RULESETS)}")
        newest = having[-1]
        if rounds.ruleset_key(newest) < rounds.ruleset_key(ruleset):
            raise ConfigError(f"benchmarks: {name} was retired after training {newest}; {advice}")
        raise ConfigError(
            f"benchmarks: {name} is not in training {ruleset} (training {', '.join(having)} have it); {advice}"
        )


def check_hyperparameters(config: Mapping[str, Any]) -> None:
    """training.hyperparameters applied to each benchmark; closed ones checked against the rules."""
    settings = config["training"]["hyperparameters"]
    unknown = sorted(set(settings) - set(config["benchmarks"]))
    if unknown:
        raise ConfigError(f"training.hyperparameters: {', '.join(unknown)} is not in benchmarks")
    trained = training_benchmarks(config)
    if untrained := sorted(set(settings) - set(trained)):
        raise ConfigError(f"training.hyperparameters.{untrained[0]}: {untrained[0]} trains nothing (it serves "
                          f"the model inference.models.{untrained[0]} names): remove its hyperparameters")
    for name in trained:
        used = resolve_hyperparameters(name, settings, config["submission"]["division"], config["training"]["ruleset"])
        checkpoint = getattr(used.hyperparameters, "checkpoint", None)
        if checkpoint:
            check_checkpoint(Path(checkpoint), f"training.hyperparameters.{name}.checkpoint")


def check_checkpoint(folder: Path, key: str) -> None:
    """The user's model checkpoint is there and of a shape the model can take, before any job."""
    from benchpipe.benchmarks.llama.checkpoint import read_shape

    if not folder.is_dir():
        raise ConfigError(f"{key}: {folder} is not a folder (your checkpoint: config.json and *.safetensors)")
    try:
        read_shape(folder)
    except DatasetError as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def check_inference_settings(config: Mapping[str, Any]) -> None:
    """inference.models name tested benchmarks, each with the kind of model it serves (an LLM
    benchmark requires its checkpoint), and a tree of MLPerf models has a checker to run."""
    inference = config["inference"]
    tested = inference_benchmarks(config)
    for name in inference.get("models", {}):
        if name not in tested:
            raise ConfigError(f"inference.models.{name}: {name} is not a benchmark that LoadGen tests")
    for name in config["benchmarks"]:
        if not registry.get(name).trains and name not in tested:
            raise ConfigError(f"inference.benchmarks: leaves out {name}, which trains nothing: nothing would run "
                              f"for it (add it to inference.benchmarks, or remove it from benchmarks)")
    for name in tested:
        check_served_model(name, inference.get("models", {}).get(name))
    official = [name for name in tested if registry.get(name).inference.official_name]
    if not official:
        return
    if not inference.get("checker"):
        raise ConfigError(
            f"inference.checker: {', '.join(official)} goes into MLPerf's inference tree, which the "
            "official submission checker must pass: set inference.checker to your checkout of "
            "mlcommons/inference"
        )
    # Relative to the working directory, as the package job that runs the checker sees it.
    checker_dir(Path(inference["checker"]))


# What Hugging Face's layout holds, checked before any job; the digest (every file of the folder)
# is checked by the job that serves it: hashing 16 GB at every start of the workflow would cost more.
CHECKPOINT_CONFIG = "config.json"
CHECKPOINT_WEIGHTS = "*.safetensors"


def check_served_model(name: str, supplied: Mapping[str, str] | None) -> None:
    """An LLM benchmark serves a Llama checkpoint folder the user names; a classifier a SavedModel, if any."""
    key = f"inference.models.{name}"
    if not is_llm(name):
        if supplied and "checkpoint" in supplied:
            raise ConfigError(f"{key}.checkpoint: {name} serves a SavedModel, not a Llama checkpoint: "
                              f"set {key}.savedmodel")
        return
    if not supplied or "checkpoint" not in supplied:
        given = f" (a SavedModel is given: {name} serves a Llama checkpoint)" if supplied else ""
        raise ConfigError(
            f"{key}: {name} trains nothing and serves your Llama checkpoint: set {key}.checkpoint to its folder "
            f"(Hugging Face's layout: {CHECKPOINT_CONFIG}, {CHECKPOINT_WEIGHTS}) and {key}.sha256 to "
            f"`benchpipe model-sha256 <folder>`{given}"
        )
    folder = Path(supplied["checkpoint"])
    if not folder.is_dir():
        raise ConfigError(f"{key}.checkpoint: {folder} is not a folder (your Llama checkpoint in Hugging Face's "
                          f"layout: {CHECKPOINT_CONFIG}, {CHECKPOINT_WEIGHTS})")
    for pattern in (CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS):
        if not any(p.is_file() for p in folder.glob(pattern)):
            raise ConfigError(f"{key}.checkpoint: {folder} has no {pattern} (a Llama checkpoint in Hugging Face's "
                              f"layout: {CHECKPOINT_CONFIG}, {CHECKPOINT_WEIGHTS})")


def downloaded_sources(config: Mapping[str, Any]) -> dict[str, tuple[Source, ...]]:
    """Each downloaded dataset's sources, with datasets.sources applied; in an offline run,
    every one a datasets job will need must already be in the cache."""
    settings = config["datasets"]
    every = benchmark_sources(config["benchmarks"], settings["sources"], "datasets.sources")
    sources = {name: declared for name, declared in every.items() if declared}
    for name, declared in sources.items():
        for source in declared:
            if not source.sha256 and not Path(dataset_dir(name), DATASET_MANIFEST).is_file():
                raise ConfigError(
                    f"datasets.sources.{name}.{source.name}: set urls and sha256 of your copy of this file "
                    f"({source.url}): benchpipe has no checksum of its own for it to verify a download against"
                )
    if settings["offline"]:
        require_cached(
            {b: s for b, s in sources.items() if not Path(dataset_dir(b), DATASET_MANIFEST).is_file()},
            Path(settings["cache_dir"] or default_cache_dir()),
            settings["sources"],
        )
    return sources


def check_workflow(
    config: Mapping[str, Any], base_dir: Path, *, main_process: bool = True, dry_run: bool = False
) -> Workflow:
    """Everything the rules need, checked; raises a BenchpipeError naming the key or file.

    A cluster job's process parses the Snakefile again: it checks only what its rules read.
    The process that drives the run also checks what costs more (the closed rules load the
    RCP checker's scipy), probes the engines, mends the SLURM plugin and takes the lock.
    """
    targets = check_config(dict(config), base_dir)
    mobile_targets = check_mobile_config(config, base_dir, targets)
    # Before anything else of the benchmarks: their data and rules depend on the round they are in.
    check_training_ruleset(config)
    # All jobs run the `benchpipe` command line: a missing one is reported here, not per job.
    if shutil.which("benchpipe") is None:
        raise RuntimeSetupError(
            "the `benchpipe` command is not on PATH: activate the environment (`. .venv/bin/activate`) "
            "or run `make submit`"
        )
    sif_source = "docker"
    if main_process:
        # Only here: images are built where Snakemake runs, and a cluster node needs no builder.
        sif_source = preflight([*targets.values(), *mobile_targets.values()], config["containers"]["base_image"],
                               Path(config["cluster"]["images_dir"]))
    infer = inference_benchmarks(config)
    tests = inference_tests(config, {name: target.system_type for name, target in targets.items()})
    if main_process:
        check_licensed_datasets(config)
        check_hyperparameters(config)
        check_inference_settings(config)
    sources = downloaded_sources(config)
    check_published(config)
    mobile_runs = mobile_task_runs(config, mobile_targets, base_dir) if mobile_targets else []
    supplied = supplied_models(config, base_dir) if mobile_targets else {}
    lock = None
    if main_process:
        # A job stopped by scancel must fail the run, and a requeued job's "node" must not be
        # excluded from later submissions: see benchpipe.runtime.slurm_plugin.
        mend_slurm_status_query()
        mend_slurm_node_exclusion()
        # A dry run changes nothing: it may look at a live run's directory.
        lock = None if dry_run else hold_workflow_lock(Path(".snakemake"))
    return Workflow(
        targets, infer, _ordered(t.mode for t in tests) or inference_modes(config), sources, sif_source, lock,
        tests=tests, scenarios=_ordered(t.scenario for t in tests) or list(config["inference"]["scenarios"]),
        mobile_targets=mobile_targets, mobile_runs=mobile_runs, supplied=supplied,
    )


def check_published(config: Mapping[str, Any]) -> None:
    """published.sources are sources benchpipe knows, and published.files exist, when enabled."""
    from benchpipe.published.sources import chosen

    settings = config["published"]
    if not settings["enabled"]:
        return
    try:
        chosen(list(settings["sources"]))
    except ConfigError as exc:
        raise ConfigError(f"published.sources: {exc}") from None
    for i, path in enumerate(settings["files"]):
        if not Path(path).is_file():
            raise ConfigError(f"published.files[{i}]: {path}: no such file (a published summary.csv or summary.json)")
    if not settings["sources"] and not settings["files"]:
        raise ConfigError("published.enabled is set, but published.sources and published.files name nothing")


def mobile_task_runs(config: Mapping[str, Any], targets: Mapping[str, Target], base_dir: Path) -> list[MobileRunSpec]:
    """Every Mobile run: each target, benchmark, precision and configured app task, performance
    and accuracy; and each supplied model's precisions, tasks and modes. The tasks are the
    config's: the app's file, fetched by the mobile_app rule, is read by jobs (the rule checks
    that each task exists and fits each benchmark, or each supplied model)."""
    mobile = config["mobile"]
    runs = [MobileRunSpec(target, benchmark, precision, task, mode)
            for target in targets for benchmark in mobile_benchmarks(config) for precision in mobile["precisions"]
            for task in mobile["tasks"] for mode in ("performance", "accuracy")]
    for model in supplied_models(config, base_dir).values():
        runs += [MobileRunSpec(target, model.name, precision, task, mode)
                 for target in targets for precision in model.tflite for task in model.tasks for mode in model.modes]
    return runs


def _ordered(values) -> list[str]:
    """Each value once, in the order first met (a wildcard constraint needs at least one: callers
    fall back to the configured ones when no test runs)."""
    return list(dict.fromkeys(values))
