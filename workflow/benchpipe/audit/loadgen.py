"""The audit's cross-check of LoadGen's two logs of every performance run in the tree.

Packaging refuses such runs already (package.inference.check_scenario); the audit repeats the
check on the tree as it is, since both logs may have been edited after packaging.
"""

from __future__ import annotations

from pathlib import Path

from benchpipe.audit.verdicts import Item
from benchpipe.infer.crosscheck import check_run_logs


def crosscheck_logs(copy: Path, item: Item, logs: dict[tuple[str, str, str, str], Path]) -> None:
    """Each performance run's summary against its detail log, and the detail log's claimed min
    duration against its own timestamps; ``logs`` as audit.detail_logs gives them, under ``copy``."""
    for (_, _, _, mode), detail in logs.items():
        if mode == "accuracy":  # an accuracy run's summary holds no result to compare
            continue
        run = detail.parent
        item.check(f"LoadGen summary against detail log, claimed duration against timestamps: {run.relative_to(copy)}")
        for problem in check_run_logs(run):
            item.fail(problem.replace(str(copy) + "/", ""))
