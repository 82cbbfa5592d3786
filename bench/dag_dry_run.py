#!/usr/bin/env python3
"""`snakemake -n submit` on a DAG of about 1,000 jobs, against Snakemake alone on a DAG of the
same size and shape, side by side in one run.

The workflow's DAG: many copies of the local-cpu target, the closed division (four scenarios,
each with performance, accuracy, TEST01 and TEST04) and enough training runs per target that
the DAG has ``--jobs`` jobs or more. The baseline: a Snakefile with nothing but rules of the same
fan-in (one input per run, one per scenario and mode, one per target), no config, no checks:
what Snakemake itself needs to parse, build and print a DAG that size. The difference is what
benchpipe adds before a cluster run starts (config schema, target files, preflight checks,
resources per job). Goal: the workflow's dry run in 2.5 s or less.

Run from the repository root, in the project's environment::

    python bench/dag_dry_run.py                  # 5 repeats, about 1,000 jobs
    python bench/dag_dry_run.py --jobs 2000
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from benchwork import parse_with_smoke

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ["Offline", "SingleStream", "MultiStream", "Server"]
MODES = ["performance", "accuracy", "TEST01", "TEST04"]
TARGETS = 20


def workflow_config(work: Path, runs: int) -> Path:
    targets = work / "targets"
    targets.mkdir()
    local = yaml.safe_load((REPO / "config" / "targets" / "local-cpu.yaml").read_text())
    names = [f"node-{i:02d}" for i in range(TARGETS)]
    for name in names:
        (targets / f"{name}.yaml").write_text(yaml.safe_dump({**local, "name": name}))
    config = {
        "submission": {"submitter": "bench", "division": "closed", "round": "bench"},
        "benchmarks": ["digits"], "targets": names, "targets_dir": str(targets),
        "training": {"runs": runs}, "inference": {"scenarios": SCENARIOS},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def plain_snakefile(work: Path, runs: int) -> Path:
    """The same DAG shape with nothing of benchpipe in it."""
    text = f'''
TARGETS = [f"node-{{i:02d}}" for i in range({TARGETS})]
RUNS = range({runs})
SCENARIOS = {SCENARIOS!r}
MODES = {MODES!r}

rule submit:
    input: "tree.verified"

rule package:
    input: "tables", expand("runs/{{t}}/system.json", t=TARGETS),
           expand("runs/{{t}}/train/run_{{r}}", t=TARGETS, r=RUNS),
           expand("runs/{{t}}/infer/{{s}}/{{m}}", t=TARGETS, s=SCENARIOS, m=MODES)
    output: "tree.verified"
    shell: "touch {{output}}"

rule parse:
    input: expand("runs/{{t}}/train/run_{{r}}", t=TARGETS, r=RUNS),
           expand("runs/{{t}}/infer/{{s}}/{{m}}", t=TARGETS, s=SCENARIOS, m=MODES)
    output: directory("tables")
    shell: "mkdir {{output}}"

rule datasets:
    output: directory("data")
    shell: "mkdir {{output}}"

rule describe_system:
    output: "runs/{{t}}/system.json"
    shell: "touch {{output}}"

rule train:
    input: "data"
    output: directory("runs/{{t}}/train/run_{{r}}")
    shell: "mkdir -p {{output}}"

rule calibrate:
    input: expand("runs/{{{{t}}}}/train/run_{{r}}", r=RUNS)
    output: directory("runs/{{t}}/calibrate/{{s}}")
    shell: "mkdir -p {{output}}"

rule infer:
    input: "runs/{{t}}/calibrate/{{s}}"
    output: directory("runs/{{t}}/infer/{{s}}/{{m}}")
    shell: "mkdir -p {{output}}"
'''
    path = work / "Snakefile"
    path.write_text(text)
    return path


def dry_run(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)$", proc.stdout + proc.stderr, re.M)
    if total is None:
        sys.exit(f"no job count in the dry run of {' '.join(argv)}")
    return seconds, int(total.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the DAG, at least (default 1000)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parse_with_smoke(parser, jobs=1, repeats=1)  # the smallest DAG: 3 runs
    per_target = 1 + len(SCENARIOS) * (1 + len(MODES))  # describe_system, calibrate, infer
    runs = max(3, -(-(args.jobs - 4) // TARGETS) - per_target)
    snakemake = shutil.which("snakemake")
    if snakemake is None:
        sys.exit("snakemake is not on PATH: activate .venv")
    with tempfile.TemporaryDirectory(prefix="bench-dag-") as tmp:
        work = Path(tmp)
        (work / "workflow").mkdir()
        (work / "plain").mkdir()
        config = workflow_config(work, runs)
        ours = [snakemake, "-s", str(REPO / "Snakefile"), "--directory", str(work / "workflow"), "-n", "submit",
                "--configfile", str(config)]
        plain = [snakemake, "-s", str(plain_snakefile(work / "plain", runs)), "--directory", str(work / "plain"),
                 "-n", "submit"]
        dry_run(ours), dry_run(plain)  # warm the file cache and the bytecode
        timings: dict[str, list[float]] = {"benchpipe": [], "plain": []}
        jobs = {}
        for _ in range(args.repeats):
            for name, argv in (("benchpipe", ours), ("plain", plain)):
                seconds, jobs[name] = dry_run(argv)
                timings[name].append(seconds)
    median = {name: statistics.median(values) for name, values in timings.items()}
    print(f"DAG: {jobs['benchpipe']} jobs through benchpipe's workflow ({TARGETS} targets x {runs} runs, closed "
          f"division), {jobs['plain']} in the plain Snakefile; {args.repeats} repeats, alternating")
    for name in ("benchpipe", "plain"):
        print(f"  {name:9s} snakemake -n: median {median[name]:.2f} s  (min {min(timings[name]):.2f}, "
              f"max {max(timings[name]):.2f})")
    print(f"  benchpipe / plain: {median['benchpipe'] / median['plain']:.2f}; benchpipe adds "
          f"{median['benchpipe'] - median['plain']:.2f} s; goal <= 2.5 s: "
          f"{'met' if median['benchpipe'] <= 2.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
