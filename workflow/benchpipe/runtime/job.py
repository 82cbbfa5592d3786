"""What every runtime receives: one command, its read-only inputs, its one writable output.

A runtime never learns which benchmark or stage it runs; a stage never learns where it runs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from benchpipe.contracts.errors import RuntimeSetupError

# Set by the runtime, never taken from the host: a container job's home is its private /tmp.
CONTAINER_HOME = "/tmp"


@dataclass(frozen=True)
class Mount:
    source: Path  # on the host
    target: Path  # in the container
    read_only: bool


@dataclass(frozen=True)
class Job:
    """One `benchpipe <stage> ...` line and the paths it may touch, all absolute."""

    command: tuple[str, ...]
    workdir: Path
    inputs: tuple[Path, ...]
    output: Path
    env: dict[str, str] = field(default_factory=dict)
    user: tuple[int, int] = field(default_factory=lambda: (os.getuid(), os.getgid()))
    # What starts the command on every node of a multi-node run (benchpipe.runtime.slurm.srun_launcher);
    # empty: the command runs once, here.
    launcher: tuple[str, ...] = ()

    @classmethod
    def create(
        cls,
        command: list[str],
        inputs: list[Path],
        output: Path,
        env: dict[str, str],
        user: tuple[int, int] | None = None,
        launcher: list[str] | None = None,
    ) -> "Job":
        if not command:
            raise RuntimeSetupError("no command to run: give it after `--`")
        workdir = Path.cwd()
        resolved = tuple(sorted({(workdir / p).resolve() for p in inputs}))
        for path in resolved:
            if not path.exists():
                raise RuntimeSetupError(f"input {path} does not exist")
        out = (workdir / output).resolve()
        for path in resolved:
            if path == out.parent or out.parent in path.parents:
                # The output's folder is replaced by an empty staging folder in the container.
                raise RuntimeSetupError(f"input {path} lies in the output's folder {out.parent}")
        return cls(tuple(command), workdir, resolved, out, dict(env), user or (os.getuid(), os.getgid()),
                   tuple(launcher or ()))


def allowed_env(host_env: dict[str, str], allowlist: tuple[str, ...]) -> dict[str, str]:
    """The host variables a container job may see: the allow-list's, nothing else."""
    return {name: host_env[name] for name in allowlist if name in host_env}


class OutputStaging:
    """The one writable place a container job gets: a fresh folder on the host, mounted in
    the container where the output's folder is.

    The job writes its output there (atomically, as on the host); only a job that exits 0
    has its output moved to the real path. A killed job leaves a dot-named staging folder,
    which nothing takes for a result and the next attempt removes.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        parent = job.output.parent
        self.path = parent / f".{job.output.name}.staging-{os.getpid()}"

    def __enter__(self) -> "OutputStaging":
        parent = self.job.output.parent
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(f".{self.job.output.name}.staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.path.mkdir()
        # The job runs as the invoking user; the folder must be theirs even when the
        # workflow itself runs as another user (root in CI).
        os.chown(self.path, *self.job.user)
        return self

    def mounts(self) -> list[Mount]:
        inputs = [Mount(p, p, read_only=True) for p in self.job.inputs]
        return [*inputs, Mount(self.path, self.job.output.parent, read_only=False)]

    def commit(self) -> None:
        produced = self.path / self.job.output.name
        if not produced.exists():
            raise RuntimeSetupError(f"the job exited 0 but wrote no {self.job.output}")
        if self.job.output.is_dir():
            shutil.rmtree(self.job.output)
        os.replace(produced, self.job.output)

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
