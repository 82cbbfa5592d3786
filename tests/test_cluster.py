"""What per-target jobs ask SLURM for: the target's slurm section and devices, through the rules and
through snakemake-executor-plugin-slurm's own code that turns resources into sbatch options."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from benchpipe.contracts.config import load_target
from benchpipe.contracts.errors import ConfigError, TrainingError
from benchpipe.runtime.slurm import SLURM_RESOURCES, resource_names, slurm_resources

SLURM = {"partition": "gpu", "account": "mlperf", "gpu_model": "a100", "cpus_per_task": 16, "mem_mb": 64000,
         "runtime_min": 240, "constraint": "ib"}


def target(folder: Path, name: str, *, kind: str = "gpu", count: int = 4, **slurm) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "runtime": "local", "devices": {"kind": kind, "count": count},
                                    "slurm": slurm}))
    return path


class _Resources(dict):
    """A job's resources as the plugin reads them: .get and attribute access."""

    __getattr__ = dict.__getitem__


def sbatch_gpu_options(resources: dict) -> str:
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    return set_gres_string(SimpleNamespace(resources=_Resources(resources))).strip()


def test_a_gpu_targets_jobs_ask_for_its_gpus_as_the_plugin_reads_them(tmp_path):
    gpu = load_target(target(tmp_path, "cluster-gpu", **SLURM))
    asked = slurm_resources(gpu)
    assert asked == {"slurm_partition": "gpu", "slurm_account": "mlperf", "gpu": 4, "gpu_model": "a100",
                     "cpus_per_task": 16, "mem_mb": 64000, "runtime": 240, "constraint": "ib"}
    assert set(asked) <= set(SLURM_RESOURCES) and "gpus" not in SLURM_RESOURCES
    assert sbatch_gpu_options(asked) == "--gpus=a100:4"
    # The trap: a plain gpus resource is not read, and the job would get no GPU.
    assert sbatch_gpu_options({"gpus": 4}) == ""
    cpu = load_target(target(tmp_path, "cluster-cpu", kind="cpu", count=1, partition="cpu"))
    assert slurm_resources(cpu) == {"slurm_partition": "cpu"}  # no gpu, no gpu_model
    assert sbatch_gpu_options(slurm_resources(cpu)) == ""


def test_memory_and_time_are_set_by_every_target_of_a_run_or_none(tmp_path):
    with_memory = load_target(target(tmp_path, "a", mem_mb=1000))
    without = load_target(target(tmp_path, "b"))
    assert resource_names([with_memory]) == ["gpu", "mem_mb"]
    with pytest.raises(ConfigError, match="targets a set slurm.mem_mb but b do not"):
        resource_names([with_memory, without])
    with pytest.raises(ConfigError, match=r"cluster-x\.yaml.*gpu_model"):
        load_target(target(tmp_path, "cluster-x", gpu_model="a100 80gb"))


def test_the_rules_give_each_job_its_targets_resources_and_never_gpus(tmp_path, cli_env, repo_root):
    targets = tmp_path / "targets"
    targets.mkdir()
    target(targets, "cluster-gpu", **SLURM)
    target(targets, "cluster-cpu", kind="cpu", count=1, partition="cpu", mem_mb=8000, runtime_min=30)
    local_2x4 = {key: value for key, value in MULTI_NODE.items() if key != "image"}
    (targets / "cluster-2x4.yaml").write_text(yaml.safe_dump({**local_2x4, "runtime": "local"}))
    config = yaml.safe_load((repo_root / ".test" / "config" / "config.yaml").read_text())
    # The cluster targets run training and inference; the reduced suite's Mobile target is not here.
    config.update(targets=["cluster-gpu", "cluster-cpu", "cluster-2x4"], targets_dir=str(targets), mobile={})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(tmp_path), "--profile",
         str(repo_root / "profiles" / "slurm"), "--configfile", str(tmp_path / "config.yaml"), "-n", "-p", "submit"],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    jobs = re.findall(r"rule (train|calibrate|infer):.*?wildcards: ([^\n]*).*?resources: ([^\n]*)\n"
                      r"Shell command: ([^\n]*)", proc.stdout, re.S)
    assert {rule for rule, _, _, _ in jobs} == {"train", "calibrate", "infer"}
    for rule, wildcards, resources, command in jobs:
        asked = dict(item.split("=", 1) for item in resources.split(", "))
        assert "gpus" not in asked, (rule, resources)
        assert ("--across-nodes" in command) == (rule == "train" and "target=cluster-2x4" in wildcards)
        if "target=cluster-2x4" in wildcards and rule == "train":
            assert (asked["nodes"], asked["tasks"], asked["tasks_per_gpu"], asked["mpi"], asked["gres"]) == (
                "2", "8", "1", "srun", "gpu:a100:4") and "gpu" not in asked, resources
            assert asked["cpus_per_task"] == "8"  # each task's share of the node's 32
        elif "target=cluster-2x4" in wildcards:
            assert (asked["gpu"], asked["cpus_per_task"]) == ("4", "32") and "nodes" not in asked, resources
        elif "target=cluster-gpu" in wildcards:
            assert (asked["slurm_partition"], asked["gpu"], asked["gpu_model"]) == ("gpu", "4", "a100"), resources
            assert (asked["cpus_per_task"], asked["mem_mb"], asked["runtime"]) == ("16", "64000", "240")
        else:
            assert asked["slurm_partition"] == "cpu" and "gpu" not in asked, resources
            assert (asked["mem_mb"], asked["runtime"]) == ("8000", "30")


