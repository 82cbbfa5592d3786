# Shared by every stage: the config, checked by the package (benchpipe.pipeline), and the
# paths, options and resources the rules read from it. Logic lives in the package, with tests.
import json
from pathlib import Path

from benchpipe.contracts.config import mobile_model_target, mobile_run_mode, training_runs
from benchpipe.contracts.errors import BenchpipeError
from benchpipe.contracts.rounds import COMPLIANCE_TESTS
from benchpipe.pipeline import options
from benchpipe.pipeline.checks import check_workflow, dataset_dir
from benchpipe.pipeline.resources import job_resources, job_threads, slurm_requests
from benchpipe.pipeline.snakemake_hooks import sign_rule_functions
from benchpipe.provenance import CONFIG_SHA256_ENV, config_sha256

# Before any job: a bad key, a missing engine or dataset, a refused hyperparameter or a live
# run in this directory stops the workflow here, in one line.
try:
    WORKFLOW = check_workflow(config, Path(workflow.basedir), main_process=workflow.is_main_process,
                              dry_run=workflow.dryrun)
except BenchpipeError as exc:
    raise WorkflowError(str(exc)) from None

# Every target a job runs on: training and inference targets, and the Mobile family's.
TARGET_SPECS = {**WORKFLOW.targets, **WORKFLOW.mobile_targets}
SIF_SOURCE = WORKFLOW.sif_source
SUBMISSION = config["submission"]
BENCHMARKS = config["benchmarks"]
TARGETS = config["targets"]
# Every scenario and mode some test runs: per benchmark, its scenarios depend on the target's
# system_type (an LLM's) and its compliance tests on the round (WORKFLOW.tests).
SCENARIOS = WORKFLOW.scenarios
MODES = WORKFLOW.modes
SUBMISSION_TREE = f"submissions/{SUBMISSION['round']}"
# MLCommons' published results, imported (published.smk): beside the trees, not in one.
PUBLISHED_TABLE = "published"
# Each job records the part of the config it reads (provenance config_sha256, recomputed by the
# audit from the tree's config.json). A param of the job's rule: a change to that part reruns
# the job, so that a tree never holds results of another config than its own.
TRAIN_CONFIG_ENV = f"{CONFIG_SHA256_ENV}={config_sha256(config, 'train')}"
INFER_CONFIG_ENV = f"{CONFIG_SHA256_ENV}={config_sha256(config, 'infer')}"
MOBILE_CONFIG_ENV = f"{CONFIG_SHA256_ENV}={config_sha256(config, 'mobile')}"
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
    precision="fp32|int8",
    task="[A-Za-z0-9_-]+",


# A pattern, not a function: Snakemake fills a pattern's wildcards for far less than a call.
# (An absolute targets_dir replaces the base.)
TARGET_FILE = str(Path(workflow.basedir, config["targets_dir"], "{target}.yaml"))


def all_cores():
    """--cores of a local run; None in a cluster run, which has no such total (each job asks for its own)."""
    try:
        return workflow.cores
    except WorkflowError:
        return None


def run_seed(wildcards):
    return config["training"]["seed"] + int(wildcards.run)


# Every job's TMPDIR: cluster.scratch_dir where set (Snakemake exports its tmpdir resource).
SCRATCH = {"tmpdir": config["cluster"]["scratch_dir"]} if config["cluster"]["scratch_dir"] else {}
try:
    SLURM_REQUESTS = slurm_requests(TARGET_SPECS, training=False)
    TARGET_RESOURCES = job_resources(TARGET_SPECS, SLURM_REQUESTS, training=False, scratch=SCRATCH)
    # Training runs across slurm.nodes: one task per GPU, started by srun inside the job.
    TRAIN_SLURM_REQUESTS = slurm_requests(TARGET_SPECS, training=True)
    TRAIN_RESOURCES = job_resources(TARGET_SPECS, TRAIN_SLURM_REQUESTS, training=True, scratch=SCRATCH)
except BenchpipeError as exc:
    raise WorkflowError(str(exc)) from None
target_threads = job_threads(SLURM_REQUESTS, all_cores())
train_threads = job_threads(TRAIN_SLURM_REQUESTS, all_cores())


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
IMAGES_FIRST = ancient(sorted({r for t in TARGET_SPECS for r in image_record_of(t)}))
# benchpipe goes into each image as a wheel built from these files.
PACKAGE_SOURCES = sorted(
    str(p)
    for p in Path(workflow.basedir, "workflow", "benchpipe").rglob("*")
    if p.suffix in {".py", ".json", ".yaml"} and "__pycache__" not in p.parts
)


def train_runs_of(target, benchmark):
    return [f"runs/{target}/{benchmark}/train/run_{i}" for i in range(training_runs(config, benchmark))]


def train_runs(wildcards):
    return train_runs_of(wildcards.target, wildcards.benchmark)


