"""A killed workflow resumes with the same command.

Snakemake's directory lock is a set of files that a killed run (SIGKILL, a lost node)
never deletes; the next run then refuses to start until someone knows `--unlock`. Every
run of this workflow also holds a kernel lock on `.snakemake/benchpipe.lock`, which dies
with its process: whoever gets it knows no other run is alive, so any Snakemake lock left
is stale and can go. Outputs are written atomically, so what a killed run marked
incomplete is rerun (the default profile sets rerun-incomplete).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from benchpipe.contracts.errors import BenchpipeError


class WorkflowRunning(BenchpipeError):
    """Another run of the workflow is alive in the same directory."""


def hold_workflow_lock(metadata_dir: Path) -> IO | None:
    """The open lock file (keep it for the run's lifetime), or None where the filesystem cannot lock.

    Raises WorkflowRunning, naming its process, when another run holds it: Snakemake's own
    refusal would then advise `--unlock`, which a live run's outputs must never get.
    """
    metadata_dir.mkdir(parents=True, exist_ok=True)
    path = metadata_dir / "benchpipe.lock"
    handle = open(path, "a+")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            raise WorkflowRunning(
                f"{path}: the workflow is already running in {metadata_dir.resolve().parent} ({holder}); "
                "wait for it to end, or stop it, then run the same command again") from None
        # A filesystem without locks: Snakemake's own locks are all there is, and not ours to remove.
        return None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    for stale in (metadata_dir / "locks").glob("*.lock"):
        stale.unlink(missing_ok=True)
    return handle