def test_a_job_stopped_by_scancel_reads_as_cancelled_to_the_plugin(monkeypatch):
    import asyncio
    import logging

    import snakemake_executor_plugin_slurm as plugin

    from benchpipe.runtime.slurm_plugin import mend_slurm_status_query

    # sacct's own spelling of a job scancel stopped, and of one that ended well.
    sacct = "printf '7|CANCELLED by 1000\\n8|COMPLETED\\n9|TIMEOUT\\n'"
    monkeypatch.setattr(plugin, "query_job_status", plugin.query_job_status)  # restored afterwards
    states, _ = asyncio.run(plugin.query_job_status(sacct, logging.getLogger("test")))
    assert states["7"] == "CANCELLED by 1000"  # what the plugin compares with CANCELLED, and waits on
    assert mend_slurm_status_query() is True
    assert mend_slurm_status_query() is False  # once
    states, _ = asyncio.run(plugin.query_job_status(sacct, logging.getLogger("test")))
    assert states == {"7": "CANCELLED", "8": "COMPLETED", "9": "TIMEOUT"}


def test_a_requeued_jobs_missing_node_is_never_excluded_from_later_submissions(monkeypatch):
    import snakemake_executor_plugin_slurm as plugin

    from benchpipe.runtime.slurm_plugin import mend_slurm_node_exclusion

    job = SimpleNamespace(resources=_Resources({"slurm_partition": "accel"}), threads=1)
    params = {"run_uuid": "uuid", "slurm_logfile": "log", "comment_str": "rule_infer", "account": "",
              "partition": "-p accel", "workdir": "/work"}
    # What the plugin excludes after a NODE_FAIL: sacct's node list of the job, which SLURM has
    # already requeued, then that of a job that held a node.
    failed = {"None assigned", "vm"}
    monkeypatch.setattr(plugin, "get_submit_command", plugin.get_submit_command)  # restored afterwards
    assert "--exclude=None assigned" in plugin.get_submit_command(job, params, failed_nodes={"None assigned"})
    assert mend_slurm_node_exclusion() is True
    assert mend_slurm_node_exclusion() is False  # once
    line = plugin.get_submit_command(job, params, failed_nodes=failed)
    assert line.count("--exclude") == 1 and "--exclude=vm" in line and "None" not in line
    assert "--exclude" not in plugin.get_submit_command(job, params, failed_nodes={"None assigned"})


# A training run on 2 nodes x 4 GPUs, at the level of what SLURM, srun and TensorFlow are given.
MULTI_NODE = {"name": "cluster-2x4", "runtime": "apptainer", "image": "tensorflow-cuda",
              "devices": {"kind": "gpu", "count": 4}, "training": {"distribution": "multi_worker"},
              "slurm": {"partition": "gpu", "account": "mlperf", "gpu_model": "a100", "cpus_per_task": 32,
                        "mem_mb": 64000, "runtime_min": 240, "nodes": 2}}
# SLURM's environment of the sixth task (rank 5: second node, second GPU) of that run's srun step.
TASK_5 = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "8",
          "SLURM_STEP_NODELIST": "gpu[01-02]", "SLURM_STEP_TASKS_PER_NODE": "4(x2)"}


def multi_node_target(folder: Path, **changes):
    path = folder / f"{MULTI_NODE['name']}.yaml"
    path.write_text(yaml.safe_dump({**MULTI_NODE, **changes}))
    return load_target(path)


