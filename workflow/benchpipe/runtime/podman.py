"""The podman runtime, through Debian's podman command line (daemonless; rootless where the
host allows, rootful when the workflow runs as root)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import RuntimeSetupError
from benchpipe.runtime.base import ContainerRuntime, run_quiet
from benchpipe.runtime.job import Job, Mount


def engine_argv(target: Target | None) -> list[str]:
    """`podman` with the global options a target sets (its OCI runtime)."""
    argv = ["podman"]
    if target is not None and target.oci_runtime:
        argv += ["--runtime", target.oci_runtime]
    return argv


def run_argv(target: Target, job: Job, mounts: list[Mount], image_id: str) -> list[str]:
    """The `podman run` line of one job: the same policy as the docker runtime's options."""
    resources = target.resources
    argv = engine_argv(target) + [
        "run", "--rm", "--interactive",  # stdin is the guard's lifeline (see guard.py)
        "--network", "none",
        "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,exec",
        "--user", f"{job.user[0]}:{job.user[1]}",
        "--workdir", str(job.workdir),
        "--shm-size", resources.shm_size,
        "--cap-drop", "all", "--security-opt", "no-new-privileges",
        "--label", f"org.benchpipe.job={target.name}",
    ]
    for m in mounts:
        argv += ["--volume", f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}"]
    for name, value in sorted(job.env.items()):
        argv += ["--env", f"{name}={value}"]
    for name, limit in sorted(target.ulimits.items()):
        argv += ["--ulimit", f"{name}={limit}"]
    if resources.cpus is not None:
        argv += ["--cpus", f"{resources.cpus:g}"]
    if resources.memory is not None:
        argv += ["--memory", resources.memory]
    if target.gpus:
        # CDI names GPUs for podman; `nvidia-ctk cdi generate` writes the spec on the host.
        argv += ["--device", "nvidia.com/gpu=all"]
    return argv + [image_id, *job.command]


class PodmanRuntime(ContainerRuntime):
    name = "podman"

    def __init__(self, target: Target | None = None) -> None:
        self.target = target

    def _podman(self, *args: str, what: str) -> str:
        return run_quiet(engine_argv(self.target) + list(args), what)

    def version(self) -> str:
        return self._podman("version", "--format", "{{.Client.Version}}", what="podman's version").strip()

    def check(self) -> None:
        self._podman("info", "--format", "{{.Host.OCIRuntime.Name}}", what="a working podman")

    def image_id(self, reference: str) -> str | None:
        proc = subprocess.run(
            engine_argv(self.target) + ["image", "inspect", "--format", "{{.Id}}", reference],
            capture_output=True, text=True,
        )
        return f"sha256:{proc.stdout.strip()}" if proc.returncode == 0 and proc.stdout.strip() else None

    def inspect(self, reference: str) -> tuple[str, str]:
        data = json.loads(self._podman("image", "inspect", reference, what=f"image {reference}"))[0]
        image_id = f"sha256:{data['Id']}"
        # Podman's Digest is that of the image manifest it keeps; built here, it has no registry digest.
        return image_id, data.get("Digest") or image_id

    def build(self, context: Path, tag: str, build_args: dict[str, str]) -> None:
        argv = engine_argv(self.target) + ["build", "--network", "none", "--tag", tag]
        for name, value in sorted(build_args.items()):
            argv += ["--build-arg", f"{name}={value}"]
        if subprocess.run(argv + [str(context)]).returncode != 0:
            raise RuntimeSetupError(f"podman build of {tag} failed: see the log above")

    def save(self, reference: str, archive: Path) -> None:
        """The image as a docker-archive tar, the form `apptainer build docker-archive://` reads."""
        self._podman("save", "--format", "docker-archive", "--output", str(archive), reference,
                     what=f"an archive of image {reference}")

    def run_container(self, target: Target, job: Job, mounts: list[Mount], image_id: str) -> int:
        proc = subprocess.Popen(run_argv(target, job, mounts, image_id), stdin=subprocess.PIPE)

        def on_signal(signum, _frame):
            # Closing stdin is the guard's signal; podman forwards TERM to the container too.
            proc.terminate()
            raise SystemExit(128 + signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            return proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
            for s, handler in previous.items():
                signal.signal(s, handler)
