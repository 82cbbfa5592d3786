# Shared by every stage: the config, checked, and the paths derived from it.
import json
import shlex
import shutil
from pathlib import Path

from benchpipe import benchmarks as bp_benchmarks
from benchpipe.cluster import resource_names, slurm_resources
from benchpipe.config import check_config, check_inference_settings, inference_benchmarks, inference_modes
from benchpipe.errors import ConfigError, DatasetError, RuntimeSetupError

try:
    TARGET_SPECS = check_config(config, Path(workflow.basedir))
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

# All jobs run the `benchpipe` command line, so a missing one is reported here, not per job.
if shutil.which("benchpipe") is None:
    raise WorkflowError(
        "the `benchpipe` command is not on PATH: activate the environment "
        "(`. .venv/bin/activate`) or run `make submit`"
    )

def targets_dir():
    base = Path(config["targets_dir"])
    return base if base.is_absolute() else Path(workflow.basedir) / base


# A missing engine or base image stops the workflow here, before any job, in one line. Only
# where Snakemake runs: images are built there, and a cluster job's node (which parses this
# file again) needs no builder.
# SIF_SOURCE: the engine whose image an apptainer SIF is converted from (docker, or podman).
SIF_SOURCE = "docker"
if workflow.is_main_process:
    try:
        from benchpipe.runtime.launch import preflight, sif_source_engine

        if any(t.runtime == "apptainer" for t in TARGET_SPECS.values()):
            SIF_SOURCE = sif_source_engine()
        preflight(list(TARGET_SPECS.values()), config["containers"]["base_image"],
                  Path(config["cluster"]["images_dir"]), SIF_SOURCE)
    except RuntimeSetupError as exc:
        raise WorkflowError(str(exc)) from None


def dataset_of(benchmark):
    """The folder under data/ a benchmark trains on (resnet: data/imagenet)."""
    return f"data/{bp_benchmarks.get(benchmark).dataset_name}"


def check_licensed_datasets():
    """A benchmark whose data is never downloaded needs the user's copy, or data/ prepared by hand."""
    for name in config["benchmarks"]:
        bench = bp_benchmarks.get(name)
        if bench.sources or Path(dataset_of(name), "manifest.json").is_file():
            continue
        if bench.dataset_name == "imagenet" and config["datasets"]["imagenet"]:
            continue
        raise ConfigError(
            f"benchmarks: {name} trains on {dataset_of(name)}, which is never downloaded: set "
            "datasets.imagenet to your licensed copy (train_dir, val_dir, val_map), or write "
            f"{dataset_of(name)} with `benchpipe datasets imagenet`"
        )


def benchmark_sources():
    """Each downloaded dataset's sources, with datasets.sources applied (a bad name fails here)."""
    from benchpipe.datasets.source import override_sources

    overrides = config["datasets"]["sources"]
    unknown = sorted(set(overrides) - set(config["benchmarks"]))
    if unknown:
        raise ConfigError(f"datasets.sources: {', '.join(unknown)} is not in benchmarks")
    return {
        name: override_sources(name, bp_benchmarks.get(name).sources, overrides.get(name, {}))
        for name in config["benchmarks"]
        if bp_benchmarks.get(name).sources
    }


def check_hyperparameters():
    """training.hyperparameters applied to each benchmark; closed ones checked against the rules."""
    from benchpipe.hyperparameters import resolve_hyperparameters

    settings = config["training"]["hyperparameters"]
    unknown = sorted(set(settings) - set(config["benchmarks"]))
    if unknown:
        raise ConfigError(f"training.hyperparameters: {', '.join(unknown)} is not in benchmarks")
    for name in config["benchmarks"]:
        resolve_hyperparameters(name, settings, config["submission"]["division"])


