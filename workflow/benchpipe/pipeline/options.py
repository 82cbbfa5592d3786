"""What each rule passes to the `benchpipe` command line, built from the checked config.

Each function returns one shell-quoted string of options (empty where there are none), so
that a rule's shell line stays a template and the same options reach a container, a cluster
node or an auditor's shell unchanged.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any


def served_model(config: Mapping[str, Any], benchmark: str, train_runs: Sequence[str]) -> str:
    """Where the served model comes from: the user's SavedModel or Llama checkpoint folder (both
    as ``--model DIR --model-sha256 HEX``), or the training runs."""
    supplied = config["inference"]["models"].get(benchmark)
    if supplied:
        folder = supplied.get("checkpoint") or supplied["savedmodel"]
        return shlex.join(["--model", folder, "--model-sha256", supplied["sha256"]])
    return shlex.join(["--train-runs", *train_runs])


def supplied_model_inputs(config: Mapping[str, Any], benchmark: str) -> list[str]:
    """What a job serving the user's model reads, as Snakemake inputs: a SavedModel's folder, or
    every file of a checkpoint folder (a folder's time changes only when a file comes or goes, and
    a changed shard must rerun the tests). Empty where the model comes from training."""
    supplied = config["inference"]["models"].get(benchmark)
    if not supplied:
        return []
    if "checkpoint" in supplied:
        return list(folder_files(supplied["checkpoint"]))
    return [supplied["savedmodel"]]


@cache
def folder_files(folder: str) -> tuple[str, ...]:
    """Every file under ``folder``, as the model's digest reads them (benchpipe.infer.models);
    cached, since each job of the DAG asks."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, name) for name in sorted(files)]
    return tuple(found)


def run_kind(config: Mapping[str, Any]) -> str:
    """Development (short, accuracy on a subset) or official, for `benchpipe calibrate`."""
    settings = config["inference"]
    if settings["official"]:
        return "--official"
    options = ["--min-duration-ms", str(settings["min_duration_ms"])]
    if settings["accuracy_samples"]:
        options += ["--accuracy-samples", str(settings["accuracy_samples"])]
    return shlex.join(options)


def hyperparameters(config: Mapping[str, Any], benchmark: str) -> str:
    overrides = config["training"]["hyperparameters"].get(benchmark)
    return shlex.join(["--hyperparameters-json", json.dumps(overrides, sort_keys=True)]) if overrides else ""


def datasets(config: Mapping[str, Any], benchmark: str) -> str:
    settings = config["datasets"]
    options = []
    if settings["cache_dir"]:
        options += ["--cache-dir", settings["cache_dir"]]
    if settings["offline"]:
        options.append("--offline")
    overrides = settings["sources"].get(benchmark)
    if overrides:
        options += ["--sources-json", json.dumps(overrides, sort_keys=True)]
    return shlex.join(options)


def imagenet(config: Mapping[str, Any]) -> str:
    """`benchpipe datasets imagenet` options from datasets.imagenet (the user's licensed copy)."""
    settings = config["datasets"]["imagenet"]
    options = ["--train-dir", settings["train_dir"], "--val-dir", settings["val_dir"], "--val-map", settings["val_map"]]
    if settings.get("bounding_boxes"):
        options += ["--bounding-boxes", settings["bounding_boxes"]]
    if settings.get("synsets", 1000) != 1000:
        options += ["--synsets", str(settings["synsets"])]
    for key, value in (settings.get("subset") or {}).items():
        options += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(options)


def rounds(config: Mapping[str, Any]) -> str:
    """The rounds `benchpipe parse` labels the table rows with: the ones the tree is judged under."""
    return shlex.join(["--training-ruleset", config["training"]["ruleset"],
                       "--inference-round", config["inference"]["round"]])


def audit(config: Mapping[str, Any]) -> str:
    """The audit re-runs MLCommons' inference checker when the config names a checkout."""
    checker = config["inference"].get("checker")
    return shlex.join(["--inference-checker", checker]) if checker else ""


def mobile_app(config: Mapping[str, Any], host_targets: bool = True) -> str:
    """`benchpipe mobile app` options: the user's checkout, or the mirrors and the cache to fetch from.
    ``host_targets``: a Mobile target runs LiteRT on a host, which scores only some tasks' accuracy."""
    from benchpipe.contracts import registry
    from benchpipe.contracts.config import mobile_benchmarks

    settings, datasets = config["mobile"], config["datasets"]
    # Checked against the app's file before any run: each task exists and is of each benchmark's kind,
    # and a supplied model's accuracy runs are of tasks a host scores.
    options = [f"--require={task}:{registry.get(b).mobile_dataset}" for b in mobile_benchmarks(config)
               for task in settings["tasks"]]
    for name, entry in (settings.get("supplied") or {}).items():
        scored = host_targets and "accuracy" in entry.get("modes", ("accuracy",))
        options += [f"--supplied={name}:{task}" + (":accuracy" if scored else "") for task in entry["tasks"]]
    if settings.get("supplied") and not host_targets:
        options.append("--supplied-on-phones")
    if settings["app"]:
        options += ["--app", settings["app"]]
    for mirror in settings["app_mirrors"]:
        options += ["--mirror", mirror]
    if datasets["cache_dir"]:
        options += ["--cache-dir", datasets["cache_dir"]]
    if datasets["offline"]:
        options.append("--offline")
    return shlex.join(options)


def mobile_delegate(target: Any, threads: int) -> str:
    """`benchpipe mobile run` options of a target's LiteRT interpreter (target.schema.json's litert)."""
    litert = target.litert
    options = ["--delegate", litert.delegate, "--threads", str(litert.threads or threads)]
    if litert.delegate_path:
        options += ["--delegate-path", litert.delegate_path]
    for key, value in sorted(litert.delegate_options.items()):
        options += ["--delegate-option", f"{key}={value}"]
    return shlex.join(options)


def supplied_model(config: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """``mobile.supplied.<name>``, or None for a benchpipe benchmark's converted model."""
    return (config["mobile"].get("supplied") or {}).get(name)


def mobile_serving(config: Mapping[str, Any], benchmark: str) -> str:
    """`benchpipe mobile run` options naming what serves the task: a benchmark's converted model, or
    nothing for a supplied model, whose data folder may hold stand-in files."""
    supplied = supplied_model(config, benchmark)
    if supplied is None:
        return shlex.join(["--benchmark", benchmark])
    return "--stand-in-data" if supplied.get("stand_in_data") else ""


def mobile_samples(config: Mapping[str, Any]) -> str:
    """Development accuracy runs on a subset (mobile.accuracy_samples); a submission scores every sample."""
    settings = config["mobile"]
    if settings["official"] or not settings["accuracy_samples"]:
        return ""
    return shlex.join(["--accuracy-samples", str(settings["accuracy_samples"])])


def published_sources(config: Mapping[str, Any]) -> str:
    """`benchpipe published import` options of the known sources: which, their mirrors, the shared cache."""
    settings, datasets = config["published"], config["datasets"]
    if not settings["sources"]:
        return ""
    options = [f"--source={name}" for name in settings["sources"]]
    options += [f"--mirror={mirror}" for mirror in settings["mirrors"]]
    if datasets["cache_dir"]:
        options += ["--cache-dir", datasets["cache_dir"]]
    if datasets["offline"]:
        options.append("--offline")
    return shlex.join(options)
