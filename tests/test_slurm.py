"""The workflow on a real SLURM cluster (.ci/slurm-cluster: one node, two partitions, accounting):
every dataset step, training run and LoadGen test is an sbatch job where its resources say, the tree
is the one a local run of the same config gives, a job cancelled with scancel is rerun alone,
jobs lost with their node are requeued while the workflow waits, and a job killed at its time
limit is submitted again with more time, and a podman target's jobs run on the node in the image
built before them.

Skipped where no cluster answers, except in CI, where .ci/run starts one and its absence fails.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from benchpipe.package.manifest import verify_manifest

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

TARGET = "cluster-cpu"
# The target's runs go to `accel`, the dataset steps to `cpu` (cluster.cpu_partition).
CLUSTER_TARGET = {
    "name": TARGET, "runtime": "local", "devices": {"kind": "cpu", "count": 1},
    "slurm": {"partition": "accel", "account": "benchpipe", "cpus_per_task": 1, "mem_mb": 2000, "runtime_min": 20},
}
CONFIG = {
    "submission": {"submitter": "benchpipe-ci", "division": "open", "status": "research", "round": "ci"},
    "benchmarks": ["digits"],
    "targets": [TARGET],
    "training": {"runs": 3, "seed": 11},
    # One scenario: each further one is a calibration and two tests, three sbatch jobs of some 20 s
    # each in every workflow here; what these tests check of SLURM needs only some LoadGen jobs.
    "inference": {"scenarios": ["Offline"], "min_duration_ms": 1000},
    "cluster": {"cpu_partition": "cpu"},
}
TREE = Path("submissions") / "ci"
# Status checks every 2 s instead of the plugin's 40 (a real cluster's scheduler wants the 40).
QUICK_STATUS = ("--slurm-init-seconds-before-status-checks", "2")


def cluster_answers() -> str | None:
    """Why no cluster can take jobs here, or None when one can."""
    for tool in ("sbatch", "sinfo", "sacct", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH"
    try:
        nodes = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=20)
        accounting = subprocess.run(["sacct", "-n", "-X"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:
        return f"{exc.cmd[0]} hangs (no slurmctld, or sacct without slurmdbd)"
    if nodes.returncode != 0 or accounting.returncode != 0:
        return (nodes.stderr or accounting.stderr).strip()
    partitions = dict(line.split() for line in nodes.stdout.splitlines())
    if not {"cpu*", "accel"} <= set(partitions) or "idle" not in partitions.values():
        return f"partitions cpu and accel with an idle node expected (.ci/slurm-cluster), sinfo says {partitions}"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    if (why := cluster_answers()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"SLURM is provisioned in CI (.ci/slurm-cluster) but unusable: {why}")
        pytest.skip(f"no SLURM cluster: {why} (start one with .ci/slurm-cluster)")


def workflow_dir(root: Path, slurm: dict | None = None, target: dict | None = None, **config: dict) -> Path:
    """A workflow directory for the reduced suite; ``slurm``, ``target`` and ``config``: settings to change."""
    root.mkdir(parents=True)
    (root / "targets").mkdir()
    target = {**CLUSTER_TARGET, **(target or {}), "slurm": {**CLUSTER_TARGET["slurm"], **(slurm or {})}}
    (root / "targets" / f"{TARGET}.yaml").write_text(yaml.safe_dump(target))
    (root / "config.yaml").write_text(yaml.safe_dump({**CONFIG, **config, "targets_dir": str(root / "targets")}))
    return root


def snakemake_argv(repo_root: Path, workdir: Path, profile: str, *extra: str) -> list[str]:
    return ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(workdir),
            "--profile", str(repo_root / "profiles" / profile), *extra, "submit",
            "--configfile", str(workdir / "config.yaml")]


def submit(repo_root: Path, workdir: Path, env: dict, profile: str, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_argv(repo_root, workdir, profile, *extra), env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


def sacct_lines(job_ids: list[str] | tuple[str, ...], fields: str) -> list[str]:
    """One "|"-separated line of ``fields`` per job, as SLURM's accounting recorded them."""
    return subprocess.run(["sacct", "-n", "-X", "-P", "-o", fields, "-j", ",".join(job_ids)],
                          capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()


def sacct(*job_ids: str) -> dict[str, tuple[str, str]]:
    """Job id -> (partition, state), as SLURM's accounting recorded them."""
    return {job: (partition, state.split()[0]) for job, partition, state in
            (line.split("|") for line in sacct_lines(job_ids, "JobID,Partition,State"))}


def slurm_logs(workdir: Path) -> dict[str, list[str]]:
    """Rule -> the SLURM job ids of its jobs, from the plugin's logs (profiles/slurm keeps them all)."""
    logs = workdir / ".snakemake" / "slurm_logs"
    found: dict[str, list[str]] = {}
    for log in sorted(logs.glob("rule_*/*/*.log")):
        found.setdefault(log.parent.parent.name.removeprefix("rule_"), []).append(log.stem)
    return found


def provenance_rows(workdir: Path) -> list[dict]:
    return pq.read_table(workdir / TREE / "benchpipe" / "tables" / "provenance").to_pylist()


def tree_files(workdir: Path) -> list[str]:
    return sorted(p.relative_to(workdir / TREE).as_posix() for p in (workdir / TREE).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory, repo_root, cli_env) -> Path:
    workdir = workflow_dir(tmp_path_factory.mktemp("slurm") / "work")
    submit(repo_root, workdir, cli_env, "slurm", *QUICK_STATUS)
    return workdir


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory, repo_root, cli_env) -> Path:
    workdir = workflow_dir(tmp_path_factory.mktemp("local") / "work")
    submit(repo_root, workdir, cli_env, "local")
    return workdir


