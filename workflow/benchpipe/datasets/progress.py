"""Download progress: a bar with rate and ETA on a terminal, a plain line now and then in a log.

Job logs are files, where a redrawn bar would be noise; a person at a terminal wants the bar.
"""

from __future__ import annotations

import logging
import sys
import time

logger = logging.getLogger("benchpipe.datasets")
LOG_EVERY_S = 10.0
_MIB = 1024 * 1024


def _eta(remaining: int, rate: float) -> str:
    if rate <= 0:
        return "unknown"
    seconds = int(remaining / rate)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class DownloadProgress:
    """Progress of one download of ``total`` bytes (None: unknown), resumed at ``done``."""

    def __init__(self, label: str, total: int | None, done: int = 0, *, interactive: bool | None = None,
                 clock=time.monotonic) -> None:
        self.label, self.total, self.done = label, total, done
        self._clock = clock
        self._started = self._last_log = clock()
        self._start_done = done
        self._bar = None
        if interactive if interactive is not None else sys.stderr.isatty():
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            self._bar = Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), transient=True)
            self._task = self._bar.add_task(label, total=total, completed=done)
            self._bar.start()

    def rate(self) -> float:
        elapsed = self._clock() - self._started
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        if self.total:
            return (f"{self.label}: {self.done / _MIB:.1f} of {self.total / _MIB:.1f} MiB "
                    f"({100 * self.done / self.total:.0f}%), {rate / _MIB:.1f} MiB/s, "
                    f"ETA {_eta(self.total - self.done, rate)}")
        return f"{self.label}: {self.done / _MIB:.1f} MiB, {rate / _MIB:.1f} MiB/s"

    def advance(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self._clock() - self._last_log >= LOG_EVERY_S:
            self._last_log = self._clock()
            logger.info("%s", self.line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
