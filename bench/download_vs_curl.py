#!/usr/bin/env python3
"""benchpipe's download of one large file against curl's, over loopback HTTP, side by side.

A generated file (random bytes, default 1 GiB) is served by a small HTTP server in its own
process (sendfile, so the server is not the bottleneck and does not share the client's
GIL). Each round downloads it once with ``curl -s -o FILE URL`` and once with
``fetch_source`` (verified against the sha256, as every dataset fetch is), alternating
which goes first. Each client runs in its own process; the times are the clients' own
transfer times (curl's ``time_total``; the ``fetch_source`` call), so neither pays for
interpreter or process start-up. benchpipe's peak memory is the child's ru_maxrss.

Ratios are benchpipe / curl throughput: 1.00 means verifying costs nothing over a plain
download. sha256 runs on one core, so a verified download cannot be faster than that
core hashes: the script measures that rate too and prints it as the ceiling. Timings are
reported, never asserted.

Run from the repository root, in the project's environment::

    python bench/download_vs_curl.py                  # 1 GiB, 3 rounds
    python bench/download_vs_curl.py --size-mb 256 --rounds 5

The file and each download live in a temporary directory (under $TMPDIR), which needs
about twice the file's size free.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchwork import parse_with_smoke

MB = 1_000_000
_MIB = 1024 * 1024
_GENERATE_CHUNK = 8 * _MIB
_CHILD = """
import json, sys, time
from pathlib import Path
from benchpipe.datasets.fetch import fetch_source
from benchpipe.contracts.benchmark import Source
url, sha256, size, dest = sys.argv[1:]
started = time.perf_counter()
fetch_source(Source("data.bin", url, sha256, size=int(size)), Path(dest))
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the server process's own mode
    return parse_with_smoke(p, size_mb=1, rounds=1)


def generate(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` a chunk at a time; return their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(_GENERATE_CHUNK, left))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_rate(seconds: float = 1.0) -> float:
    """MB/s of hashlib's sha256 on this core, over blocks of the size fetch hands it."""
    from benchpipe.datasets.fetch import _CHUNK

    block = os.urandom(_CHUNK)
    digest = hashlib.sha256()
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(16):
            digest.update(block)
        done += 16 * len(block)
    return done / elapsed / MB


def serve_forever(path: Path) -> None:
    """Serve ``path`` at every GET with sendfile; print the port once listening."""
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            with open(path, "rb") as f:
                self.connection.sendfile(f)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def curl_seconds(url: str, out: Path) -> float:
    result = subprocess.run(["curl", "-s", "-f", "-o", str(out), "-w", "%{time_total}", url],
                            check=True, capture_output=True, text=True)
    return float(result.stdout)


def benchpipe_run(url: str, sha256: str, size: int, dest: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one fetch_source in a fresh process."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, url, sha256, str(size), str(dest)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    # wait4, not wait: the rusage of this one child, not of every child this script reaped.
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"benchpipe fetch failed with exit code {child.returncode}")
    return json.loads(output)["seconds"], usage.ru_maxrss * 1024 / MB


def main() -> int:
    args = parse_args()
    if args.serve:
        serve_forever(args.serve)
        return 0
    if not shutil.which("curl"):
        print("curl is needed on PATH", file=sys.stderr)
        return 1
    size = args.size_mb * _MIB
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    server = None
    try:
        served = work / "served.bin"
        sha256 = generate(served, size)
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(served)],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/data.bin"
        rates: dict[str, list[float]] = {"curl": [], "benchpipe": []}
        peaks: list[float] = []
        for i in range(args.rounds):
            for client in ("curl", "benchpipe") if i % 2 == 0 else ("benchpipe", "curl"):
                dest = work / client
                dest.mkdir()
                if client == "curl":
                    seconds = curl_seconds(url, dest / "data.bin")
                else:
                    seconds, peak = benchpipe_run(url, sha256, size, dest)
                    peaks.append(peak)
                rates[client].append(size / seconds / MB)
                # Deleted at once: its dirty pages are dropped, not written back during the next client's turn.
                shutil.rmtree(dest)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    ceiling = sha256_rate()
    med = {client: statistics.median(r) for client, r in rates.items()}
    ratios = [b / c for b, c in zip(rates["benchpipe"], rates["curl"])]
    print(f"Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python "
          f"{platform.python_version()}. File {args.size_mb} MiB over loopback HTTP, {args.rounds} rounds "
          f"(alternating). sha256 on one core: {ceiling:,.0f} MB/s (ceiling of a verified download).\n")
    print("| Client | Median MB/s | Per round (MB/s) |")
    print("|---|---:|---|")
    for client, label in (("curl", "`curl -s -o FILE URL`"), ("benchpipe", "`fetch_source` (sha256-verified)")):
        print(f"| {label} | {med[client]:,.0f} | {', '.join(f'{r:,.0f}' for r in rates[client])} |")
    print(f"| **Ratio benchpipe / curl** (of medians) | **{med['benchpipe'] / med['curl']:.3f}** | "
          f"{', '.join(f'{r:.3f}' for r in ratios)} |")
    print(f"\nbenchpipe peak memory (ru_maxrss): {max(peaks):.0f} MB (per round: "
          f"{', '.join(f'{p:.0f}' for p in peaks)})")
    print("\n" + json.dumps({"median_mb_s": med, "ratio": med["benchpipe"] / med["curl"],
                             "peak_rss_mb": max(peaks), "sha256_mb_s": ceiling}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
