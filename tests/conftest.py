"""Shared fixtures: the prepared digits dataset and one trained run, built once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_server import Served, serve

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent


THREADS = 2  # TensorFlow's thread counts for every in-process test


def pytest_configure(config: pytest.Config) -> None:
    # TensorFlow fixes its thread counts when it first runs an op, whichever test that is;
    # pinning them first lets training tests (threads=THREADS) run after any other TF use.
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    """Environment in which `benchpipe` and `snakemake` are this interpreter's."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


@pytest.fixture(scope="session")
def submitted(tmp_path_factory, cli_env) -> Path:
    """A working directory where `snakemake submit` ran on the reduced config (.test/): once per session.

    Its tree is submissions/ci. Tests that change what lies there work on a copy, except the
    end-to-end test, which checks that the tree survives what it does to runs/.
    """
    import subprocess

    workdir = tmp_path_factory.mktemp("workflow")
    proc = subprocess.run(
        ["snakemake", "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2", "submit",
         "--configfile", str(REPO_ROOT / ".test" / "config" / "config.yaml")],
        env=cli_env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
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
