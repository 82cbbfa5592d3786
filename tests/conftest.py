"""Shared fixtures: the prepared digits dataset and one trained run, built once per session."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from http_server import Served, serve

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent


THREADS = 2  # TensorFlow's thread counts for every in-process test


# The tiers (README, Makefile): `--tier fast` (`make test`) leaves out tests of these kinds
# (markers, pyproject.toml); `--tier all` (`make test-all`, and plain pytest) runs them too.
FULL_TIER_ONLY = ("engine", "slurm", "resnet", "llm", "kill", "bench", "rerun", "mobile_tasks")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--tier", choices=("fast", "all"), default="all",
                     help=f"fast: leave out tests marked {', '.join(FULL_TIER_ONLY)} (default: all)")


@pytest.hookimpl(tryfirst=True)  # before -m selects: it must see the timing marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # The workflow run's LoadGen tests must be VALID: calibrated while a neighbour loaded
        # the cores, a MultiStream test later ran out of queries. So it runs alone, with the
        # tests on its tree.
        if "submitted" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timing)
    if config.getoption("tier") != "fast":
        return
    kept, left = [], []
    for item in items:
        (left if any(item.get_closest_marker(kind) for kind in FULL_TIER_ONLY) else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    # TensorFlow fixes its thread counts when it first runs an op, whichever test that is;
    # pinning them first lets training tests (threads=THREADS) run after any other TF use.
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


# The Mobile app's files (tasks.pbtxt, its proto, the result schema): the copy beside the
# repository, or the checkout this names. Workflows fetch them at the pinned commit through
# the download cache: tests put the copy's verified bytes there first, as an air-gapped user
# imports them, so that no test needs the network.
MOBILE_APP_ENV = "BENCHPIPE_MOBILE_APP"


def mobile_app_dir() -> Path:
    path = Path(os.environ.get(MOBILE_APP_ENV) or REPO_ROOT.parent / "shared" / "third_party" / "mlcommons-mobile")
    if not (path / "flutter" / "assets" / "tasks.pbtxt").is_file():
        message = f"no copy of MLCommons' Mobile app files at {path} (set {MOBILE_APP_ENV})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mobile_app() -> Path:
    """The Mobile app's files, their bytes also in the download cache (checked against the pinned sha256)."""
    import dataclasses

    from benchpipe.datasets.fetch import cached_source, default_cache_dir
    from benchpipe.mlcommons.mobile_app import app_sources

    path = mobile_app_dir()
    for source in app_sources((path.as_uri(),)):
        cached_source(dataclasses.replace(source, url=source.mirrors[0], mirrors=()), default_cache_dir())
    return path


@pytest.fixture(scope="session")
def cli_env(mobile_app) -> dict[str, str]:
    """Environment in which `benchpipe` and `snakemake` are this interpreter's."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this session sees (the session's own folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    # Each worker's basetemp is a sub-folder of the session's; without xdist, basetemp's parent
    # holds earlier sessions too, and a tree from one of them must not be taken for this one's.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """``make(folder)`` run by the first worker that asks; the others wait for it and reuse its folder.

    A failure is recorded, so that every other worker fails with its message at once rather
    than trying again for as long.
    """
    root = shared_dir(tmp_path_factory)
    out, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if failed.exists():
            pytest.fail(f"{name} failed in another worker: {failed.read_text()}")
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            try:
                make(out)
            except BaseException as exc:
                failed.write_text(str(exc)[-5000:] or type(exc).__name__)
                raise
            done.touch()
    return out


def run_reduced_workflow(workdir: Path, env: dict[str, str]) -> None:
    import subprocess

    proc = subprocess.run(
        ["snakemake", "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2", "submit",
         "--configfile", str(REPO_ROOT / ".test" / "config" / "config.yaml")],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]


@pytest.fixture(scope="session")
def submitted(tmp_path_factory, cli_env) -> Path:
    """A working directory where `snakemake submit` ran on the reduced config (.test/): once per session.

    Its tree is submissions/ci. The workflow runs once, whatever the number of xdist workers;
    each worker gets its own copy of the working directory (times kept, so Snakemake finds
    it up to date), which its tests share: those that change what lies there work on a
    further copy, except the end-to-end test, which checks that the tree survives what it
    does to runs/, and the audit and report rules, which write beside the tree.
    """
    # BENCHPIPE_TEST_WORKFLOW: a folder where that run already happened, reused as it is, for
    # quick runs of single tests while working on the audit or the report; never set in CI.
    given = os.environ.get("BENCHPIPE_TEST_WORKFLOW")
    pristine = Path(given) if given else made_once(tmp_path_factory, "workflow",
                                                    lambda out: run_reduced_workflow(out, cli_env))
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(pristine, workdir, symlinks=True, dirs_exist_ok=True)
    return workdir


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory) -> Path:
    from benchpipe.contracts import registry
    from benchpipe.datasets.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare(registry.get("digits"), out)
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, digits_data) -> Path:
    """One successful digits run: runs/local-cpu/digits/train/run_0 with mllog.txt and model/."""
    from benchpipe.contracts import registry
    from benchpipe.train.harness import Submission, train_run

    runs = tmp_path_factory.mktemp("runs")
    out = runs / "local-cpu" / "digits" / "train" / "run_0"
    outcome = train_run(
        registry.get("digits"), digits_data, out, seed=7,
        submission=Submission("benchpipe", "local-cpu", "closed", "research"), threads=THREADS,
    )
    assert outcome.status == "success", outcome
    return out


@pytest.fixture
def served() -> Iterator[Served]:
    """A fault-injecting HTTP server on 127.0.0.1 (see http_server.py)."""
    yield from serve()


@pytest.fixture
def mirror() -> Iterator[Served]:
    """A second server: the same file at another address."""
    yield from serve()


# MLCommons' inference submission checker is not a package: tests run the copy beside the
# repository (../shared/third_party/mlcommons-inference), or the checkout this names.
INFERENCE_CHECKOUT_ENV = "BENCHPIPE_INFERENCE_CHECKOUT"


@pytest.fixture(scope="session")
def inference_checkout() -> Path:
    path = Path(os.environ.get(INFERENCE_CHECKOUT_ENV) or REPO_ROOT.parent / "shared" / "third_party" / "mlcommons-inference")
    if not (path / "tools" / "submission" / "submission_checker" / "main.py").is_file():
        message = f"no MLCommons inference checkout at {path} (set {INFERENCE_CHECKOUT_ENV})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # provisioned in CI: a missing checker is a failure, not a skip
        pytest.skip(message)
    return path
