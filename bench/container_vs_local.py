#!/usr/bin/env python3
"""The same training run and Offline test on docker-cpu and on local-cpu, and the cost of
starting a container job, side by side in one run.

What is measured, each repeat running the variants alternately:

* Training: one seeded digits run through `benchpipe run --target-file <target> --
  benchpipe train ...`, exactly as the workflow's rule runs it. Time to train is the
  run's own MLLOG run_start..run_stop: the measured region a submission reports.
* Offline: one LoadGen Offline performance test, the same way, with the one calibration
  (`benchpipe calibrate`, run locally) of the local training run's model: both variants serve
  the same model with the same user.conf. Reported: LoadGen's result_samples_per_second.
* Start overhead: `benchpipe run ... -- python -c "import os; os.makedirs(OUT)"` on each target; the container
  engines' figure minus local's is what a job pays to run in a container.

Ratios are docker / local medians: 1.00 means a container adds nothing to the measured
region. Timings are reported, never asserted.

Run from the repository root, in the project's environment, with dockerd running and the
base image built (containers/base/build.sh docker; podman too for its start overhead)::

    python bench/container_vs_local.py                # 3 repeats
    python bench/container_vs_local.py --images DIR   # reuse image records in DIR/images
    python bench/container_vs_local.py --smoke        # one repeat, 1 s runs: does it still run?

It builds the tensorflow-cpu image (from the pip cache, network off for the build) unless
--images names a folder that has the records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchwork import (
    BENCHMARK,
    BENCHPIPE,
    calibration,
    infer_command,
    parse_with_smoke,
    prepared_data,
    train_command,
    work_dir,
)

from benchpipe.package.system import cpu_model

REPO = Path(__file__).resolve().parents[1]
TARGETS = REPO / "config" / "targets"
IMAGE = "tensorflow-cpu"
BASE = "benchpipe/debian:bookworm"
# Local jobs find this interpreter's `benchpipe` on PATH, as the workflow's do.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--start-repeats", type=int, default=5, help="start-overhead samples per engine")
    p.add_argument("--min-duration-ms", type=int, default=3000)
    p.add_argument("--images", type=Path, default=None, help="a folder holding images/<engine>/tensorflow-cpu.json")
    p.add_argument("--keep", action="store_true")
    return parse_with_smoke(p, repeats=1, start_repeats=1, min_duration_ms=1000)


def engines_available() -> list[str]:
    found = []
    for engine in ("docker", "podman"):
        if shutil.which(engine):
            probe = ["podman", "--runtime", "runc", "image", "exists", BASE] if engine == "podman" else [
                "docker", "image", "inspect", BASE]
            if subprocess.run(probe, capture_output=True).returncode == 0:
                found.append(engine)
    return found


def build_images(work: Path, engines: list[str]) -> Path:
    wheelhouse = work / "wheelhouse" / IMAGE
    recipe = REPO / "containers" / IMAGE
    subprocess.run([BENCHPIPE, "image", "wheelhouse", "--lock", str(recipe / "requirements.lock"),
                    "--out", str(wheelhouse)], check=True)
    for engine in engines:
        subprocess.run([BENCHPIPE, "image", "build", "--engine", engine, "--recipe", str(recipe),
                        "--wheelhouse", str(wheelhouse), "--project", str(REPO), "--base", BASE,
                        "--out", str(work / "images" / engine / f"{IMAGE}.json")],
                       check=True, stdout=subprocess.DEVNULL)
    return work


def run(work: Path, images: Path, target: str, inputs: list[str], output: str, *command: str) -> float:
    argv = [BENCHPIPE, "run", "--target-file", str(TARGETS / f"{target}.yaml"), "--images", str(images / "images"),
            "--output", output]
    for path in inputs:
        argv += ["--input", path]
    started = time.perf_counter()
    subprocess.run([*argv, "--", *command], cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_to_train_s(run_dir: Path) -> float:
    from benchpipe.results.mllog_parser import read_run

    return read_run(run_dir).time_to_train_min * 60


def samples_per_second(test_dir: Path) -> float:
    from benchpipe.contracts.layout import DETAIL_LOG
    from benchpipe.results.loadgen_parser import parse_detail_log

    detail = parse_detail_log(test_dir / DETAIL_LOG)
    assert detail.get("result_validity") == "VALID", f"{test_dir}: {detail.get('result_invalid_reason')}"
    return float(detail.require("result_samples_per_second", test_dir / DETAIL_LOG))


def main() -> int:
    args = parse_args()
    engines = engines_available()
    if "docker" not in engines:
        print("docker with the base image is needed: start dockerd and run containers/base/build.sh docker", file=sys.stderr)
        return 1
    threads = os.cpu_count() or 1
    wall = time.perf_counter()
    with work_dir("bench-containers-", args.keep) as work:
        images = args.images.resolve() if args.images else build_images(work, engines)
        data = prepared_data(None, work).relative_to(work)
        results: dict[str, dict[str, list[float]]] = {t: {"train": [], "offline": [], "start": []}
                                                      for t in ("local-cpu", "docker-cpu")}
        for i in range(args.repeats):
            seed = 1 + i
            for target in ("local-cpu", "docker-cpu") if i % 2 == 0 else ("docker-cpu", "local-cpu"):
                out = f"runs/{target}/{BENCHMARK}/train/run_{i}"
                run(work, images, target, [str(data)], out, *train_command(data, out, seed, threads, target))
                results[target]["train"].append(time_to_train_s(work / out))
            model_run = Path(f"runs/local-cpu/{BENCHMARK}/train/run_{i}")
            calibrated = calibration(work, data, [model_run], "Offline", args.min_duration_ms, threads,
                                     name=f"Offline_{i}").relative_to(work)
            for target in ("local-cpu", "docker-cpu") if i % 2 == 0 else ("docker-cpu", "local-cpu"):
                out = f"runs/{target}/{BENCHMARK}/infer/Offline/performance_{i}"
                run(work, images, target, [str(data), str(model_run), str(calibrated)], out,
                    *infer_command(data, calibrated, "Offline", "performance", out, threads))
                results[target]["offline"].append(samples_per_second(work / out))
        start = {t: [] for t in ["local-cpu", *[f"{e}-cpu" for e in engines]]}
        for i in range(args.start_repeats):
            for target in start:
                out = f"start/{target}/{i}"
                # The smallest job that honours the contract: it writes its one output.
                start[target].append(run(work, images, target, [], out, "python", "-c", f"import os; os.makedirs({out!r})"))
    wall = time.perf_counter() - wall

    med = {t: {k: statistics.median(v) for k, v in r.items() if v} for t, r in results.items()}
    print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}. Threads {threads}, {args.repeats} repeats (alternating), "
          f"Offline min duration {args.min_duration_ms} ms; script wall time {wall:.0f} s.\n")
    print("| Measure | local-cpu (median) | docker-cpu (median) | Ratio docker / local | Per repeat, local / docker |")
    print("|---|---:|---:|---:|---|")
    for key, label, unit in (("train", "Time to train (MLLOG)", "s"), ("offline", "Offline samples/s", "")):
        local, docker = med["local-cpu"][key], med["docker-cpu"][key]
        pairs = ", ".join(f"{a:.2f}/{b:.2f}" if unit else f"{a:,.0f}/{b:,.0f}"
                          for a, b in zip(results["local-cpu"][key], results["docker-cpu"][key]))
        fmt = (lambda v: f"{v:.2f} s") if unit else (lambda v: f"{v:,.0f}")
        print(f"| {label} | {fmt(local)} | {fmt(docker)} | **{docker / local:.3f}** | {pairs} |")
    print("\n| `benchpipe run` of a job that only makes its output | Median s | Overhead vs local (s) | Samples (s) |")
    print("|---|---:|---:|---|")
    local_start = statistics.median(start["local-cpu"])
    for target, samples in start.items():
        m = statistics.median(samples)
        print(f"| {target} | {m:.2f} | {m - local_start:+.2f} | {', '.join(f'{s:.2f}' for s in samples)} |")
    print("\n" + json.dumps({"medians": med, "start": {t: statistics.median(s) for t, s in start.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