def test_every_job_went_through_sbatch_to_its_partition(slurm_run):
    jobs = slurm_logs(slurm_run)
    # Each dataset step, training run and LoadGen test is its own job; bookkeeping stays local.
    assert {rule: len(ids) for rule, ids in jobs.items()} == {
        "datasets": 1, "describe_system": 1, "train": 3, "calibrate": 1, "infer": 2}
    recorded = sacct(*(job for ids in jobs.values() for job in ids))
    for rule, ids in jobs.items():
        for job in ids:
            assert recorded[job] == ("cpu" if rule == "datasets" else "accel", "COMPLETED"), (rule, job)

    # Every result names the SLURM job that made it, and that job's log says so too.
    rows = provenance_rows(slurm_run)
    by_job = {row["job"]: row["slurm_job_id"] for row in rows}
    assert sorted(by_job[f"train/run_{i}"] for i in range(3)) == sorted(jobs["train"])
    assert sorted(v for k, v in by_job.items() if k.startswith("infer/")) == sorted(jobs["infer"])
    for run in range(3):
        log = (slurm_run / "logs" / "train" / TARGET / "digits" / f"run_{run}.log").read_text()
        assert f"SLURM job {by_job[f'train/run_{run}']} on " in log and "(partition accel)" in log


def test_the_tree_is_the_one_a_local_run_gives(slurm_run, local_run, cli_env):
    assert tree_files(slurm_run) == tree_files(local_run)
    assert {row["slurm_job_id"] for row in provenance_rows(local_run)} == {None}
    for workdir in (slurm_run, local_run):
        tree = workdir / TREE
        assert verify_manifest(tree) > 20
        audit = subprocess.run(["benchpipe", "audit", str(tree)], env=cli_env, capture_output=True, text=True,
                               timeout=600)
        assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-3000:]
    # The same checks passed the same way, whichever way the jobs ran.
    checks = [json.loads((w / TREE / "benchpipe" / "checks.json").read_text()) for w in (slurm_run, local_run)]
    assert checks[0]["training_compliance"] == checks[1]["training_compliance"]