# Before any job: data every benchmark can reach, a stage for every tested model, and
# hyperparameters the division allows (a closed run refused after hours helps no one).
# Only the main process checks: a cluster job parses this file again, and the closed
# checks load the RCP checker's scipy.
try:
    INFER_BENCHMARKS = inference_benchmarks(config)
    if workflow.is_main_process:
        check_licensed_datasets()
        check_hyperparameters()
        check_inference_settings(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


# Air-gapped: every source a datasets job will need must be in the cache before any job runs.
try:
    from benchpipe.datasets.fetch import default_cache_dir
    from benchpipe.datasets.offline import require_cached

    SOURCES = benchmark_sources()
    if config["datasets"]["offline"]:
        require_cached(
            {b: s for b, s in SOURCES.items() if not Path(dataset_of(b), "manifest.json").is_file()},
            Path(config["datasets"]["cache_dir"] or default_cache_dir()),
            config["datasets"]["sources"],
        )
except (ConfigError, DatasetError) as exc:
    raise WorkflowError(str(exc)) from None

if workflow.is_main_process:
    from benchpipe.cluster import mend_slurm_node_exclusion, mend_slurm_status_query
    from benchpipe.resume import WorkflowRunning, hold_workflow_lock

    # A job stopped by scancel must fail the run, not hang it: see there.
    mend_slurm_status_query()
    # A requeued job's "node" must not be excluded from later submissions: see there.
    mend_slurm_node_exclusion()

    # Held until this process ends; see benchpipe/resume.py. A dry run changes nothing: it
    # may look at a live run's directory.
    try:
        WORKFLOW_LOCK = None if workflow.dryrun else hold_workflow_lock(Path(".snakemake"))
    except WorkflowRunning as exc:
        raise WorkflowError(str(exc)) from None

SUBMISSION = config["submission"]
BENCHMARKS = config["benchmarks"]
TARGETS = config["targets"]
SCENARIOS = config["inference"]["scenarios"]
MODES = inference_modes(config)
SUBMISSION_TREE = f"submissions/{SUBMISSION['round']}"
# Each job records the part of the config it reads (provenance config_sha256, recomputed by the
# audit from the tree's config.json). A param of the job's rule: a change to that part reruns
# the job, so that a tree never holds results of another config than its own; a change
# elsewhere (an inference setting, for training) does not.
from benchpipe.provenance import CONFIG_SHA256_ENV, config_sha256

TRAIN_CONFIG_ENV = f"{CONFIG_SHA256_ENV}={config_sha256(config, 'train')}"
INFER_CONFIG_ENV = f"{CONFIG_SHA256_ENV}={config_sha256(config, 'infer')}"
# With --software-deployment-method conda every job gets the environment `make venv` builds.
CONDA_ENV = "../../environment.yml"


wildcard_constraints:
    benchmark="[A-Za-z0-9_]+",
    target="[A-Za-z0-9][A-Za-z0-9._-]*",
    run=r"\d+",
    scenario="|".join(SCENARIOS),
    mode="|".join(MODES),
    engine="docker|podman",
    image="[a-z0-9][a-z0-9._-]*",


def num_runs(benchmark):
    return config["training"]["runs"] or bp_benchmarks.get(benchmark).num_runs


def run_seed(wildcards):
    return config["training"]["seed"] + int(wildcards.run)


# A pattern, not a function: Snakemake fills a pattern's wildcards for far less than a call.
TARGET_FILE = str(targets_dir() / "{target}.yaml")


def all_cores():
    """--cores of a local run; None in a cluster run, which has no such total (each job asks for its own)."""
    try:
        return workflow.cores
    except WorkflowError:
        return None


# Every job's TMPDIR: cluster.scratch_dir where set (Snakemake exports its tmpdir resource).
SCRATCH = {"tmpdir": config["cluster"]["scratch_dir"]} if config["cluster"]["scratch_dir"] else {}


def slurm_requests(training):
    """Each target's SLURM resources (benchpipe.cluster), once: every job's resource looks them up.

    training: a run across slurm.nodes asks for its nodes and one task per GPU.
    """
    return {name: slurm_resources(spec, training=training) for name, spec in TARGET_SPECS.items()}


def job_resources(requests, training):
    """A per-target rule's resources: what its target's slurm section asks for, and scratch.

    The time limit grows with each attempt: a job that SLURM killed at its limit (TIMEOUT) and
    that Snakemake submits again (a rule's retries, or --retries) gets twice, then three times,
    the time.
    """
    try:
        names = resource_names(list(TARGET_SPECS.values()), training=training)
    except ConfigError as exc:
        raise WorkflowError(str(exc)) from None
    resources = {name: (lambda wildcards, name=name: requests[wildcards.target].get(name)) for name in names}
    if "runtime" in resources:
        resources["runtime"] = lambda wildcards, attempt: requests[wildcards.target]["runtime"] * attempt
    return resources | SCRATCH


def job_threads(requests):
    """A run takes every core it is given: its target's cpus_per_task (a task's share where a run
    spans nodes), or the machine's. (A cluster job of a target without it gets one CPU: docs/hpc.md.)"""
    return lambda wildcards: requests[wildcards.target].get("cpus_per_task") or all_cores() or 1


SLURM_REQUESTS = slurm_requests(training=False)
TARGET_RESOURCES = job_resources(SLURM_REQUESTS, training=False)
target_threads = job_threads(SLURM_REQUESTS)
# Training runs across slurm.nodes: one task per GPU, started by srun inside the job.
TRAIN_SLURM_REQUESTS = slurm_requests(training=True)
TRAIN_RESOURCES = job_resources(TRAIN_SLURM_REQUESTS, training=True)
train_threads = job_threads(TRAIN_SLURM_REQUESTS)


def across_nodes_option(wildcards):
    return "--across-nodes" if TARGET_SPECS[wildcards.target].slurm.nodes > 1 else ""


# Dataset steps need no accelerator: cluster.cpu_partition, or the cluster's default.
CPU_RESOURCES = SCRATCH | (
    {"slurm_partition": config["cluster"]["cpu_partition"]} if config["cluster"]["cpu_partition"] else {}
)
# Image records and SIFs: built once, before any job, where every node sees them.
IMAGES_DIR = config["cluster"]["images_dir"]


def recipe_path(image, name=""):
    return str(Path(workflow.basedir, "containers", image, name))


def image_record_of(target):
    spec = TARGET_SPECS[target]
    return [f"{IMAGES_DIR}/{spec.runtime}/{spec.image}.json"] if spec.containerized else []


def image_record(wildcards):
    """The record of the image this target's jobs run in; none for local targets."""
    return image_record_of(wildcards.target)


# Every image is built before any measured job starts, so that a failed build stops the
# workflow before a run; ancient(): another target's rebuilt image reruns nothing here.
ALL_IMAGE_RECORDS = sorted({r for t in TARGETS for r in image_record_of(t)})
IMAGES_FIRST = ancient(ALL_IMAGE_RECORDS)
# benchpipe goes into each image as a wheel built from these files.
PACKAGE_SOURCES = sorted(
    str(p)
    for p in Path(workflow.basedir, "workflow", "benchpipe").rglob("*")
    if p.suffix in {".py", ".json", ".yaml"} and "__pycache__" not in p.parts
)


def train_runs_of(target, benchmark):
    return [f"runs/{target}/{benchmark}/train/run_{i}" for i in range(num_runs(benchmark))]


def train_runs(wildcards):
    return train_runs_of(wildcards.target, wildcards.benchmark)


ALL_TRAIN_RUNS = [run for t in TARGETS for b in BENCHMARKS for run in train_runs_of(t, b)]
ALL_TESTS = expand(
    "runs/{target}/{benchmark}/infer/{scenario}/{mode}",
    target=TARGETS,
    benchmark=INFER_BENCHMARKS,
    scenario=SCENARIOS,
    mode=MODES,
)


def served_model_input(wildcards):
    """What the served model is read from: the user's SavedModel, or the training runs."""
    supplied = config["inference"]["models"].get(wildcards.benchmark)
    return [supplied["savedmodel"]] if supplied else train_runs(wildcards)


def served_model_options(wildcards):
    supplied = config["inference"]["models"].get(wildcards.benchmark)
    if supplied:
        return shlex.join(["--model", supplied["savedmodel"], "--model-sha256", supplied["sha256"]])
    return shlex.join(["--train-runs", *train_runs(wildcards)])


def run_kind_options():
    """Development (short, accuracy on a subset) or official, for `benchpipe calibrate`."""
    settings = config["inference"]
    if settings["official"]:
        return "--official"
    options = ["--min-duration-ms", str(settings["min_duration_ms"])]
    if settings["accuracy_samples"]:
        options += ["--accuracy-samples", str(settings["accuracy_samples"])]
    return shlex.join(options)


def data_input(wildcards):
    return dataset_of(wildcards.benchmark)


def hyperparameters_option(wildcards):
    overrides = config["training"]["hyperparameters"].get(wildcards.benchmark)
    return shlex.join(["--hyperparameters-json", json.dumps(overrides, sort_keys=True)]) if overrides else ""


def datasets_options(wildcards):
    settings = config["datasets"]
    options = []
    if settings["cache_dir"]:
        options += ["--cache-dir", settings["cache_dir"]]
    if settings["offline"]:
        options.append("--offline")
    overrides = settings["sources"].get(wildcards.benchmark)
    if overrides:
        options += ["--sources-json", json.dumps(overrides, sort_keys=True)]
    return shlex.join(options)


def imagenet_options(wildcards):
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


def audit_options(wildcards):
    """The audit re-runs MLCommons' inference checker when the config names a checkout."""
    checker = config["inference"].get("checker")
    return shlex.join(["--inference-checker", checker]) if checker else ""


def sign_rule_functions(rules):
    """Give each function of the rules (inputs, params, resources) the parameters Snakemake
    would find with inspect.signature, through its overwrite_function_params hook."""
    import inspect

    from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR, overwrite_function_params

    for r in rules:
        items = [*r.input, *r.params]
        items += [getattr(resource, "_evaluator", None) for resource in r.resources.values()]
        for item in items:
            if inspect.isfunction(item) and not hasattr(item, FUNC_OVERWRITE_PARAMS_ATTR):
                overwrite_function_params(item, inspect.signature(item).parameters)
