"""One interface for every runtime: check the engine, build and inspect images, run a job."""

from __future__ import annotations

import dataclasses
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path

from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import RuntimeSetupError
from benchpipe.provenance import local_runtime_version
from benchpipe.runtime.job import Job, Mount, OutputStaging

GUARD = ("python", "-m", "benchpipe.runtime.guard", "--")


class Runtime(ABC):
    name: str

    @abstractmethod
    def version(self) -> str:
        """The engine's own version, recorded with every result."""

    @abstractmethod
    def check(self) -> None:
        """Raise RuntimeSetupError, saying what to do, when jobs cannot run here."""

    @abstractmethod
    def run(self, target: Target, job: Job, image: "ImageRef | None") -> int:
        """Run the job to completion; its exit status."""


class ImageRef:
    """What a container job needs of its image: the id to run (or a SIF file)."""

    def __init__(self, image_id: str, sif: Path | None = None) -> None:
        self.image_id = image_id
        self.sif = sif


class LocalRuntime(Runtime):
    """Jobs run on the host, in the workflow's own environment."""

    name = "local"

    def version(self) -> str:
        return local_runtime_version()

    def check(self) -> None:
        return None

    def run(self, target: Target, job: Job, image: ImageRef | None) -> int:
        import os

        # The host's environment as it is: local runs are for development, not isolation.
        argv = [*job.launcher, *job.command]
        return subprocess.run(argv, cwd=job.workdir, env={**os.environ, **job.env}).returncode


class ContainerRuntime(Runtime):
    """Docker, Podman and Apptainer share the policy; each says it in its own syntax."""

    # Whether srun can start one container per task on every node (apptainer: no daemon).
    launches_across_nodes = False

    @abstractmethod
    def image_id(self, reference: str) -> str | None:
        """The image's id, or None when the engine does not have it."""

    @abstractmethod
    def inspect(self, reference: str) -> tuple[str, str]:
        """(image id, content digest)."""

    @abstractmethod
    def build(self, context: Path, tag: str, build_args: dict[str, str]) -> None:
        """Build the Dockerfile in ``context`` with the network off."""

    @abstractmethod
    def run_container(self, target: Target, job: Job, mounts: list[Mount], image_id: str) -> int:
        """Run ``job.command`` (already behind the guard) with exactly these mounts."""

    def run(self, target: Target, job: Job, image: ImageRef | None) -> int:
        if image is None:
            raise RuntimeSetupError(f"target {target.name}: runtime {self.name} needs an image record")
        if job.launcher and not self.launches_across_nodes:
            raise RuntimeSetupError(f"target {target.name}: runtime {self.name} cannot start a run on several nodes")
        guarded = dataclasses.replace(job, command=GUARD + job.command)
        with OutputStaging(job) as staging:
            code = self.run_container(target, guarded, staging.mounts(), image.image_id)
            if code == 0:
                staging.commit()
        return code


def run_quiet(argv: list[str], what: str) -> str:
    """A short engine command whose output is an answer; its failure becomes one clear line."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise RuntimeSetupError(f"{argv[0]} is not installed (needed for {what})") from exc
    except subprocess.TimeoutExpired as exc:
        raise RuntimeSetupError(f"`{' '.join(argv)}` did not answer within 120 s ({what})") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeSetupError(f"`{' '.join(argv)}` failed ({what}): {detail[-1] if detail else proc.returncode}")
    return proc.stdout
