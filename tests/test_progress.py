"""Download progress: plain, periodic lines in a job log, with rate and ETA."""

from __future__ import annotations

import logging

from benchpipe.datasets.progress import LOG_EVERY_S, DownloadProgress

MIB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_every_interval_with_rate_and_eta(caplog):
    clock = Clock()
    progress = DownloadProgress("mnist.npz", 100 * MIB, 10 * MIB, interactive=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="benchpipe.datasets"):
        clock.now = 1.0
        progress.advance(10 * MIB)  # before the interval: no line
        clock.now = LOG_EVERY_S
        progress.advance(10 * MIB)
    lines = [r.getMessage() for r in caplog.records]
    # 20 MiB in 10 s since the resume at 10 MiB: 2 MiB/s, 70 MiB to go.
    assert lines == ["mnist.npz: 30.0 of 100.0 MiB (30%), 2.0 MiB/s, ETA 35 s"]


def test_unknown_size_reports_what_it_can():
    clock = Clock()
    progress = DownloadProgress("x.bin", None, interactive=False, clock=clock)
    clock.now = 2.0
    progress.advance(3 * MIB)
    assert progress.line() == "x.bin: 3.0 MiB, 1.5 MiB/s"
    progress.close()
