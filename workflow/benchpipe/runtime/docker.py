"""The docker runtime, through the Docker engine's API (the docker Python SDK)."""

from __future__ import annotations

import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import RuntimeSetupError
from benchpipe.runtime.base import ContainerRuntime
from benchpipe.runtime.job import Job, Mount

LABEL = "org.benchpipe.job"


def _client():
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeSetupError(
            f"the Docker engine is not reachable ({exc}): start dockerd, or set DOCKER_HOST"
        ) from exc
    return client


def container_options(target: Target, job: Job, mounts: list[Mount], image_id: str) -> dict[str, Any]:
    """Keyword arguments of `client.containers.create` for one job: the whole policy, in one place."""
    from docker.types import DeviceRequest, Ulimit
    from docker.types import Mount as DockerMount

    resources = target.resources
    options: dict[str, Any] = {
        "image": image_id,
        "command": list(job.command),
        "user": f"{job.user[0]}:{job.user[1]}",
        "working_dir": str(job.workdir),
        "environment": dict(job.env),
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,exec"},
        "mounts": [
            DockerMount(target=str(m.target), source=str(m.source), type="bind", read_only=m.read_only)
            for m in mounts
        ],
        "shm_size": resources.shm_size,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "ulimits": [
            Ulimit(name=name, soft=int(limit.split(":")[0]), hard=int(limit.split(":")[1]))
            for name, limit in sorted(target.ulimits.items())
        ],
        # The guard's lifeline: stdin stays open while `benchpipe run` lives (see guard.py).
        # Not detached, the SDK also sets StdinOnce: the engine closes stdin when we go.
        "stdin_open": True,
        "auto_remove": True,
        "labels": {LABEL: target.name},
    }
    if resources.cpus is not None:
        options["nano_cpus"] = int(resources.cpus * 1e9)
    if resources.memory is not None:
        options["mem_limit"] = resources.memory
    if target.gpus:
        options["device_requests"] = [DeviceRequest(count=target.gpus, capabilities=[["gpu"]])]
    if target.oci_runtime:
        options["runtime"] = target.oci_runtime
    return options


class DockerRuntime(ContainerRuntime):
    name = "docker"

    def version(self) -> str:
        return str(_client().version()["Version"])

    def check(self) -> None:
        _client()

    def image_id(self, reference: str) -> str | None:
        import docker

        try:
            return _client().images.get(reference).id
        except docker.errors.ImageNotFound:
            return None

    def inspect(self, reference: str) -> tuple[str, str]:
        image = _client().images.get(reference)
        digests = image.attrs.get("RepoDigests") or []
        # An image built here has no registry digest: its id is the sha256 of its config,
        # which names every layer's content, so it is the content digest.
        return image.id, digests[0].split("@", 1)[1] if digests else image.id

    def build(self, context: Path, tag: str, build_args: dict[str, str]) -> None:
        import docker

        client = _client()
        try:
            for chunk in client.api.build(
                path=str(context), tag=tag, buildargs=build_args, network_mode="none",
                rm=True, forcerm=True, decode=True,
            ):
                if "stream" in chunk:
                    sys.stdout.write(chunk["stream"])
                if "error" in chunk:
                    raise RuntimeSetupError(f"docker build of {tag} failed: {chunk['error'].strip()}")
        except docker.errors.APIError as exc:
            raise RuntimeSetupError(f"docker build of {tag} failed: {exc}") from exc
        sys.stdout.flush()

    def save(self, reference: str, archive: Path) -> None:
        with open(archive, "wb") as f:
            for chunk in _client().images.get(reference).save(named=True):
                f.write(chunk)

    def run_container(self, target: Target, job: Job, mounts: list[Mount], image_id: str) -> int:
        from docker.utils.socket import frames_iter

        client = _client()
        container = client.containers.create(**container_options(target, job, mounts, image_id))
        stop = threading.Event()

        def on_signal(signum, _frame):
            stop.set()
            _kill(container)
            raise SystemExit(128 + signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        sock = client.api.attach_socket(
            container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        # Waiting for "removed" must begin before the start: an auto-removed container that
        # exits first could no longer report its status.
        with ThreadPoolExecutor(1) as pool:
            waited = pool.submit(client.api.wait, container.id, condition="removed")
            try:
                container.start()
                for stream, data in frames_iter(sock, tty=False):
                    out = sys.stdout if stream == 1 else sys.stderr
                    out.buffer.write(data)
                    out.flush()
                return int(waited.result()["StatusCode"])
            finally:
                if not stop.is_set():
                    _kill(container)
                sock.close()
                for s, handler in previous.items():
                    signal.signal(s, handler)


def _kill(container) -> None:
    import docker

    try:
        container.kill()
    except docker.errors.APIError:
        pass  # already gone: it exited and the engine removed it
