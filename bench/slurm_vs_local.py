#!/usr/bin/env python3
"""The reduced suite through SLURM against the same suite run locally: what a job pays to go
through sbatch, in seconds per job, side by side in one run.

Each variant runs the reduced suite of tests/test_slurm.py (digits, three training runs, Offline,
open division; before 2026-12-06 Offline and SingleStream) in a fresh directory, with the same target file (its slurm
section asks for one CPU per job, so both variants run two jobs at a time on two cores):

* local: `snakemake --profile profiles/local submit`
* slurm: `snakemake --profile profiles/slurm submit`, each dataset step, training run and
  LoadGen test an sbatch job; once with the profile as shipped (the plugin's first status
  check after 40 s, then every 40 s or more, as a real cluster's scheduler wants) and once with
  status checks every 2 s (`--slurm-init-seconds-before-status-checks 2`), which shows what
  SLURM itself costs.

Reported: wall time per variant, and (slurm - local) / number of SLURM jobs. Needs a cluster
that takes jobs with partitions cpu and accel (.ci/slurm-cluster starts one). Run from the
repository root, in the project's environment::

    python bench/slurm_vs_local.py           # about 8 minutes
    python bench/slurm_vs_local.py --smoke   # local and 2 s status checks, the dataset job only: does it run?
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from benchwork import parse_with_smoke  # noqa: E402
from test_slurm import CLUSTER_TARGET, CONFIG, TARGET, cluster_answers  # noqa: E402


def run(work: Path, profile: str, *extra: str, targets: tuple[str, ...] = ("submit",)) -> tuple[float, int]:
    work.mkdir(parents=True)
    (work / "targets").mkdir()
    (work / "targets" / f"{TARGET}.yaml").write_text(yaml.safe_dump(CLUSTER_TARGET))
    (work / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "targets_dir": str(work / "targets")}))
    argv = ["snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work), "--profile",
            str(REPO / "profiles" / profile), *extra, *targets, "--configfile", str(work / "config.yaml")]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{profile} run failed:\n{proc.stderr[-3000:]}")
    submitted = len(re.findall(r"submitted with SLURM jobid", proc.stdout + proc.stderr))
    return seconds, submitted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The profile as shipped waits 40 s before its first status check: the smoke leaves it out.
    parser.add_argument("--no-shipped", action="store_true", help="skip the run with the profile as shipped")
    # The smoke runs one job: the whole suite through sbatch and locally is test_slurm.py's to run.
    parser.add_argument("--dataset-only", action="store_true", help="run the suite's dataset job only")
    args = parse_with_smoke(parser, no_shipped=True, dataset_only=True)
    if (why := cluster_answers()) is not None:
        sys.exit(f"no SLURM cluster: {why}")
    if shutil.which("snakemake") is None:
        sys.exit("snakemake is not on PATH: activate .venv")
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        work = Path(tmp)
        targets = ("data/digits",) if args.dataset_only else ("submit",)
        local, _ = run(work / "local", "local", targets=targets)
        shipped, jobs = (None, None) if args.no_shipped else run(work / "slurm", "slurm", targets=targets)
        quick, quick_jobs = run(work / "slurm-quick", "slurm", "--slurm-init-seconds-before-status-checks", "2",
                                targets=targets)
    assert jobs in (None, quick_jobs), (jobs, quick_jobs)
    jobs = quick_jobs
    ran = "datasets" if args.dataset_only else "datasets, describe_system, 3 train, 1 calibrate, 2 infer"
    print(f"reduced suite: {jobs} SLURM jobs ({ran}); bookkeeping rules local in both")
    print(f"  local                      {local:7.1f} s")
    if shipped is not None:
        print(f"  slurm, profile as shipped  {shipped:7.1f} s   overhead {(shipped - local) / jobs:5.1f} s per job")
    print(f"  slurm, status every 2 s    {quick:7.1f} s   overhead {(quick - local) / jobs:5.1f} s per job")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
