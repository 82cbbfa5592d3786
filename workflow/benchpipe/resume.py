"""A killed workflow resumes with the same command.

Snakemake's directory lock is a set of files that a killed run (SIGKILL, a lost node)
never deletes; the next run then refuses to start until someone knows `--unlock`. Every
run of this workflow also holds a kernel lock on `.snakemake/benchpipe.lock`, which dies
with its process: whoever gets it knows no other run is alive, so any Snakemake lock left
is stale and can go. Outputs are written atomically, so what a killed run marked
incomplete is rerun (the default profile sets rerun-incomplete).
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


def hold_workflow_lock(metadata_dir: Path) -> IO | None:
    """The open lock file (keep it for the run's lifetime), or None when another run lives."""
    metadata_dir.mkdir(parents=True, exist_ok=True)
    handle = open(metadata_dir / "benchpipe.lock", "a")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        # Another run is alive (its Snakemake locks will stop this one), or the
        # filesystem cannot lock: either way its locks are not ours to remove.
        handle.close()
        return None
    for stale in (metadata_dir / "locks").glob("*.lock"):
        stale.unlink(missing_ok=True)
    return handle
