"""The test tiers and the shared workflow run (conftest): which tests `--tier fast` leaves out,
that the tests on the workflow's tree run in the serial pass, and that a folder made for the
whole session is made once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import made_once


def collected(repo_root: Path, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "--collect-only", "-q", *args],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_the_fast_tier_leaves_out_the_benches_and_keeps_their_unit_tests(repo_root):
    fast = collected(repo_root, "--tier", "fast", "tests/test_benches.py")
    everything = collected(repo_root, "--tier", "all", "tests/test_benches.py")
    smokes = [t for t in everything if "smoke_mode[" in t]
    assert len(smokes) == len(list((repo_root / "bench").glob("*.py"))) - 1  # all but benchwork.py
    assert sorted(fast) == sorted(set(everything) - set(smokes)) and fast


def test_the_tests_on_the_workflows_tree_are_timing_tests(repo_root):
    timing = collected(repo_root, "-m", "timing", "tests/test_provenance.py")
    assert timing == ["tests/test_provenance.py::test_every_result_of_the_workflows_tree_names_its_config"]


class Factory:
    """What made_once asks of pytest's tmp_path_factory."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


def test_a_shared_folder_is_made_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    calls = []

    def make(out: Path) -> None:
        calls.append(out)
        (out / "made").write_text("once")

    first = made_once(Factory(tmp_path), "tree", make)
    again = made_once(Factory(tmp_path), "tree", make)
    assert first == again == tmp_path / "tree" and len(calls) == 1
    assert (again / "made").read_text() == "once"


def test_a_worker_finds_the_folder_its_neighbour_made(tmp_path, monkeypatch):
    # Under xdist each worker's basetemp is a sub-folder of the session's.
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    made = made_once(Factory(tmp_path / "popen-gw0"), "tree", lambda out: (out / "made").touch())
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    reused = made_once(Factory(tmp_path / "popen-gw1"), "tree", lambda out: pytest.fail("made twice"))
    assert made == reused == tmp_path / "tree" and (reused / "made").exists()


def test_a_failure_is_recorded_for_the_other_workers(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)

    def broken(out: Path) -> None:
        raise RuntimeError("snakemake exited 1")

    with pytest.raises(RuntimeError):
        made_once(Factory(tmp_path), "tree", broken)
    with pytest.raises(pytest.fail.Exception, match="tree failed in another worker: snakemake exited 1"):
        made_once(Factory(tmp_path), "tree", lambda out: None)