def sbatch_line(resources: dict, threads: int = 1) -> str:
    """The plugin's own sbatch command line for a job with these resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=_Resources(resources), threads=threads)
    params = {"run_uuid": "uuid", "slurm_logfile": "log", "comment_str": "rule_train", "account": "-A mlperf",
              "partition": "-p gpu", "workdir": "/work"}
    return get_submit_command(job, params) + set_gres_string(job)


def test_a_multi_node_run_asks_slurm_for_its_nodes_and_one_task_per_gpu(tmp_path):
    target = multi_node_target(tmp_path)
    train = slurm_resources(target, training=True)
    assert train == {"slurm_partition": "gpu", "slurm_account": "mlperf", "gres": "gpu:a100:4", "nodes": 2,
                     "tasks": 8, "tasks_per_gpu": 1, "mpi": "srun", "cpus_per_task": 8, "mem_mb": 64000,
                     "runtime": 240}
    line = sbatch_line(train).split()
    for option in ("--nodes=2", "--ntasks=8", "--ntasks-per-gpu=1", "--cpus-per-task=8", "--gres=gpu:a100:4",
                   "--mem"):
        assert option in line, (option, line)
    assert not any(o.startswith("--gpus") for o in line)  # --gpus counts over the job, not per node
    # Its LoadGen tests run on one node with its four GPUs.
    assert "--gpus=a100:4" in sbatch_line(slurm_resources(target)).split()
    # Only runtimes srun can start on every node, and only the strategy that spans nodes.
    with pytest.raises(ConfigError, match="runtime docker cannot start one task per GPU"):
        multi_node_target(tmp_path, runtime="docker")
    with pytest.raises(ConfigError, match="slurm.nodes is 2 and training.distribution is mirrored"):
        multi_node_target(tmp_path, training={"distribution": "mirrored"})


def test_srun_starts_the_container_on_every_node_with_the_tasks_slurm_variables(tmp_path, cli_env):
    from benchpipe.runtime.apptainer import exec_argv
    from benchpipe.runtime.job import Job
    from benchpipe.runtime.slurm import srun_launcher

    target = multi_node_target(tmp_path)
    job = Job(("benchpipe", "train", "--benchmark", "resnet"), tmp_path, (), tmp_path / "run_0",
              {"BENCHPIPE_PROVENANCE": "{}"}, launcher=tuple(srun_launcher(target)))
    argv = exec_argv(target, job, [], Path("/shared/images/tensorflow-cuda.sif"))
    assert argv[:9] == ["srun", "--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--kill-on-bad-exit=1",
                        "benchpipe", "slurm-task", "--", "apptainer"]
    assert "--nv" in argv and "--cleanenv" in argv
    assert "--network" not in argv  # the workers reach each other over the nodes' network
    assert argv[-4:] == ["benchpipe", "train", "--benchmark", "resnet"]
    single = exec_argv(target, Job(job.command, tmp_path, (), tmp_path / "out"), [], Path("x.sif"))
    assert single[0] == "apptainer" and "none" in single  # one node: no network, as before

    # What `benchpipe slurm-task` hands to apptainer: the task's variables, under the names
    # --cleanenv lets through.
    env = {**cli_env, **TASK_5}
    shown = subprocess.run(["benchpipe", "slurm-task", "--", "env"], env=env, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for name, value in TASK_5.items():
        assert f"APPTAINERENV_{name}={value}" in shown


def test_each_task_finds_its_rank_its_gpu_and_whether_it_writes_the_run(tmp_path, monkeypatch):
    from benchpipe.train import devices

    monkeypatch.setattr(devices, "_WORKER", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # the node's four, as SLURM gives the step
    for name, value in TASK_5.items():
        monkeypatch.setenv(name, value)
    worker = devices.slurm_worker(gpus_per_node=4)
    assert (worker.rank, worker.workers, worker.chief) == (5, 8, False)
    assert worker.cluster_spec == {"worker": [f"gpu0{n}:{8888 + i}" for n in (1, 2) for i in range(4)]}
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"  # its own GPU: the second of the second node
    # The global batch is split over all eight replicas, never multiplied.
    assert devices.per_replica_batch_size(256, worker.workers) == 32
    # One MLLOG log per run: rank 0 writes the run; rank 5 writes elsewhere.
    out = tmp_path / "runs" / "run_0"
    elsewhere = devices.task_output(out, worker)
    assert out not in (elsewhere, *elsewhere.parents) and tmp_path not in elsewhere.parents

    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    chief = devices.slurm_worker(gpus_per_node=4)
    assert chief.chief and devices.task_output(out, chief) == out
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"

    monkeypatch.delenv("SLURM_PROCID")
    with pytest.raises(TrainingError, match="SLURM_PROCID not found.*srun"):
        devices.slurm_worker(gpus_per_node=4)
