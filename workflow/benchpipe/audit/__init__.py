"""``benchpipe audit TREE``: everything a submission tree claims, checked from the tree alone.

Each item passes or fails with its reasons, and every item runs whatever the others found:

    manifest  every file's sha256, no file missing or extra, no link (package.manifest)
    json      every JSON file parses; config.json, systems, rows and measurements validate
              against their schemas; every file MLPerf's layouts require is there (audit.required)
    tables    every Parquet table has its schema and valid rows, and the rows that come from
              logs equal those re-derived from the logs in the tree (events, runs, inference);
              every provenance row's config_sha256 is the hash of its job's part of config.json
    scores    the olympic scores recomputed from the training logs equal scores.parquet and
              checks.json
    claims    every other number the tree states (checks.json, the scenario and implementation
              READMEs, accuracy.txt, the verify files, measurements.json) equals the logs in the
              tree or restates config.json (audit.claims)
    checkers  MLCommons' compliance checker on every training log and its system-description
              checker on every training system, the package checker and result summarizer on
              training/<org> (MLPerf benchmarks), and benchpipe's LoadGen rules on every
              detail log, with each summary log held against its detail log (audit.loadgen);
              the inference submission checker when given a checkout

A folder with no manifest that is an MLCommons training organization or inference division
folder is audited as one benchpipe did not make (audit.foreign).

Checkers run on a scratch copy, never in the tree: the tree must stay as its manifest says.
Only benchpipe and the tree are needed; the exit code is 0 only when every item passes.
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
