"""Every bench/ script still runs: each once with --smoke (tiniest sizes, one repeat), its numbers
unread. A bench that only runs when someone wants a figure rots unseen; this is where it shows.
The helper the scripts share (bench/benchwork.py) is checked here too."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SHARED = "benchwork.py"  # the scripts' helper, not a script
# Scripts that measure an engine or a cluster against local runs, and what they need.
NEEDS = {"container_vs_local.py": "docker", "slurm_vs_local.py": "slurm"}
# Scripts that stop on an INVALID LoadGen run, which a neighbour's load can cause: they run in
# the serial pass (Makefile). The others only print their numbers, so they may run beside others.
LOADGEN_VERDICTS = {"container_vs_local.py", "infer_scenarios_vs_raw.py", "server_goals.py", "server_max_wait.py"}


def scripts() -> list:
    params = []
    for path in sorted(BENCH.glob("*.py")):
        if path.name == SHARED:
            continue
        marks = [pytest.mark.bench, pytest.mark.slow]
        need = NEEDS.get(path.name)
        if need == "docker":
            marks.append(pytest.mark.engine)
        elif need == "slurm":
            marks.append(pytest.mark.slurm)
        if path.name in LOADGEN_VERDICTS:
            marks.append(pytest.mark.timing)
        params.append(pytest.param(path.name, marks=marks, id=path.stem))
    return params


def require_slurm() -> None:
    from test_slurm import cluster_answers

    if (why := cluster_answers()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"SLURM is provisioned in CI (.ci/slurm-cluster) but unusable: {why}")
        pytest.skip(f"no SLURM cluster: {why} (start one with .ci/slurm-cluster)")


@pytest.mark.parametrize("script", scripts())
def test_the_bench_runs_in_its_smoke_mode(script, cli_env, tmp_path):
    need = NEEDS.get(script)
    if need == "docker":
        from engines import require_engine

        require_engine("docker")
    elif need == "slurm":
        require_slurm()
    # The scripts' work directories go under tmp_path, which pytest cleans up.
    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], cwd=BENCH.parent,
                          env=dict(cli_env, TMPDIR=str(tmp_path)), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{script} --smoke failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture
def benchwork(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import benchwork

    return benchwork


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size-mb", type=int, default=1024)
    return p


def test_smoke_replaces_the_defaults_and_what_is_given_still_wins(benchwork):
    assert vars(benchwork.parse_with_smoke(parser(), [], rounds=1, size_mb=1)) == {
        "rounds": 3, "size_mb": 1024, "smoke": False}
    assert vars(benchwork.parse_with_smoke(parser(), ["--smoke"], rounds=1, size_mb=1)) == {
        "rounds": 1, "size_mb": 1, "smoke": True}
    assert benchwork.parse_with_smoke(parser(), ["--smoke", "--rounds", "2"], rounds=1, size_mb=1).rounds == 2


def test_smoke_names_an_option_the_script_lacks(benchwork):
    with pytest.raises(SystemExit, match="does not have: size_gb"):
        benchwork.parse_with_smoke(parser(), ["--smoke"], rounds=1, size_gb=1)


def test_the_stage_commands_parse_as_the_command_line_defines_them(benchwork):
    """The benches' stage commands against benchpipe's own parser: a renamed option fails here."""
    from benchpipe.cli import build_parser

    commands = [
        benchwork.train_command("data/digits", "runs/t", seed=1, threads=2),
        benchwork.calibrate_command("data/digits", ["runs/t"], "Offline", "runs/c", threads=2, min_duration_ms=1000),
        benchwork.infer_command("data/digits", "runs/c", "Offline", "performance", "runs/i", threads=2),
    ]
    for command, out in zip(commands, ("runs/t", "runs/c", "runs/i")):
        args = build_parser().parse_args(command[1:])  # an unknown or missing option exits here
        assert (args.command, args.benchmark, args.threads, str(args.out)) == (command[1], "digits", 2, out)
