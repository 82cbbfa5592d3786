"""Runs a container job's command and ends it when the host side goes away.

`python -m benchpipe.runtime.guard -- CMD...` is the first process of every container job.
The host side (`benchpipe run`) keeps the container's stdin open for as long as it lives.
When it dies, even by SIGKILL, the engine closes that stdin: the guard then kills the
command, the container exits and the engine removes it. No container outlives its job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

EXIT_HOST_GONE = 137


def _watch_stdin(child: subprocess.Popen) -> None:
    while os.read(0, 4096):
        pass
    if child.poll() is None:
        print("benchpipe guard: the host side went away; stopping the job", file=sys.stderr, flush=True)
        os.killpg(child.pid, signal.SIGKILL)
        os._exit(EXIT_HOST_GONE)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m benchpipe.runtime.guard -- CMD...", file=sys.stderr)
        return 2
    # Its own process group, so that the kill reaches whatever the command started.
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    threading.Thread(target=_watch_stdin, args=(child,), daemon=True).start()

    def forward(signum, _frame):
        if child.poll() is None:
            os.killpg(child.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
