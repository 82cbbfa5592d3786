# Shared by every stage: the config, checked, and the paths derived from it.
import json
import shutil
from pathlib import Path

from benchpipe import benchmarks as bp_benchmarks
from benchpipe.config import check_config
from benchpipe.errors import ConfigError

try:
    check_config(config, Path(workflow.basedir))
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

# All jobs run the `benchpipe` command line, so a missing one is reported here, not per job.
if shutil.which("benchpipe") is None:
    raise WorkflowError(
        "the `benchpipe` command is not on PATH: activate the environment "
        "(`. .venv/bin/activate`) or run `make submit`"
    )

SUBMISSION = config["submission"]
BENCHMARKS = config["benchmarks"]
TARGETS = config["targets"]
SCENARIOS = config["inference"]["scenarios"]
MODES = ["performance", "accuracy"]
SUBMISSION_TREE = f"submissions/{SUBMISSION['round']}"
# With --software-deployment-method conda every job gets the environment `make venv` builds.
CONDA_ENV = "../../environment.yml"


wildcard_constraints:
    benchmark="[A-Za-z0-9_]+",
    target="[A-Za-z0-9][A-Za-z0-9._-]*",
    run=r"\d+",
    scenario="|".join(SCENARIOS),
    mode="|".join(MODES),


def num_runs(benchmark):
    return config["training"]["runs"] or bp_benchmarks.get(benchmark).num_runs


def run_seed(wildcards):
    return config["training"]["seed"] + int(wildcards.run)


def target_file(wildcards):
    base = Path(config["targets_dir"])
    if not base.is_absolute():
        base = Path(workflow.basedir) / base
    return str(base / f"{wildcards.target}.yaml")


def train_runs_of(target, benchmark):
    return [f"runs/{target}/{benchmark}/train/run_{i}" for i in range(num_runs(benchmark))]


def train_runs(wildcards):
    return train_runs_of(wildcards.target, wildcards.benchmark)


ALL_TRAIN_RUNS = [run for t in TARGETS for b in BENCHMARKS for run in train_runs_of(t, b)]
ALL_TESTS = expand(
    "runs/{target}/{benchmark}/infer/{scenario}/{mode}",
    target=TARGETS,
    benchmark=BENCHMARKS,
    scenario=SCENARIOS,
    mode=MODES,
)
