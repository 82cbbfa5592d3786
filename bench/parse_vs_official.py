#!/usr/bin/env python3
"""MLLOG parsing: benchpipe's parser against MLCommons' official one, side by side in one run.

What is measured, on one generated MLLOG training log (what RunLog writes: the submission
header, then per epoch block/epoch start and stop and an eval_accuracy with metadata, with a
line of framework chatter every few records), each variant in a fresh child process,
alternating the variants each round:

* official: mlperf_logging's compliance-checker parser (``mlp_parser.parse_file`` for the
  ruleset the package checker runs), which returns every record in memory;
* ours: ``parse_mllog``, which also returns every record (as Events) in memory;
* ours-parquet: the log to the training-events Parquet table as ``benchpipe parse`` writes it
  (``write_training_events``: ``event_batches`` streamed in batches, the run's summary derived
  on the way, the log's sha256): log to table with flat memory, whatever the log's size; a log
  of 32 MB or more is read by one process per CPU, a range of lines each;
* ours-parquet-1cpu: the same in one process.

Reported per variant: the median wall time of the parse alone (imports excluded), MB/s, the
child's peak resident memory (VmHWM) with its baseline after imports, its worker processes'
largest, and the peak of the processes' PSS summed (pages they share after fork counted
once); then the ratio official / ours (goal: at least 10). With ``--big`` a second log of ``--big-mb`` (1 GB) is
parsed by ours-parquet alone for its peak memory (goal: under 300 MB); the official parser,
which holds every line of the log in memory and is quadratic in line length, is not run on it.
Timings are reported, never asserted.

Run from the repository root, in the project's environment::

    PYTHONPATH=workflow python bench/parse_vs_official.py                 # 100 MB, 3 rounds; ~3 min
    PYTHONPATH=workflow python bench/parse_vs_official.py --mb 20 --rounds 2
    PYTHONPATH=workflow python bench/parse_vs_official.py --big           # adds the 1 GB peak memory
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchwork import RESULT_PREFIX, parse_with_smoke, run_child, work_dir

VARIANTS = ("official", "ours", "ours-parquet", "ours-parquet-1cpu")
BATCH_ROWS = 50_000  # rows per Parquet write: bounds memory, large enough to compress well
HEADER = (("submission_benchmark", "resnet"), ("submission_org", "benchpipe"),
          ("submission_platform", "local-cpu"), ("submission_division", "closed"),
          ("submission_status", "research"), ("seed", 7), ("global_batch_size", 1632),
          ("opt_base_learning_rate", 10.5), ("train_samples", 1281167))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=100, help="size of the compared log, in MB")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--big", action="store_true", help="also the peak memory of ours-parquet on a --big-mb log")
    p.add_argument("--big-mb", type=int, default=1000)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--log", type=Path, help=argparse.SUPPRESS)
    return parse_with_smoke(p, mb=1, rounds=1, big_mb=2)


# --- the log ------------------------------------------------------------------------------------

def _line(rng: random.Random, time_ms: int, key: str, value: Any, event_type: str, **metadata: Any) -> str:
    body = {"namespace": "", "time_ms": time_ms, "event_type": event_type, "key": key, "value": value,
            "metadata": {"file": "/work/workflow/benchpipe/train/harness.py", "lineno": rng.randint(100, 400),
                         **metadata}}
    return ":::MLLOG " + json.dumps(body) + "\n"


def write_log(path: Path, megabytes: int) -> int:
    """A run's log of about ``megabytes``; returns its record count."""
    rng = random.Random(0)
    limit, size, records, time_ms, epoch = megabytes * 1_000_000, 0, 0, 1_700_000_000_000, 0
    with open(path, "w", encoding="utf-8") as f:
        for key, value in HEADER:
            size += f.write(_line(rng, time_ms, key, value, "POINT_IN_TIME"))
            records += 1
        # A run that benchpipe's parser accepts: run_start once, before the epochs and run_stop.
        size += f.write(_line(rng, time_ms, "run_start", None, "INTERVAL_START"))
        records += 1
        while size < limit:
            epoch += 1
            time_ms += rng.randint(5_000, 9_000)
            lines = [
                _line(rng, time_ms, "block_start", None, "INTERVAL_START", first_epoch_num=epoch, epoch_count=1),
                _line(rng, time_ms, "epoch_start", None, "INTERVAL_START", epoch_num=epoch),
                f"Epoch {epoch}: 785/785 - loss: {rng.random():.4f} - accuracy: {rng.random():.4f}\n",
                _line(rng, time_ms + 4_000, "epoch_stop", None, "INTERVAL_END", epoch_num=epoch),
                _line(rng, time_ms + 4_100, "eval_accuracy", rng.random(), "POINT_IN_TIME",
                      epoch_num=epoch, samples_count=epoch * 1_281_167),
                _line(rng, time_ms + 4_200, "block_stop", None, "INTERVAL_END", first_epoch_num=epoch),
            ]
            size += f.write("".join(lines))
            records += 5
        f.write(_line(rng, time_ms + 9_000, "run_stop", None, "INTERVAL_END", status="success"))
    return records + 1


# --- one variant, in a child process ------------------------------------------------------------