# An inference-only benchmark (llama31_8b) has no runs: it serves the checkpoint the config names.
ALL_TRAIN_RUNS = [run for t in TARGETS for b in BENCHMARKS for run in train_runs_of(t, b)]
# An explicit list, not a product: scenarios and compliance tests differ per benchmark and target.
ALL_TESTS = [f"runs/{t.target}/{t.benchmark}/infer/{t.scenario}/{t.mode}" for t in WORKFLOW.tests]


def served_model_input(wildcards):
    """What the served model is read from: the user's SavedModel, every file of the user's
    checkpoint, or the training runs."""
    return options.supplied_model_inputs(config, wildcards.benchmark) or train_runs(wildcards)


def data_input(wildcards):
    return dataset_dir(wildcards.benchmark)


# A compliance test runs with the user.conf its scenario's performance run ended with (infer.smk),
# outside infer/<scenario>/: a test's output folder is staged empty in a container, which would
# hide its sibling performance run.
PERFORMANCE_CONF = "runs/{target}/{benchmark}/performance_conf/{scenario}/user.conf"


def performance_conf_input(wildcards):
    """For a compliance test, the user.conf its scenario's performance run ended with."""
    if wildcards.mode not in COMPLIANCE_TESTS:
        return []
    return [PERFORMANCE_CONF.format(target=wildcards.target, benchmark=wildcards.benchmark,
                                    scenario=wildcards.scenario)]


# The Mobile family (mobile.smk): every app task run, and one extended result per target,
# benchmark and precision.
MOBILE_RUNS = WORKFLOW.mobile_runs
MOBILE_RUN_MODE = mobile_run_mode(config)
MOBILE_RUN_PATTERN = "runs/{target}/{benchmark}/mobile/{precision}/{task}/{mode}"
ALL_MOBILE_RUNS = [MOBILE_RUN_PATTERN.format(**r._asdict()) for r in MOBILE_RUNS]
ALL_MOBILE_RESULTS = sorted({f"runs/{r.target}/{r.benchmark}/mobile/{r.precision}/result" for r in MOBILE_RUNS})
# The model the Mobile family converts: the one the inference of mobile.model_from serves.
MOBILE_MODEL_TARGET = mobile_model_target(config)
MOBILE_MODEL_TARGET_FILE = TARGET_FILE.replace("{target}", MOBILE_MODEL_TARGET)


# The app's own models the user supplies (mobile.supplied): each stands where a benchmark does.
SUPPLIED_MODELS = WORKFLOW.supplied


def mobile_data_input(wildcards):
    """What a Mobile run reads its samples from: a benchmark's prepared dataset, or the folder of
    the app's dataset files a supplied model's entry names."""
    model = SUPPLIED_MODELS.get(wildcards.benchmark)
    return str(model.data) if model else data_input(wildcards)


def mobile_run_model(wildcards):
    """The .tflite folder a Mobile run serves: converted (tflite), or the user's (mobile_supply)."""
    where = "supplied/" if wildcards.benchmark in SUPPLIED_MODELS else ""
    return f"runs/tflite/{where}{wildcards.benchmark}/{wildcards.precision}"


def supplied_tflite(wildcards):
    return str(SUPPLIED_MODELS[wildcards.benchmark].tflite[wildcards.precision][0])


def supplied_sha256(wildcards):
    return SUPPLIED_MODELS[wildcards.benchmark].tflite[wildcards.precision][1]


def mobile_model_input(wildcards):
    return options.supplied_model_inputs(config, wildcards.benchmark) or train_runs_of(
        MOBILE_MODEL_TARGET, wildcards.benchmark)


def mobile_model_option(wildcards):
    return options.served_model(config, wildcards.benchmark, train_runs_of(MOBILE_MODEL_TARGET, wildcards.benchmark))


def mobile_model_image(wildcards):
    return image_record_of(MOBILE_MODEL_TARGET)


def _mobile_runs_of(target, benchmark, precision, mode=None):
    return [MOBILE_RUN_PATTERN.format(**r._asdict()) for r in MOBILE_RUNS
            if (r.target, r.benchmark, r.precision) == (target, benchmark, precision) and mode in (None, r.mode)]


def mobile_result_runs(wildcards):
    return _mobile_runs_of(wildcards.target, wildcards.benchmark, wildcards.precision)


def mobile_reference_runs(wildcards):
    """int8's reference: the fp32 model's accuracy runs on the same target."""
    if wildcards.precision == "fp32":
        return []
    return _mobile_runs_of(wildcards.target, wildcards.benchmark, "fp32", "accuracy")


# The app files and tasks the results were made with go into the tree; an Android device is
# described by its runs (device.json), a LiteRT host like any target (describe_system).
MOBILE_APP_INPUT = ["data/mobile_app"] if MOBILE_RUNS else []
MOBILE_HOST_TARGETS = [t for t, spec in WORKFLOW.mobile_targets.items() if spec.runtime != "adb"]
