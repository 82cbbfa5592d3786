"""What a hardware target's jobs ask SLURM for, as snakemake-executor-plugin-slurm's resources.

The rules of per-target jobs (train, calibrate, infer) take every name of SLURM_RESOURCES
from here; a name a target leaves unset is left out of the job (the profile's or the
cluster's default applies). GPUs are the target's devices, requested as ``gpu`` (with
``gpu_model``): the plugin turns that into ``sbatch --gpus``. It reads no ``gpus`` resource,
and a job asking for one would run without GPUs and without a word.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import ConfigError

SLURM_RESOURCES = ("slurm_partition", "slurm_account", "gpu", "gpu_model", "gres", "cpus_per_task", "mem_mb",
                   "runtime", "constraint", "nodes", "tasks", "tasks_per_gpu", "mpi")
# What SlurmClusterResolver reads of each task's environment (srun sets them per task).
TASK_VARIABLES = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST",
                  "SLURM_STEP_TASKS_PER_NODE", "SLURM_JOB_ID")
# Apptainer's --cleanenv drops the host's variables but passes APPTAINERENV_<NAME> as <NAME>.
APPTAINER_PASS = "APPTAINERENV_"


# Snakemake converts these units, so a job cannot leave them out once another job sets them:
# resource name -> the target key that sets it.
_CONVERTED = {"mem_mb": "slurm.mem_mb", "runtime": "slurm.runtime_min"}


def resource_names(targets: Sequence[Target], *, training: bool = False) -> list[str]:
    """The resources the per-target rules take: those that any of ``targets`` sets.

    Memory and time must then be set by every one of them (a ConfigError names who lacks it).
    """
    asked = [slurm_resources(target, training=training) for target in targets]
    used = {name for request in asked for name in request}
    for name, key in _CONVERTED.items():
        lacking = [t.name for t, request in zip(targets, asked) if name not in request]
        if name in used and lacking:
            setting = ", ".join(t.name for t, request in zip(targets, asked) if name in request)
            raise ConfigError(f"targets {setting} set {key} but {', '.join(lacking)} do not: a run's targets set "
                              f"{key} all or none")
    return [name for name in SLURM_RESOURCES if name in used]


def tasks_per_node(target: Target) -> int:
    """A training run across nodes starts one task per GPU (one per node on CPUs)."""
    return max(target.gpus, 1)


def slurm_resources(target: Target, *, training: bool = False) -> dict[str, int | str]:
    """The plugin's resources for one job of ``target``: only those it sets.

    A training run of a multi-node target asks for its nodes, one task per GPU and the GPUs
    per node (``gres``: ``--gpus`` would count them over the whole job), and is an ``mpi`` job
    to the plugin: the job's own command starts its tasks (``srun_launcher``).
    """
    request = target.slurm
    across = training and request.nodes > 1
    per_node = tasks_per_node(target)
    wanted: dict[str, int | str | None] = {
        "slurm_partition": request.partition,
        "slurm_account": request.account,
        "gpu": target.gpus or None,
        "gpu_model": request.gpu_model if target.gpus else None,
        "cpus_per_task": request.cpus_per_task,
        "mem_mb": request.mem_mb,
        "runtime": request.runtime_min,
        "constraint": request.constraint,
    }
    if across:
        model = f"{request.gpu_model}:" if request.gpu_model else ""
        wanted.update({
            "gpu": None, "gpu_model": None,
            "gres": f"gpu:{model}{target.gpus}" if target.gpus else None,
            "nodes": request.nodes, "tasks": request.nodes * per_node, "tasks_per_gpu": 1 if target.gpus else None,
            "mpi": "srun",
            "cpus_per_task": max(1, request.cpus_per_task // per_node) if request.cpus_per_task else None,
        })
    return {name: value for name, value in wanted.items() if value is not None}


def srun_launcher(target: Target) -> list[str]:
    """What starts a multi-node training run's tasks inside its allocation: every task runs the
    same command; SlurmClusterResolver tells each its rank and its GPU (CUDA_VISIBLE_DEVICES)."""
    nodes, per_node = target.slurm.nodes, tasks_per_node(target)
    return ["srun", f"--nodes={nodes}", f"--ntasks={nodes * per_node}", f"--ntasks-per-node={per_node}",
            "--kill-on-bad-exit=1"]


def apptainer_task_env(environ: dict[str, str]) -> dict[str, str]:
    """The SLURM variables of this task, named so that apptainer --cleanenv passes them in."""
    return {f"{APPTAINER_PASS}{name}": environ[name] for name in TASK_VARIABLES if name in environ}
