"""Every runtime says the same policy in its own syntax: checked as arguments, engine-free.

Apptainer cannot be installed here, so its lines are only ever tested this way; docker and
podman are also run for real in test_containers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchpipe.contracts.config import load_target
from benchpipe.contracts.errors import ConfigError, RuntimeSetupError
from benchpipe.runtime.apptainer import build_argv, exec_argv
from benchpipe.runtime.base import GUARD
from benchpipe.runtime.docker import container_options
from benchpipe.runtime.job import Job, OutputStaging, allowed_env
from benchpipe.runtime.podman import run_argv

TARGETS = Path(__file__).resolve().parents[1] / "config" / "targets"


@pytest.fixture
def job(tmp_path, monkeypatch) -> Job:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "digits").mkdir(parents=True)
    return Job.create(
        ["benchpipe", "train", "--out", "runs/t/digits/train/run_0"],
        [Path("data/digits")],
        Path("runs/t/digits/train/run_0"),
        {"TF_CPP_MIN_LOG_LEVEL": "2"},
        user=(1234, 5678),
    )


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_shipped_targets_load():
    names = {p.stem for p in TARGETS.glob("*.yaml")}
    assert {"local-cpu", "docker-cpu", "podman-cpu", "docker-cuda", "apptainer-cuda"} <= names
    for name in names:
        target = load_target(TARGETS / f"{name}.yaml")
        # An Android device (runtime adb) is neither the host nor a container.
        assert target.containerized == (target.runtime not in ("local", "adb"))
        assert (target.image is not None) == target.containerized


def test_container_target_without_image_is_refused(tmp_path):
    path = tmp_path / "box.yaml"
    path.write_text("name: box\nruntime: docker\ndevices: {kind: cpu, count: 1}\n")
    with pytest.raises(ConfigError, match=r"box.yaml: key 'image'"):
        load_target(path)


def test_job_paths_are_absolute_and_checked(job, tmp_path):
    assert job.workdir == tmp_path
    assert job.inputs == (tmp_path / "data" / "digits",)
    assert job.output == tmp_path / "runs" / "t" / "digits" / "train" / "run_0"
    with pytest.raises(RuntimeSetupError, match="does not exist"):
        Job.create(["true"], [Path("missing")], Path("out/x"), {})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sibling").mkdir()
    with pytest.raises(RuntimeSetupError, match="lies in the output's folder"):
        Job.create(["true"], [Path("out/sibling")], Path("out/x"), {})
    with pytest.raises(RuntimeSetupError, match="no command"):
        Job.create([], [], Path("out/x"), {})


def test_only_allowlisted_host_variables_pass():
    host = {"TF_CPP_MIN_LOG_LEVEL": "1", "AWS_SECRET_ACCESS_KEY": "x", "HOME": "/root"}
    assert allowed_env(host, ("TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS")) == {"TF_CPP_MIN_LOG_LEVEL": "1"}


def test_staging_mounts_inputs_read_only_and_only_the_output_folder_writable(job):
    with OutputStaging(job) as staging:
        mounts = staging.mounts()
        writable = [m for m in mounts if not m.read_only]
        assert len(writable) == 1 and writable[0].target == job.output.parent
        assert writable[0].source == staging.path and staging.path.name.startswith(".run_0.staging-")
        assert [(m.source, m.target) for m in mounts if m.read_only] == [(job.inputs[0], job.inputs[0])]
        # A job that exits 0 without its output is an error, not a silent success.
        with pytest.raises(RuntimeSetupError, match="wrote no"):
            staging.commit()
        (staging.path / "run_0").mkdir()
        (staging.path / "run_0" / "mllog.txt").write_text("x")
        staging.commit()
    assert (job.output / "mllog.txt").read_text() == "x"
    assert not staging.path.exists()


def test_docker_options(job):
    target = load_target(TARGETS / "docker-cpu.yaml")
    with OutputStaging(job) as staging:
        opts = container_options(target, job, staging.mounts(), "sha256:abc")
    assert opts["image"] == "sha256:abc" and opts["network_mode"] == "none"
    assert opts["user"] == "1234:5678" and opts["read_only"] is True
    assert opts["auto_remove"] and opts["stdin_open"] and not opts.get("detach")
    assert opts["environment"] == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    assert opts["mem_limit"] == "8g" and opts["shm_size"] == "1g" and "nano_cpus" not in opts
    binds = {(m["Source"], m["Target"], m["ReadOnly"]) for m in opts["mounts"]}
    assert (str(job.inputs[0]), str(job.inputs[0]), True) in binds
    assert sum(not ro for _, _, ro in binds) == 1
    assert "device_requests" not in opts

    gpu = load_target(TARGETS / "docker-cuda.yaml")
    opts = container_options(gpu, job, [], "sha256:abc")
    [request] = opts["device_requests"]
    assert request["Count"] == 1 and request["Capabilities"] == [["gpu"]]


def test_podman_argv(job):
    target = load_target(TARGETS / "podman-cpu.yaml")
    with OutputStaging(job) as staging:
        argv = run_argv(target, job, staging.mounts(), "sha256:abc")
        writable = f"{staging.path}:{job.output.parent}:rw"
    assert argv[:3] == ["podman", "--runtime", "runc"]
    assert _pairs(argv, "--network") == ["none"] and "--read-only" in argv and "--rm" in argv
    assert "--interactive" in argv  # the guard's lifeline
    assert _pairs(argv, "--user") == ["1234:5678"]
    assert _pairs(argv, "--ulimit") == ["nofile=1024:1024", "nproc=1024:1024"]
    assert _pairs(argv, "--volume") == [f"{job.inputs[0]}:{job.inputs[0]}:ro", writable]
    assert _pairs(argv, "--env") == ["TF_CPP_MIN_LOG_LEVEL=2"]
    assert argv[-len(job.command) - 1:] == ["sha256:abc", *job.command]


def test_apptainer_argv(job):
    target = load_target(TARGETS / "apptainer-cuda.yaml")
    sif = Path("/images/apptainer/tensorflow-cuda.sif")
    guarded = Job(GUARD + job.command, job.workdir, job.inputs, job.output, job.env, job.user)
    with OutputStaging(job) as staging:
        argv = exec_argv(target, guarded, staging.mounts(), sif)
        writable = f"{staging.path}:{job.output.parent}:rw"
    assert argv[:4] == ["apptainer", "exec", "--containall", "--cleanenv"]
    assert _pairs(argv, "--network") == ["none"] and "--net" in argv
    assert "--nv" in argv
    assert _pairs(argv, "--pwd") == [str(job.workdir)]
    assert _pairs(argv, "--bind") == [f"{job.inputs[0]}:{job.inputs[0]}:ro", writable]
    assert _pairs(argv, "--env") == ["TF_CPP_MIN_LOG_LEVEL=2"]
    assert argv[argv.index(str(sif)) + 1:] == [*GUARD, *job.command]
    assert build_argv(Path("/tmp/x.tar"), sif) == [
        "apptainer", "build", "--force", str(sif), "docker-archive:///tmp/x.tar"]
