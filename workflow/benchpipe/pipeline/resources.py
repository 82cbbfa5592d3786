"""What each per-target job asks of Snakemake's executor: SLURM resources, threads, scratch.

Built once per workflow from the targets' files (``benchpipe.runtime.slurm``); every job's
resource is then a look-up by its ``target`` wildcard.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from benchpipe.contracts.config import Target
from benchpipe.runtime.slurm import resource_names, slurm_resources


def slurm_requests(targets: Mapping[str, Target], *, training: bool) -> dict[str, dict[str, int | str]]:
    """Each target's SLURM resources, by name. training: a run across slurm.nodes asks for its
    nodes and one task per GPU."""
    return {name: slurm_resources(spec, training=training) for name, spec in targets.items()}


def job_resources(
    targets: Mapping[str, Target], requests: Mapping[str, Mapping[str, Any]], *, training: bool,
    scratch: Mapping[str, str],
) -> dict[str, Any]:
    """A per-target rule's resources: what its target's slurm section asks for, and scratch.

    The time limit grows with each attempt: a job that SLURM killed at its limit (TIMEOUT) and
    that Snakemake submits again (a rule's retries, or --retries) gets twice, then three times,
    the time.
    """
    names = resource_names(list(targets.values()), training=training)
    resources: dict[str, Any] = {
        name: (lambda wildcards, name=name: requests[wildcards.target].get(name)) for name in names
    }
    if "runtime" in resources:
        resources["runtime"] = lambda wildcards, attempt: requests[wildcards.target]["runtime"] * attempt
    return resources | dict(scratch)


def job_threads(requests: Mapping[str, Mapping[str, Any]], all_cores: int | None) -> Callable[[Any], int]:
    """A run takes every core it is given: its target's cpus_per_task (a task's share where a run
    spans nodes), or the machine's. (A cluster job of a target without it gets one CPU: docs/hpc.md.)"""
    return lambda wildcards: requests[wildcards.target].get("cpus_per_task") or all_cores or 1
