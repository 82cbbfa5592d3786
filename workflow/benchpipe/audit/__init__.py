"""``benchpipe audit FOLDER``: everything a submission claims, checked from the folder alone.

A benchpipe tree (manifest.json, benchpipe/config.json) is audited item by item as audit.tree
says; a folder with no manifest that is an MLCommons training organization or inference
division folder is audited as one benchpipe did not make (audit.foreign). Checkers run on a
scratch copy, never in the folder; the exit code is 0 only when every item passes.
"""

from __future__ import annotations

from pathlib import Path

from benchpipe.audit.foreign import audit_foreign, is_benchpipe_tree
from benchpipe.audit.logs import detail_logs, training_logs
from benchpipe.audit.tree import ITEMS, audit_tree
from benchpipe.audit.verdicts import FAIL, PASS, SKIPPED, AuditReport, Item
from benchpipe.contracts.errors import BenchpipeError

__all__ = ["FAIL", "ITEMS", "PASS", "SKIPPED", "AuditReport", "Item", "audit", "detail_logs", "training_logs"]


def audit(tree: Path, inference_checker: Path | None = None, *, ruleset: str | None = None,
          round_: str | None = None, summary: Path | None = None) -> AuditReport:
    """``ruleset``, ``round_`` and ``summary`` are for a folder benchpipe did not make (audit.foreign)."""
    tree = Path(tree)
    if not tree.is_dir():
        raise BenchpipeError(f"{tree}: not a folder: nothing to audit")
    if not is_benchpipe_tree(tree):
        return audit_foreign(tree, inference_checker, ruleset=ruleset, round_=round_, summary=summary)
    return audit_tree(tree, inference_checker)