def peak_rss_mb() -> float:
    """The process's high-water resident memory so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM")


def parse_official(log: Path) -> int:
    import importlib

    from benchpipe.contracts.rounds import TRAINING_RULESET

    parser = importlib.import_module(
        f"mlperf_logging.compliance_checker.mlp_parser.ruleset_{TRAINING_RULESET.replace('.', '')}"
    )
    loglines, errors = parser.parse_file(str(log))
    if errors:
        raise RuntimeError(f"official parser: {len(errors)} lines failed, e.g. {errors[0]}")
    return len(loglines)


def parse_ours(log: Path) -> int:
    from benchpipe.results.mllog_parser import parse_mllog

    return len(parse_mllog(log))


def parse_ours_parquet(log: Path, workers: int | None = None) -> int:
    """Log to the training-events table as `benchpipe parse` writes it (write_training_events):
    streamed, a batch at a time; a log this large read by one process per CPU unless ``workers``."""
    import pyarrow.parquet as pq

    from benchpipe.results import mllog_parser
    from benchpipe.results.tables import EVENTS_SCHEMA, EVENTS_WRITE_OPTIONS, write_training_events

    if workers is not None:
        mllog_parser.PARALLEL_MIN_BYTES = 0 if workers > 1 else 1 << 62
    out = log.with_suffix(".parquet")
    with pq.ParquetWriter(out, EVENTS_SCHEMA, **EVENTS_WRITE_OPTIONS) as writer:
        run = write_training_events(writer, "local-cpu", "resnet", 0, log)
    if run["status"] != "success":
        raise RuntimeError(f"{log}: the run reads as {run['status']}")
    rows = pq.read_metadata(out).num_rows
    out.unlink()
    return rows


class PssSampler(threading.Thread):
    """The largest sum of PSS (proportional set size: pages shared after fork counted once in
    all) of this process and its children, sampled every 20 ms: the parse's memory as a whole,
    worker processes included."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self._done = threading.Event()

    @staticmethod
    def _pss_kib(pid: int | str) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        except OSError:  # a worker that has just exited
            pass
        return 0

    def _sample(self) -> float:
        children = []
        for task in Path("/proc/self/task").iterdir():
            try:
                children += (task / "children").read_text().split()
            except OSError:
                pass
        return (self._pss_kib("self") + sum(self._pss_kib(pid) for pid in children)) / 1024

    def run(self) -> None:
        while not self._done.wait(0.02):
            self.peak_mb = max(self.peak_mb, self._sample())

    def stop(self) -> None:
        self.peak_mb = max(self.peak_mb, self._sample())
        self._done.set()
        self.join()


def report_variant(variant: str, log: Path) -> int:
    parse = {"official": parse_official, "ours": parse_ours, "ours-parquet": parse_ours_parquet,
             "ours-parquet-1cpu": lambda log: parse_ours_parquet(log, workers=1)}[variant]
    # The imports every variant needs, before the baseline: the parse alone is measured.
    import mlperf_logging.compliance_checker.mlp_parser  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import benchpipe.results.tables  # noqa: F401

    baseline = peak_rss_mb()
    sampler = PssSampler()
    sampler.start()
    start = time.perf_counter()
    records = parse(log)
    seconds = time.perf_counter() - start
    sampler.stop()
    # The worker processes' peak too (ru_maxrss: the largest of the children waited for, in KiB).
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {"variant": variant, "seconds": seconds, "records": records,
              "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline, "workers_peak_rss_mb": workers_peak,
              "peak_pss_mb": sampler.peak_mb}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# --- the parent: rounds, then a table -----------------------------------------------------------

def measure(log: Path, variant: str, work: Path, round_: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--log", str(log)]
    return run_child(cmd, work, variant, round_)


def table(results: dict[str, list[dict]], megabytes: float) -> list[str]:
    rows = ["| variant | median s | MB/s | records/s | peak RSS MB | RSS after imports MB | worker peak RSS MB "
            "| peak PSS MB, all processes |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, runs in results.items():
        median = statistics.median(r["seconds"] for r in runs)
        rows.append(f"| {variant} | {median:.2f} | {megabytes / median:.1f} | {runs[0]['records'] / median:,.0f} "
                    f"| {max(r['peak_rss_mb'] for r in runs):.0f} | {runs[0]['baseline_rss_mb']:.0f} "
                    f"| {max(r['workers_peak_rss_mb'] for r in runs):.0f} | {max(r['peak_pss_mb'] for r in runs):.0f} |")
    return rows


def main() -> int:
    args = parse_args()
    if args.child:
        return report_variant(args.child, args.log)
    print(f"python {platform.python_version()}, {platform.machine()}, {platform.processor() or 'cpu'}")
    with work_dir("parse-bench-", args.keep) as work:
        log = work / "mllog.txt"
        records = write_log(log, args.mb)
        megabytes = log.stat().st_size / 1e6
        print(f"\nlog: {megabytes:.0f} MB, {records:,} records, {args.rounds} rounds\n")
        results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for round_ in range(args.rounds):
            for variant in (VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]):
                result = measure(log, variant, work, round_)
                if result["records"] != records:
                    sys.exit(f"{variant} read {result['records']} records, the log holds {records}")
                results[variant].append(result)
        print("\n".join(table(results, megabytes)))
        medians = {v: statistics.median(r["seconds"] for r in runs) for v, runs in results.items()}
        print(f"\nofficial / ours: {medians['official'] / medians['ours']:.1f}x; "
              f"official / ours-parquet: {medians['official'] / medians['ours-parquet']:.1f}x; "
              f"official / ours-parquet-1cpu: {medians['official'] / medians['ours-parquet-1cpu']:.1f}x")
        if args.big:
            log.unlink()
            big = work / "big.txt"
            records = write_log(big, args.big_mb)
            megabytes = big.stat().st_size / 1e6
            result = measure(big, "ours-parquet", work, 0)
            print(f"\nbig log: {megabytes:.0f} MB, {records:,} records, ours-parquet once\n")
            print("\n".join(table({"ours-parquet": [result]}, megabytes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
