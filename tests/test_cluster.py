"""What per-target jobs ask SLURM for: the target's slurm section and devices, through the rules and
through snakemake-executor-plugin-slurm's own code that turns resources into sbatch options."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from benchpipe.cluster import SLURM_RESOURCES, resource_names, slurm_resources
from benchpipe.config import load_target
from benchpipe.errors import ConfigError

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
    config = yaml.safe_load((repo_root / ".test" / "config" / "config.yaml").read_text())
    config.update(targets=["cluster-gpu", "cluster-cpu"], targets_dir=str(targets))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(tmp_path), "--profile",
         str(repo_root / "profiles" / "slurm"), "--configfile", str(tmp_path / "config.yaml"), "-n", "submit"],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    jobs = re.findall(r"rule (train|calibrate|infer):.*?wildcards: ([^\n]*).*?resources: ([^\n]*)", proc.stdout, re.S)
    assert {rule for rule, _, _ in jobs} == {"train", "calibrate", "infer"}
    for rule, wildcards, resources in jobs:
        asked = dict(item.split("=", 1) for item in resources.split(", "))
        assert "gpus" not in asked, (rule, resources)
        if "target=cluster-gpu" in wildcards:
            assert (asked["slurm_partition"], asked["gpu"], asked["gpu_model"]) == ("gpu", "4", "a100"), resources
            assert (asked["cpus_per_task"], asked["mem_mb"], asked["runtime"]) == ("16", "64000", "240")
        else:
            assert asked["slurm_partition"] == "cpu" and "gpu" not in asked, resources
            assert (asked["mem_mb"], asked["runtime"]) == ("8000", "30")


def test_a_job_stopped_by_scancel_reads_as_cancelled_to_the_plugin(monkeypatch):
    import asyncio
    import logging

    import snakemake_executor_plugin_slurm as plugin

    from benchpipe.cluster import mend_slurm_status_query

    # sacct's own spelling of a job scancel stopped, and of one that ended well.
    sacct = "printf '7|CANCELLED by 1000\\n8|COMPLETED\\n9|TIMEOUT\\n'"
    monkeypatch.setattr(plugin, "query_job_status", plugin.query_job_status)  # restored afterwards
    states, _ = asyncio.run(plugin.query_job_status(sacct, logging.getLogger("test")))
    assert states["7"] == "CANCELLED by 1000"  # what the plugin compares with CANCELLED, and waits on
    assert mend_slurm_status_query() is True
    assert mend_slurm_status_query() is False  # once
    states, _ = asyncio.run(plugin.query_job_status(sacct, logging.getLogger("test")))
    assert states == {"7": "CANCELLED", "8": "COMPLETED", "9": "TIMEOUT"}
