"""Container jobs against real engines: what a job can and cannot do, and what it leaves.

Each test runs `benchpipe run` as the rules do, in the tensorflow-cpu image built here from
the hash lock and wheelhouse with the network off.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from engines import build_image, require_engine, running_containers, write_target

pytestmark = [pytest.mark.slow, pytest.mark.engine]
ENGINES = ["docker", "podman"]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheelhouse") / "tensorflow-cpu"


@pytest.fixture(scope="session", params=ENGINES)
def engine_work(request, tmp_path_factory, repo_root, cli_env, wheelhouse):
    """(engine, a work folder holding images/<engine>/tensorflow-cpu.json)."""
    engine = request.param
    require_engine(engine)
    work = tmp_path_factory.mktemp(f"{engine}-work")
    build_image(engine, repo_root, work, wheelhouse, cli_env)
    return engine, work


def run_job(work: Path, target: Path, env, *command: str, inputs=(), output="out/job", timeout=300):
    argv = ["benchpipe", "run", "--target-file", str(target), "--images", str(work / "images"),
            "--output", output]
    for path in inputs:
        argv += ["--input", path]
    return subprocess.run([*argv, "--", *command], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


def python(code: str) -> tuple[str, ...]:
    return ("python", "-c", code)


def test_job_output_lands_and_provenance_names_the_image(engine_work, cli_env, tmp_path):
    engine, work = engine_work
    target = write_target(tmp_path, engine, f"{engine}-ok")
    proc = run_job(work, target, cli_env, *python(
        "import os, json, benchpipe.provenance as p; os.makedirs('out/job');"
        "json.dump(p.collect(), open('out/job/provenance.json', 'w'))"
    ))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((work / "images" / engine / "tensorflow-cpu.json").read_text())
    prov = json.loads((work / "out" / "job" / "provenance.json").read_text())
    assert prov["runtime"] == engine and prov["runtime_version"]
    assert prov["image_id"] == record["image_id"] and prov["image_digest"] == record["digest"]
    assert prov["lock_sha256"] == record["lock_sha256"] and prov["wheels"] == record["wheels"]
    assert prov["tensorflow_version"].startswith("2.21")
    assert not list((work / "out").glob(".job.staging-*"))


def test_no_network(engine_work, cli_env, tmp_path):
    engine, work = engine_work
    # A server on the host's loopback: a container with the host's network would reach it.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        target = write_target(tmp_path, engine, f"{engine}-net")
        proc = run_job(work, target, cli_env, *python(
            "import os, socket, json; os.makedirs('out/job'); r = {'ifaces': sorted(os.listdir('/sys/class/net'))}\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3); r['reached'] = True\n"
            "except OSError as e:\n"
            "    r['reached'] = False\n"
            "json.dump(r, open('out/job/net.json', 'w'))"
        ))
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    result = json.loads((work / "out" / "job" / "net.json").read_text())
    assert result == {"ifaces": ["lo"], "reached": False}


def test_dataset_is_read_only(engine_work, cli_env, tmp_path):
    engine, work = engine_work
    data = work / "data" / "set"
    data.mkdir(parents=True, exist_ok=True)
    (data / "shard.parquet").write_bytes(b"verified")
    target = write_target(tmp_path, engine, f"{engine}-ro")
    proc = run_job(work, target, cli_env, *python("open('data/set/shard.parquet', 'ab').write(b'x')"),
                   inputs=["data/set"], output="out/ro")
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr
    assert (data / "shard.parquet").read_bytes() == b"verified"
    assert not (work / "out" / "ro").exists()
    # Nor can it write anywhere else but its output: the image's own files are read-only too.
    proc = run_job(work, target, cli_env, *python("open('/opt/benchpipe/x', 'w')"), output="out/ro")
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr


def test_only_allowlisted_variables_reach_the_job(engine_work, cli_env, tmp_path):
    engine, work = engine_work
    target = write_target(tmp_path, engine, f"{engine}-env")
    env = dict(cli_env, BENCHPIPE_TEST_SECRET="do-not-leak-4471", TF_ENABLE_ONEDNN_OPTS="0")
    proc = run_job(work, target, env, *python(
        "import os, json; os.makedirs('out/env'); json.dump(dict(os.environ), open('out/env/env.json', 'w'))"
    ), output="out/env")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads((work / "out" / "env" / "env.json").read_text())
    assert "BENCHPIPE_TEST_SECRET" not in seen
    assert "do-not-leak-4471" not in (work / "out" / "env" / "env.json").read_text()
    assert seen["TF_ENABLE_ONEDNN_OPTS"] == "0" and seen["HOME"] == "/tmp"


def test_files_belong_to_the_invoking_user(engine_work, tmp_path, monkeypatch):
    """As root (as in CI) the job must still run as the invoking user: here, uid 4321."""
    from benchpipe.contracts.config import load_target
    from benchpipe.runtime import for_target
    from benchpipe.runtime.base import ImageRef
    from benchpipe.runtime.images import ImageRecord
    from benchpipe.runtime.job import Job

    engine, work = engine_work
    monkeypatch.chdir(work)
    target = load_target(write_target(tmp_path, engine, f"{engine}-uid"))
    record = ImageRecord.read(work / "images" / engine / "tensorflow-cpu.json")
    job = Job.create(
        ["sh", "-c", "mkdir -p out/uid/sub && touch out/uid/sub/file && id -u > out/uid/uid"],
        [], Path("out/uid"), {"HOME": "/tmp"}, user=(4321, 4321),
    )
    assert Job.create(["true"], [], Path("out/x"), {}).user == (os.getuid(), os.getgid())
    assert for_target(target).run(target, job, ImageRef(record.image_id)) == 0
    produced = [work / "out" / "uid", work / "out" / "uid" / "sub", work / "out" / "uid" / "sub" / "file"]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in produced} == {(4321, 4321)}
    assert (work / "out" / "uid" / "uid").read_text().strip() == "4321"


def test_killed_workflow_leaves_no_container(engine_work, cli_env, tmp_path):
    engine, work = engine_work
    name = f"{engine}-kill"
    target = write_target(tmp_path, engine, name)
    argv = ["benchpipe", "run", "--target-file", str(target), "--images", str(work / "images"),
            "--output", "out/kill", "--", "python", "-c", "import time; time.sleep(600)"]
    proc = subprocess.Popen(argv, cwd=work, env=cli_env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not running_containers(engine, name):
        assert proc.poll() is None and time.monotonic() < deadline, "the container never started"
        time.sleep(0.5)
    time.sleep(2)  # past start-up: the guard and the job are running
    os.killpg(proc.pid, signal.SIGKILL)  # as a killed workflow's process group is
    proc.wait()
    deadline = time.monotonic() + 60
    while running_containers(engine, name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert running_containers(engine, name) == []
    assert not (work / "out" / "kill").exists()


def test_missing_image_record_is_one_clear_line(engine_work, cli_env, tmp_path):
    engine, work = engine_work
    target = write_target(tmp_path, engine, f"{engine}-rec")
    proc = subprocess.run(
        ["benchpipe", "run", "--target-file", str(target), "--images", str(tmp_path / "none"),
         "--output", "out/x", "--", "true"],
        cwd=work, env=cli_env, capture_output=True, text=True,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"target {engine}-rec" in lines[0] and "no image record" in lines[0]
