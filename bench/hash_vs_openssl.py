#!/usr/bin/env python3
"""benchpipe's manifest hashing against two parallel `openssl dgst -sha256`, side by side in one run.

A tree of mixed file sizes (default 2 GiB: per group one 256 MiB file, one 32 MiB, eight
4 MiB, 64 of 512 KiB and 256 of 16 KiB) is generated in a temporary directory and removed
afterwards. Each round times, in an order that rotates each round:

* benchpipe: ``write_manifest`` on the tree (walk, sha256 of every file on every core,
  root hash, manifest.json) in a fresh process; the time is the call's own, so interpreter
  start-up is not counted, and the child's ru_maxrss is its peak memory;
* benchpipe on one core (``workers=1``), to show what the threads bring;
* openssl: two ``openssl dgst -sha256`` processes started together, each over half of the
  files (halves of equal bytes), timed from the first start until both have exited.

Page cache: the whole tree is read once before the first round, so with a tree smaller
than free memory both sides read from memory; with a larger one (``--big``) both read from
disk, and rotating the order keeps either from always finding the other's pages
cached. The ratio is benchpipe / openssl throughput (goal: at least 0.9). Timings are
reported, never asserted.

Run from the repository root, in the project's environment::

    python bench/hash_vs_openssl.py                 # 2 GiB, 3 rounds
    python bench/hash_vs_openssl.py --size-gb 1 --rounds 5
    python bench/hash_vs_openssl.py --big           # 10 GiB

The tree lives under $TMPDIR, which needs its size free.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchwork import RESULT_PREFIX, parse_with_smoke, work_dir

MB = 1_000_000
_MIB = 1024 * 1024
# (size, count) per group of the generated tree: big files dominate the bytes, small ones the count.
_GROUP = ((256 * _MIB, 1), (32 * _MIB, 1), (4 * _MIB, 8), (512 * 1024, 64), (16 * 1024, 256))
_GROUP_BYTES = sum(size * count for size, count in _GROUP)
_CHILD = """
import json, sys, time
from pathlib import Path
from benchpipe.package.manifest import write_manifest
started = time.perf_counter()
manifest = write_manifest(Path(sys.argv[1]), workers=int(sys.argv[3]) or None)
print(sys.argv[2] + json.dumps({"seconds": time.perf_counter() - started, "files": len(manifest["files"])}))
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-gb", type=float, default=2.0, help="tree size in GiB (default 2)")
    p.add_argument("--big", action="store_true", help="a 10 GiB tree (overrides --size-gb)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parse_with_smoke(p, size_gb=0.01, rounds=1)


def generate(tree: Path, size: int) -> list[Path]:
    """Groups of files until ``size`` bytes; contents differ per file (a counter ahead of random bytes)."""
    block = os.urandom(8 * _MIB)
    files: list[Path] = []
    groups = max(1, round(size / _GROUP_BYTES))
    for group in range(groups):
        folder = tree / f"group-{group:03d}"
        folder.mkdir(parents=True)
        for size_each, count in _GROUP:
            for i in range(count):
                path = folder / f"{size_each // 1024}k-{i:03d}.bin"
                _write(path, size_each, block, f"{group}/{i}".encode())
                files.append(path)
    return files


def _write(path: Path, size: int, block: bytes, tag: bytes) -> None:
    with open(path, "wb") as out:
        out.write(tag)
        left = size - len(tag)
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def read_once(files: list[Path]) -> None:
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.read(8 * _MIB):
                pass


def halves(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Two lists of about equal bytes: each file, largest first, goes to the lighter one."""
    parts: tuple[list[Path], list[Path]] = ([], [])
    load = [0, 0]
    for path in sorted(files, key=lambda p: p.stat().st_size, reverse=True):
        i = 0 if load[0] <= load[1] else 1
        parts[i].append(path)
        load[i] += path.stat().st_size
    return parts


def openssl_seconds(parts: tuple[list[Path], list[Path]]) -> float:
    started = time.perf_counter()
    procs = [subprocess.Popen(["openssl", "dgst", "-sha256", *map(str, part)], stdout=subprocess.DEVNULL)
             for part in parts]
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - started
    if any(codes):
        raise SystemExit(f"openssl dgst failed: exit codes {codes}")
    return seconds


def benchpipe_run(tree: Path, workers: int) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of write_manifest on ``workers`` threads (0: every core) in a fresh process."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tree), RESULT_PREFIX, str(workers)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    # wait4, not wait: the rusage of this one child, not of every child this script reaped.
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"write_manifest failed with exit code {os.waitstatus_to_exitcode(status)}")
    line = next(line for line in output.splitlines() if line.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX):])["seconds"], usage.ru_maxrss * 1024 / MB


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    args = parse_args()
    if not shutil.which("openssl"):
        print("openssl is needed on PATH", file=sys.stderr)
        return 1
    size = int((10.0 if args.big else args.size_gb) * 1024 * _MIB)
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < size + 2 * 1024 * _MIB:
        print(f"{tempfile.gettempdir()} has {free / _MIB / 1024:.1f} GiB free; the tree needs "
              f"{size / _MIB / 1024:.1f} GiB and 2 GiB to spare", file=sys.stderr)
        return 1
    # A kill (SIGTERM, a closed terminal) unwinds like an exception, so the tree is removed then too.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    sides = ("openssl", "benchpipe", "benchpipe-1")
    rates: dict[str, list[float]] = {side: [] for side in sides}
    peaks: list[float] = []
    with work_dir("bench-hash-", args.keep) as work:
        tree = work / "tree"
        files = generate(tree, size)
        total = sum(f.stat().st_size for f in files)
        read_once(files)
        parts = halves(files)
        for i in range(args.rounds):
            # Each round starts one further along the cycle, so no side always follows the same one.
            for side in sides[i % 3:] + sides[:i % 3]:
                if side == "openssl":
                    seconds = openssl_seconds(parts)
                else:
                    seconds, peak = benchpipe_run(tree, 1 if side == "benchpipe-1" else 0)
                    peaks.append(peak)
                rates[side].append(total / seconds / MB)

    med = {side: statistics.median(r) for side, r in rates.items()}
    ratios = [b / o for b, o in zip(rates["benchpipe"], rates["openssl"])]
    print(f"Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python "
          f"{platform.python_version()} ({ssl.OPENSSL_VERSION}). Tree {total / _MIB / 1024:.2f} GiB in "
          f"{len(files)} files, read once before the first round; {args.rounds} rounds (order rotated).\n")
    print("| Hasher | Median MB/s | Per round (MB/s) |")
    print("|---|---:|---|")
    for side, label in (("openssl", "2 x `openssl dgst -sha256` (half the bytes each)"),
                        ("benchpipe", "`write_manifest` (sha256 on every core)"),
                        ("benchpipe-1", "`write_manifest(workers=1)` (one core, for reference)")):
        print(f"| {label} | {med[side]:,.0f} | {', '.join(f'{r:,.0f}' for r in rates[side])} |")
    print(f"| **Ratio benchpipe / openssl** (of medians) | **{med['benchpipe'] / med['openssl']:.3f}** | "
          f"{', '.join(f'{r:.3f}' for r in ratios)} |")
    print(f"\nbenchpipe peak memory (ru_maxrss): {max(peaks):.0f} MB (per round: "
          f"{', '.join(f'{p:.0f}' for p in peaks)})")
    print("\n" + json.dumps({"median_mb_s": med, "ratio": med["benchpipe"] / med["openssl"],
                             "peak_rss_mb": max(peaks), "bytes": total, "files": len(files)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
