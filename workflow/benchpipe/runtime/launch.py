"""`benchpipe run`: one job through its target's runtime, and the check that runs before any job."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchpipe import provenance
from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import RuntimeSetupError
from benchpipe.provenance import PROVENANCE_ENV
from benchpipe.runtime import for_engine, for_target
from benchpipe.runtime.base import ContainerRuntime, ImageRef
from benchpipe.runtime.images import ImageRecord
from benchpipe.runtime.job import CONTAINER_HOME, Job, allowed_env
from benchpipe.runtime.slurm import srun_launcher


def image_record_path(images: Path, target: Target) -> Path:
    return images / target.runtime / f"{target.image}.json"


def launch(target: Target, command: list[str], inputs: list[Path], output: Path, images: Path,
           across_nodes: bool = False) -> int:
    runtime = for_target(target)
    try:
        runtime.check()
        record = ImageRecord.read(image_record_path(images, target)) if target.containerized else None
        env: dict[str, str] = {}
        image = None
        if record is not None:
            image = ImageRef(record.image_id, Path(record.sif) if record.sif else None)
            reference = record.sif or record.image_id
            if isinstance(runtime, ContainerRuntime) and runtime.image_id(reference) is None:
                if os.environ.get("SLURM_JOB_ID"):
                    # Built on the login node: a node's own image store never saw it.
                    raise RuntimeSetupError(
                        f"{runtime.name} on node {os.environ.get('SLURMD_NODENAME', '?')} has no image {reference} "
                        f"({record.tag}): a cluster's nodes need images where each of them sees them (an apptainer "
                        "SIF in cluster.images_dir, or podman's additionalimagestores on a shared path): docs/hpc.md")
                raise RuntimeSetupError(
                    f"{runtime.name} no longer has image {reference} ({record.tag}): run the workflow again to rebuild it"
                )
            env = {**allowed_env(dict(os.environ), target.env_allowlist), "HOME": CONTAINER_HOME, "PYTHONUNBUFFERED": "1"}
        env[PROVENANCE_ENV] = json.dumps(provenance.runtime_fields(runtime.name, runtime.version(), record))
        launcher = None
        if across_nodes and target.slurm.nodes > 1:
            if not os.environ.get("SLURM_JOB_ID"):
                raise RuntimeSetupError(f"trains on {target.slurm.nodes} nodes (slurm.nodes): run the workflow "
                                        "with --profile profiles/slurm, so that the run gets its nodes")
            launcher = srun_launcher(target)
        job = Job.create(command, inputs, output, env, launcher=launcher)
    except RuntimeSetupError as exc:
        raise RuntimeSetupError(f"target {target.name}: {exc}") from exc
    return runtime.run(target, job, image)


def sif_source_engine() -> str:
    """The engine that builds the image a SIF is converted from: docker where it answers, else
    podman (login nodes often have podman and no Docker daemon)."""
    reasons = []
    for engine in ("docker", "podman"):
        try:
            for_engine(engine).check()
            return engine
        except RuntimeSetupError as exc:
            reasons.append(f"{engine}: {exc}")
    raise RuntimeSetupError("an apptainer image is converted from a docker or podman image, and neither answers here ("
                            + "; ".join(reasons) + ")")


def preflight(targets: list[Target], base_image: str, images: Path) -> str:
    """Before any job: each container target's engine answers and has the base image; returns
    the engine an apptainer SIF is converted from (sif_source_engine; docker where no target
    needs one).

    A record that does not read, or whose image the engine no longer has, is removed, so
    that the image rule builds it again and the runs that used it rerun.
    """
    sif_source = "docker"
    if any(t.runtime == "apptainer" for t in targets):
        # Apptainer first: without it, which engine would feed it matters to no one.
        try:
            for_engine("apptainer").check()
            sif_source = sif_source_engine()
        except RuntimeSetupError as exc:
            target = next(t for t in targets if t.runtime == "apptainer")
            raise RuntimeSetupError(f"target {target.name} (runtime {target.runtime}): {exc}") from exc
    for target in targets:
        if not target.containerized:
            continue
        try:
            if target.runtime == "apptainer":
                for_engine("apptainer").check()
                builder = for_engine(sif_source)  # the SIF is converted from its image (sif_source_engine)
            else:
                builder = for_engine(target.runtime, target)
            builder.check()
            if builder.image_id(base_image) is None:
                raise RuntimeSetupError(
                    f"{builder.name} has no base image {base_image}: build it with `containers/base/build.sh {builder.name}`"
                )
        except RuntimeSetupError as exc:
            raise RuntimeSetupError(f"target {target.name} (runtime {target.runtime}): {exc}") from exc
        record_path = image_record_path(images, target)
        if record_path.is_file() and target.runtime != "apptainer" and not _record_usable(record_path, builder):
            record_path.unlink()
    return sif_source


def _record_usable(path: Path, runtime: ContainerRuntime) -> bool:
    """The record reads (an older benchpipe may have written another shape) and its image exists."""
    try:
        return runtime.image_id(ImageRecord.read(path).image_id) is not None
    except RuntimeSetupError:
        return False
