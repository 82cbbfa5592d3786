"""A workflow killed with SIGKILL resumes with the README's command: killed in the dataset step, in
training and in inference, it finishes, keeps what it had verified, and its tree verifies. A second
run beside a live one is refused, and says why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from benchpipe.package.manifest import verify_manifest

pytestmark = [pytest.mark.slow, pytest.mark.kill]

CONFIG = {
    "submission": {"submitter": "benchpipe-ci", "division": "open", "status": "research", "round": "ci"},
    "benchmarks": ["digits"],
    "targets": ["local-cpu"],
    "training": {"runs": 3, "seed": 11},
    "inference": {"scenarios": ["Offline", "SingleStream"], "min_duration_ms": 1000},
}
TRAIN = Path("runs/local-cpu/digits/train")


def readme_command(repo_root: Path) -> list[str]:
    """What `make submit` runs once .venv is there: the Makefile's own recipe, so the two agree."""
    recipe = subprocess.run(["make", "-s", "-n", "-C", str(repo_root), "submit"], capture_output=True, text=True,
                            check=True, env={**os.environ, "MAKEFLAGS": ""}).stdout.strip().splitlines()[-1]
    command = recipe.split("snakemake", 1)[1].split()
    assert command == ["--cores", "all", "submit"], recipe
    return ["snakemake", *command]


def started(workdir: Path, repo_root: Path, env: dict) -> subprocess.Popen:
    argv = readme_command(repo_root)
    argv[1:1] = ["-s", str(repo_root / "Snakefile"), "--directory", str(workdir)]
    return subprocess.Popen([*argv, "--configfile", str(workdir / "config.yaml")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 600) -> None:
    """SIGKILL the whole workflow (snakemake and its jobs, one process group) once ``ready``."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the workflow ended before {what}: {proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def outputs(folder: Path) -> list[str]:
    """What stands as an output in ``folder`` (temporary names start with a dot)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_killed_at_three_points_the_same_command_finishes(tmp_path, repo_root, cli_env):
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    data = workdir / "data" / "digits"

    # 1. In the dataset step: no dataset stands half-written.
    proc = started(workdir, repo_root, cli_env)
    kill_when(proc, lambda: (workdir / "logs" / "datasets" / "digits.log").exists(), "dataset step")
    assert not data.exists() or (data / "manifest.json").is_file()

    # 2. In training, with one run done and the next under way: the one done is kept, and
    # what the killed job left is not mistaken for a run.
    train_logs = workdir / "logs" / "train" / "local-cpu" / "digits"
    proc = started(workdir, repo_root, cli_env)
    kill_when(proc, lambda: len(outputs(workdir / TRAIN)) == 1 and len(outputs(train_logs)) == 2,
              "second training run")
    assert len(outputs(workdir / TRAIN)) == 1, outputs(workdir / TRAIN)
    done = outputs(workdir / TRAIN)[0]
    kept = (workdir / TRAIN / done / "mllog.txt").read_bytes()

    # 3. In inference, with a second run started beside the live one: refused, in words.
    proc = started(workdir, repo_root, cli_env)
    infer_logs = workdir / "logs" / "infer" / "local-cpu" / "digits"

    def inference_started() -> bool:
        return infer_logs.is_dir() and any(infer_logs.rglob("*.log"))

    deadline = time.monotonic() + 600
    while not inference_started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    beside = started(workdir, repo_root, cli_env)
    said, _ = beside.communicate(timeout=300)
    assert beside.returncode != 0 and "the workflow is already running in" in said, said[-3000:]
    assert f"pid {proc.pid} on " in said and "--unlock" not in said, said[-3000:]
    kill_when(proc, inference_started, "LoadGen test")

    # 4. The same command, no flags: it finishes, and the tree verifies.
    proc = started(workdir, repo_root, cli_env)
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out[-5000:]
    assert (workdir / TRAIN / done / "mllog.txt").read_bytes() == kept
    assert outputs(workdir / TRAIN) == ["run_0", "run_1", "run_2"]
    assert verify_manifest(workdir / "submissions" / "ci") > 20
    verify = subprocess.run(["benchpipe", "verify", str(workdir / "submissions" / "ci")], env=cli_env,
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_a_live_runs_lock_names_it_and_a_killed_runs_locks_go(tmp_path):
    from benchpipe.pipeline.lock import hold_workflow_lock

    metadata = tmp_path / ".snakemake"
    (metadata / "locks").mkdir(parents=True)
    (metadata / "locks" / "0.input.lock").write_text("left by a killed run\n")
    held = hold_workflow_lock(metadata)
    assert held is not None and not any((metadata / "locks").iterdir())
    # Another process (a lock is per process): refused, with the holder named.
    probe = ("import sys; from pathlib import Path; from benchpipe.pipeline.lock import hold_workflow_lock; "
             "hold_workflow_lock(Path(sys.argv[1]))")
    refused = subprocess.run([sys.executable, "-c", probe, str(metadata)], capture_output=True, text=True)
    assert refused.returncode != 0 and "WorkflowRunning" in refused.stderr
    assert f"already running in {tmp_path} (pid {os.getpid()} on " in refused.stderr
    held.close()  # as the kernel does when a run is killed
    assert subprocess.run([sys.executable, "-c", probe, str(metadata)]).returncode == 0
