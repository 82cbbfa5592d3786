"""The apptainer runtime, for clusters: a SIF built from the docker image, run with
--containall --cleanenv. Apptainer has no Debian or PyPI package, so its lines come from
the same policy as the other runtimes and are tested as arguments."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import RuntimeSetupError
from benchpipe.runtime.base import ContainerRuntime, ImageRef, run_quiet
from benchpipe.runtime.job import Job, Mount

EXE = "apptainer"


def exec_argv(target: Target, job: Job, mounts: list[Mount], sif: Path) -> list[str]:
    # A multi-node run: srun starts `benchpipe slurm-task` on every node, which hands its task's
    # SLURM variables through --cleanenv; the workers reach each other over the nodes' network.
    launch = [*job.launcher, "benchpipe", "slurm-task", "--"] if job.launcher else []
    argv = [
        *launch, EXE, "exec",
        # A private /tmp, /dev and home, and no host variable but those passed with --env.
        "--containall", "--cleanenv",
        *([] if job.launcher else ["--net", "--network", "none"]),
        "--pwd", str(job.workdir),
    ]
    for m in mounts:
        argv += ["--bind", f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}"]
    for name, value in sorted(job.env.items()):
        argv += ["--env", f"{name}={value}"]
    if target.gpus:
        argv.append("--nv")
    return argv + [str(sif), *job.command]


def build_argv(docker_archive: Path, sif: Path) -> list[str]:
    return [EXE, "build", "--force", str(sif), f"docker-archive://{docker_archive}"]


class ApptainerRuntime(ContainerRuntime):
    """Runs as the invoking user by design; a SIF is read-only, so only the binds are writable."""

    name = "apptainer"
    launches_across_nodes = True

    def version(self) -> str:
        return run_quiet([EXE, "--version"], "apptainer's version").strip()

    def check(self) -> None:
        if shutil.which(EXE) is None:
            raise RuntimeSetupError("apptainer is not installed: install it, or choose a docker or podman target")
        self.version()

    def image_id(self, reference: str) -> str | None:
        return reference if Path(reference).is_file() else None

    def inspect(self, reference: str) -> tuple[str, str]:
        from benchpipe.contracts.hashing import sha256_file

        digest = f"sha256:{sha256_file(Path(reference))}"
        return digest, digest

    def build(self, context: Path, tag: str, build_args: dict[str, str]) -> None:
        raise RuntimeSetupError("apptainer images are converted from a docker image archive, not built from a Dockerfile")

    def convert(self, docker_archive: Path, sif: Path) -> None:
        if subprocess.run(build_argv(docker_archive, sif)).returncode != 0:
            raise RuntimeSetupError(f"apptainer build of {sif} from {docker_archive} failed: see the log above")

    def run(self, target: Target, job: Job, image: ImageRef | None) -> int:
        if image is None or image.sif is None:
            raise RuntimeSetupError(f"target {target.name}: runtime apptainer needs a SIF image record")
        return super().run(target, job, ImageRef(str(image.sif), image.sif))

    def run_container(self, target: Target, job: Job, mounts: list[Mount], image_id: str) -> int:
        # A child in the job's own process group: killed with the workflow, no daemon behind it.
        return subprocess.run(exec_argv(target, job, mounts, Path(image_id))).returncode
