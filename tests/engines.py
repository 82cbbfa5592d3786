"""Engines for the container tests: skipped where an engine is missing, except in CI, where
.ci/run provisions docker and podman and a missing one is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

BASE_IMAGE = "benchpipe/debian:bookworm"
IMAGE = "tensorflow-cpu"


def require_engine(engine: str) -> None:
    from benchpipe.contracts.errors import RuntimeSetupError
    from benchpipe.runtime import for_engine

    try:
        runtime = for_engine(engine, _target_stub(engine))
        runtime.check()
        if runtime.image_id(BASE_IMAGE) is None:
            raise RuntimeSetupError(f"no base image {BASE_IMAGE}: run containers/base/build.sh {engine}")
    except RuntimeSetupError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{engine} is provisioned in CI but unusable: {exc}")
        pytest.skip(f"{engine} unavailable: {exc}")


def _target_stub(engine: str):
    from benchpipe.contracts.config import load_target

    return load_target(Path(__file__).resolve().parents[1] / "config" / "targets" / f"{engine}-cpu.yaml")


def write_target(folder: Path, engine: str, name: str, **overrides) -> Path:
    """A copy of the shipped <engine>-cpu target under another name (its containers' label)."""
    repo_targets = Path(__file__).resolve().parents[1] / "config" / "targets"
    data = yaml.safe_load((repo_targets / f"{engine}-cpu.yaml").read_text())
    data.update(name=name, **overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def running_containers(engine: str, name: str) -> list[str]:
    argv = ["podman", "--runtime", "runc"] if engine == "podman" else ["docker"]
    out = subprocess.run(
        argv + ["ps", "--all", "--quiet", "--filter", f"label=org.benchpipe.job={name}"],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.split()


def build_image(engine: str, repo: Path, work: Path, wheelhouse: Path, env: dict[str, str]) -> Path:
    """images/<engine>/tensorflow-cpu.json under ``work``, built as the workflow's rules do."""
    recipe = repo / "containers" / IMAGE
    if not wheelhouse.exists():
        subprocess.run(
            ["benchpipe", "image", "wheelhouse", "--lock", str(recipe / "requirements.lock"), "--out", str(wheelhouse)],
            env=env, check=True,
        )
    record = work / "images" / engine / f"{IMAGE}.json"
    subprocess.run(
        ["benchpipe", "image", "build", "--engine", engine, "--recipe", str(recipe), "--wheelhouse", str(wheelhouse),
         "--project", str(repo), "--base", BASE_IMAGE, "--out", str(record)],
        env=env, check=True,
    )
    return record


def engines() -> list[str]:
    return [e for e in ("docker", "podman") if os.environ.get("CI") == "true" or shutil.which(e)]
