"""The reduced suite on docker-cpu beside local-cpu: killed mid-run, resumed with the same
command, and a tree in which both targets pass the same checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from engines import require_engine, running_containers

from benchpipe.package.manifest import verify_manifest

pytestmark = [pytest.mark.slow, pytest.mark.engine]
CANARY = "benchpipe-canary-93120"


def _snakemake(repo_root: Path, workdir: Path, config: Path, *extra: str) -> list[str]:
    return ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(workdir), "--cores", "2",
            "submit", "--configfile", str(config), *extra]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_containers_end_to_end(repo_root, tmp_path, cli_env):
    require_engine("docker")
    config = repo_root / ".test" / "config" / "config-containers.yaml"
    env = dict(cli_env, BENCHPIPE_CANARY=CANARY)

    # Killed while a training container runs: no container survives the workflow.
    first = subprocess.Popen(_snakemake(repo_root, tmp_path, config), env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not running_containers("docker", "docker-cpu"):
        assert first.poll() is None, "the workflow ended before any docker-cpu job started"
        assert time.monotonic() < deadline, "no docker-cpu job started within 15 minutes"
        time.sleep(1)
    time.sleep(3)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 60
    while running_containers("docker", "docker-cpu") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert running_containers("docker", "docker-cpu") == []

    # The same command again finishes the work.
    again = subprocess.run(_snakemake(repo_root, tmp_path, config), env=env, capture_output=True, text=True,
                           timeout=1800)
    assert again.returncode == 0, again.stderr[-5000:]
    tree = tmp_path / "submissions" / "ci-containers"
    assert verify_manifest(tree) > 40

    # Both targets: the same structure and the same official checks passed.
    org = tree / "benchpipe" / "training" / "benchpipe-ci"
    for layout_root in (org / "results", tree / "benchpipe" / "inference" / "closed" / "benchpipe-ci" / "results"):
        assert _files(layout_root / "local-cpu") == _files(layout_root / "docker-cpu")
    checks = json.loads((tree / "benchpipe" / "checks.json").read_text())
    checked = {c["log"]: c["passed"] for c in checks["training_compliance"]}
    for target in ("local-cpu", "docker-cpu"):
        assert checked[f"benchpipe/training/benchpipe-ci/systems/{target}.json"]
        assert all(checked[f"benchpipe/training/benchpipe-ci/results/{target}/digits/result_{i}.txt"]
                   for i in range(3))

    # Provenance: every docker-cpu result names the image it came from, the same one.
    record = json.loads((tmp_path / "images" / "docker" / "tensorflow-cpu.json").read_text())
    rows = pq.read_table(tree / "benchpipe" / "tables" / "provenance").to_pylist()
    docker_rows = [r for r in rows if r["target"] == "docker-cpu"]
    assert len(docker_rows) == 3 + 2 * 4  # 3 runs; 2 scenarios x performance, accuracy, TEST01, TEST04
    assert {(r["runtime"], r["image_id"], r["image_digest"], r["lock_sha256"]) for r in docker_rows} == {
        ("docker", record["image_id"], record["digest"], record["lock_sha256"])}
    assert json.loads(docker_rows[0]["wheels_json"]) == record["wheels"]
    assert {r["runtime"] for r in rows if r["target"] == "local-cpu"} == {"local"}
    assert checks["software"]["docker-cpu"]["image_id"] == record["image_id"]
    system = json.loads((org / "systems" / "docker-cpu.json").read_text())
    assert record["image_id"] in system["sw_notes"] and "runtime docker" in system["sw_notes"]

    # The Mobile task on LiteRT in the same image (docker-litert), its result valid and the app's.
    task = "image_classification_offline_v2"
    litert_rows = [r for r in rows if r["target"] == "docker-litert"]
    assert sorted(r["job"] for r in litert_rows) == [f"mobile/fp32/{task}/accuracy", f"mobile/fp32/{task}/performance"]
    assert {(r["runtime"], r["image_id"]) for r in litert_rows} == {("docker", record["image_id"])}
    result = json.loads((tree / "mobile" / "docker-litert" / "digits" / "fp32" / "result.json").read_text())
    (entry,) = result["results"]
    assert entry["benchmark_id"] == task and entry["performance_run"]["loadgen"]["is_result_valid"]
    assert entry["accuracy_run"]["measured_samples"] == 360

    # Reproducing a run made in the image re-runs it in that image, found here by its recorded id and digest.
    report = tmp_path / "reproduce.json"
    repro = subprocess.run(["benchpipe", "reproduce", str(tree), "--select", "docker-cpu/digits/run_0",
                            "--work", str(tmp_path / "repro"), "--keep", "--report", str(report)],
                           env=env, capture_output=True, text=True, timeout=600)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert f"MATCH: docker-cpu/digits/run_0 (in docker image {record['image_id']}" in repro.stdout, repro.stdout
    (run,) = json.loads(report.read_text())["runs"]
    assert run["status"] == "match" and record["digest"] in run["where"], run
    rerun = json.loads((tmp_path / "repro" / "docker-cpu-digits-run_0" / "run" / "provenance.json").read_text())
    assert (rerun["runtime"], rerun["image_id"]) == ("docker", record["image_id"])

    # A host variable outside the allow-list reaches neither the logs nor the tree.
    for folder in (tmp_path / "logs", tree, tmp_path / "runs"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert CANARY.encode() not in path.read_bytes(), path

    # Nothing left to do, and nothing root-owned or staged left behind.
    dry = subprocess.run(_snakemake(repo_root, tmp_path, config, "-n"), env=env, capture_output=True, text=True)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    assert not list((tmp_path / "runs").rglob(".*.staging-*"))

    # A rebuilt image reruns exactly the jobs that ran in it: docker-cpu's, not local-cpu's.
    rebuilt = subprocess.run(_snakemake(repo_root, tmp_path, config, "-n", "--forcerun", "image"),
                             env=env, capture_output=True, text=True)
    assert rebuilt.returncode == 0, rebuilt.stderr
    planned = rebuilt.stdout
    assert "output: runs/docker-cpu/digits/train/run_0" in planned
    assert "output: runs/docker-cpu/digits/infer/Offline/performance" in planned
    assert "output: runs/local-cpu" not in planned
    owners = {p.stat().st_uid for p in (tmp_path / "runs" / "docker-cpu").rglob("*")}
    assert owners == {os.getuid()}


def test_missing_base_image_stops_the_workflow_before_any_job(repo_root, tmp_path, cli_env):
    require_engine("docker")
    config = tmp_path / "config.yaml"
    config.write_text(
        "submission: {submitter: a}\ntargets: [docker-cpu]\ncontainers: {base_image: 'benchpipe/missing:none'}\n"
    )
    proc = subprocess.run(_snakemake(repo_root, tmp_path, config), env=cli_env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert ("target docker-cpu (runtime docker): docker has no base image benchpipe/missing:none: "
            "build it with `containers/base/build.sh docker`") in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "wheelhouse").exists()


GONE = {  # a well-formed record of an image the engine does not have
    "engine": "docker", "image": "tensorflow-cpu", "tag": "benchpipe/tensorflow-cpu:gone", "image_id": "sha256:" + "0" * 64,
    "digest": "sha256:" + "0" * 64, "base_image": "benchpipe/debian:bookworm", "base_image_id": "sha256:1",
    "lock_sha256": "2", "wheels": {}, "built_at": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize("record", ["{}", json.dumps(GONE)], ids=["unreadable", "image-gone"])
def test_unusable_image_record_is_rebuilt_not_fatal(repo_root, tmp_path, cli_env, record):
    """A record that does not read, or names an image the engine no longer has."""
    require_engine("docker")
    config = tmp_path / "config.yaml"
    config.write_text("submission: {submitter: a}\ntargets: [docker-cpu]\n")
    path = tmp_path / "images" / "docker" / "tensorflow-cpu.json"
    path.parent.mkdir(parents=True)
    path.write_text(record)
    proc = subprocess.run(_snakemake(repo_root, tmp_path, config, "-n"), env=cli_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "output: images/docker/tensorflow-cpu.json" in proc.stdout
    assert not path.exists()


def test_failed_image_build_stops_the_workflow_before_any_run(repo_root, tmp_path, cli_env):
    """Even the local target's runs wait for every image: a broken build leaves no run behind."""
    require_engine("docker")
    # A base image without Python: the image's `python3 -m venv` step fails.
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("broken\n")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tmp_path / "rootfs.tar"), "."], check=True)
    subprocess.run(["docker", "import", str(tmp_path / "rootfs.tar"), "benchpipe/broken:test"], check=True,
                   capture_output=True)
    try:
        config = tmp_path / "config.yaml"
        config.write_text(
            "submission: {submitter: a}\ntargets: [local-cpu, docker-cpu]\n"
            "containers: {base_image: 'benchpipe/broken:test'}\n"
        )
        proc = subprocess.run(_snakemake(repo_root, tmp_path, config), env=cli_env, capture_output=True, text=True,
                              timeout=900)
    finally:
        subprocess.run(["docker", "rmi", "--force", "benchpipe/broken:test"], capture_output=True)
    assert proc.returncode != 0
    assert "docker build of benchpipe/tensorflow-cpu" in (tmp_path / "logs" / "images" / "docker-tensorflow-cpu.log").read_text()
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "images" / "docker" / "tensorflow-cpu.json").exists()
