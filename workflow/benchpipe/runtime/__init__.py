"""Where a job runs: local, docker, podman, apptainer or adb, chosen by the target's `runtime`.

Nothing else in benchpipe imports docker or calls podman or apptainer.
"""

from __future__ import annotations

from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import RuntimeSetupError
from benchpipe.runtime.base import ContainerRuntime, Runtime


def for_target(target: Target) -> Runtime:
    return for_engine(target.runtime, target)


def for_engine(engine: str, target: Target | None = None) -> Runtime:
    if engine == "local":
        from benchpipe.runtime.base import LocalRuntime

        return LocalRuntime()
    if engine == "docker":
        from benchpipe.runtime.docker import DockerRuntime

        return DockerRuntime()
    if engine == "podman":
        from benchpipe.runtime.podman import PodmanRuntime

        return PodmanRuntime(target)
    if engine == "apptainer":
        from benchpipe.runtime.apptainer import ApptainerRuntime

        return ApptainerRuntime()
    if engine == "adb":
        from benchpipe.runtime.adb import AdbRuntime

        return AdbRuntime(target)
    raise RuntimeSetupError(f"unknown runtime '{engine}' (known: local, docker, podman, apptainer, adb)")


__all__ = ["ContainerRuntime", "Runtime", "for_engine", "for_target"]