def test_a_cancelled_job_is_the_only_one_run_again(cluster, tmp_path, repo_root, cli_env):
    workdir = workflow_dir(tmp_path / "work")
    proc = subprocess.Popen(snakemake_argv(repo_root, workdir, "slurm", *QUICK_STATUS), env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        cancelled, run = wait_for_running_job("rule_train_wildcards_")
        subprocess.run(["scancel", cancelled], check=True, timeout=60)
        out, _ = proc.communicate(timeout=600)  # the plugin alone would wait forever (benchpipe.runtime.slurm_plugin)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, out[-3000:]
    assert sacct(cancelled)[cancelled][1] == "CANCELLED"
    # Nothing half-written stands as done; the runs that finished beside it are kept.
    train = workdir / "runs" / TARGET / "digits" / "train"
    assert sorted(p.name for p in train.iterdir() if not p.name.startswith(".")) == sorted(
        f"run_{i}" for i in range(3) if str(i) != run)
    finished = {p.name: (p / "mllog.txt").read_bytes() for p in train.iterdir() if not p.name.startswith(".")}

    # The README's command again, no flags: that run alone trains again, then what follows it.
    again = submit(repo_root, workdir, cli_env, "slurm", *QUICK_STATUS)
    ran = again.stdout + again.stderr
    stats = ran[ran.index("Job stats:"):].split("\n\n")[0]
    counts = {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()[3:] if len(line.split()) == 2}
    assert counts == {"train": 1, "calibrate": 1, "infer": 2, "parse": 1, "package": 1, "submit": 1, "total": 7}, stats
    assert {name: (train / name / "mllog.txt").read_bytes() for name in finished} == finished
    rows = {row["job"]: row["slurm_job_id"] for row in provenance_rows(workdir)}
    assert rows[f"train/run_{run}"] not in (None, cancelled)
    assert sacct(rows[f"train/run_{run}"])[rows[f"train/run_{run}"]] == ("accel", "COMPLETED")
    assert verify_manifest(workdir / TREE) > 20


def wait_for_running_job(comment: str, timeout: float = 300) -> tuple[str, str]:
    """The id and last wildcard of the first of our running jobs whose comment (the plugin's
    rule_<rule>_wildcards_<values>) starts with ``comment``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-u", getpass.getuser(), "-t", "RUNNING", "-o", "%i %k"],
                             capture_output=True, text=True, timeout=60).stdout
        for job, text in (line.split(" ", 1) for line in out.splitlines()):
            if text.startswith(comment):
                return job, text.rsplit("_", 1)[1]
        time.sleep(0.5)
    raise AssertionError(f"no job {comment}* of ours ran within {timeout} s")


def test_jobs_lost_with_their_node_run_again_while_the_workflow_waits(cluster, tmp_path, repo_root, cli_env):
    workdir = workflow_dir(tmp_path / "work")
    node = subprocess.run(["sinfo", "-h", "-N", "-p", "accel", "-o", "%N"], capture_output=True, text=True,
                          check=True).stdout.split()[0]
    proc = subprocess.Popen(snakemake_argv(repo_root, workdir, "slurm", *QUICK_STATUS), env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lost, _ = wait_for_running_job("rule_infer_wildcards_")
        # The node goes down under its running jobs (NODE_FAIL), then an admin brings it back.
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=benchpipe-test"], check=True)
        node_back(node)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        node_back(node)
    # profiles/slurm has SLURM requeue the lost jobs: the same workflow finishes, nobody reruns it.
    assert proc.returncode == 0, out[-5000:]
    assert f"Job '{lost}' failed with status 'NODE_FAIL', but requeue is enabled" in out
    assert sacct(lost)[lost] == ("accel", "COMPLETED")
    assert out.count("rule train:") == 3  # nothing that had finished ran again
    rows = {row["job"]: row["slurm_job_id"] for row in provenance_rows(workdir)}
    assert lost in rows.values()
    assert verify_manifest(workdir / TREE) > 20


def node_back(node: str, timeout: float = 120) -> None:
    """Return ``node`` to service, as an admin would after a failure, and wait until it takes jobs."""
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"], capture_output=True,
                               text=True).stdout.split()
        if state and all(s in ("idle", "mixed", "allocated") for s in state):
            return
        time.sleep(1)
    raise AssertionError(f"node {node} did not come back within {timeout} s")


def test_a_job_killed_at_its_time_limit_runs_again_with_more_time(cluster, tmp_path, repo_root, cli_env):
    # One LoadGen test (SingleStream: it lasts its min_duration, plus the job's start) outlasts its
    # target's one-minute limit: SLURM kills it (TIMEOUT), the infer rule's retry submits it
    # again with twice the time (three times on a third attempt), and the same workflow finishes.
    # The workflow asked for that test alone: what follows it is the other tests' to check.
    workdir = workflow_dir(tmp_path / "work", slurm={"runtime_min": 1},
                           inference={"scenarios": ["SingleStream"], "min_duration_ms": 75_000})
    argv = snakemake_argv(repo_root, workdir, "slurm", *QUICK_STATUS)
    target = f"runs/{TARGET}/digits/infer/SingleStream/performance"
    argv[argv.index("submit")] = target
    proc = subprocess.run(argv, env=cli_env, capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    logs = workdir / ".snakemake" / "slurm_logs" / "rule_infer"
    attempts = {folder.name: sorted((log.stem for log in folder.glob("*.log")), key=int) for folder in logs.iterdir()}
    performance = next(jobs for name, jobs in attempts.items() if "performance" in name)
    states = sacct(*performance)
    assert len(performance) >= 2 and [states[job][1] for job in performance] == (
        ["TIMEOUT"] * (len(performance) - 1) + ["COMPLETED"]), states
    assert f"SLURM-job '{performance[0]}' failed, SLURM status is: 'TIMEOUT'" in out
    # Each attempt asked for its attempt's multiple of the target's minute (sacct's Timelimit).
    limits = sacct_lines(performance, "JobID,Timelimit")
    assert sorted(limits) == sorted(f"{job}|00:0{attempt}:00" for attempt, job in enumerate(performance, 1)), limits
    # The run that stands is the last attempt's, and says so.
    assert json.loads((workdir / target / "provenance.json").read_text())["slurm_job_id"] == performance[-1]
    assert "Result is : VALID" in (workdir / target / "mlperf_log_summary.txt").read_text()


@pytest.mark.engine
def test_a_podman_targets_jobs_run_on_the_node_in_the_image_built_before_them(cluster, tmp_path, repo_root,
                                                                                cli_env):
    # What most clusters allow besides Apptainer: a daemonless engine on the compute node. The
    # image is built where Snakemake runs (a local rule), once, before the first job that needs it.
    from engines import IMAGE, require_engine, running_containers

    require_engine("podman")
    podman = yaml.safe_load((repo_root / "config" / "targets" / "podman-cpu.yaml").read_text())
    workdir = workflow_dir(
        tmp_path / "work", target={key: podman[key] for key in ("runtime", "image", "oci_runtime", "ulimits")},
        inference={"scenarios": ["Offline"], "min_duration_ms": 1000},
    )
    submit(repo_root, workdir, cli_env, "slurm", *QUICK_STATUS)
    jobs = slurm_logs(workdir)
    assert "image" not in jobs and "wheelhouse" not in jobs, jobs
    assert {rule: len(ids) for rule, ids in jobs.items()} == {
        "datasets": 1, "describe_system": 1, "train": 3, "calibrate": 1, "infer": 2}
    recorded = sacct(*(job for ids in jobs.values() for job in ids))
    assert {state for _, state in recorded.values()} == {"COMPLETED"}, recorded

    # Every job that ran in a container ran in that image, on the node, under its SLURM job.
    record_path = workdir / "images" / "podman" / f"{IMAGE}.json"
    record = json.loads(record_path.read_text())
    rows = provenance_rows(workdir)
    assert len(rows) == 3 + 2 and {(r["runtime"], r["image_id"], r["image_digest"]) for r in rows} == {
        ("podman", record["image_id"], record["digest"])}
    assert sorted(r["slurm_job_id"] for r in rows) == sorted(jobs["train"] + jobs["infer"])
    built = record_path.stat().st_mtime
    in_image = [job for rule in ("train", "calibrate", "infer") for job in jobs[rule]]
    starts = sacct_lines(in_image, "Start")
    # sacct's start times are whole seconds, in the node's (here: this host's) local time.
    assert built < min(datetime.fromisoformat(start).timestamp() for start in starts) + 1
    assert verify_manifest(workdir / TREE) > 10
    assert running_containers("podman", TARGET) == []
