"""Everything checked before a tree is written: schemas, the official compliance checker,
LoadGen validity and accuracy, and that tables agree with the raw logs they came from."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchpipe.errors import ValidationError
from benchpipe.hashing import sha256_file
from benchpipe.package.official import TRAINING_RULESET
from benchpipe.schemas import validate

ROW_SCHEMAS = {
    "training_events.parquet": "training_event.schema.json",
    "runs.parquet": "training_run.schema.json",
    "scores.parquet": "score.schema.json",
    "inference.parquet": "inference_result.schema.json",
    "provenance.parquet": "provenance.schema.json",
}


@dataclass(frozen=True)
class ComplianceResult:
    log: Path
    passed: bool
    output: str

    def problems(self) -> str:
        """The checker's error lines, joined: what a user must fix."""
        lines = [l.strip() for l in self.output.splitlines()]
        errors = [l for l in lines if l.startswith(("ERROR", "WARNING")) and l != "ERROR - FAILED"]
        return "; ".join(errors) or (lines[-1] if lines else "no output")


def validate_rows(table_name: str, rows: list[dict]) -> None:
    schema = ROW_SCHEMAS[table_name]
    for i, row in enumerate(rows):
        validate(row, schema, what=f"{table_name} row {i}")


def check_log_hash(what: str, log: Path, expected: str) -> None:
    try:
        actual = sha256_file(log)
    except OSError as exc:
        raise ValidationError(f"{log}: recorded in {what} but cannot be read: {exc.strerror}") from exc
    if actual != expected:
        raise ValidationError(
            f"{log}: sha256 {actual} differs from the {expected} recorded in {what}: "
            "the tables are stale, re-run the parse stage"
        )


def run_compliance_checker(
    log: Path, rules: Path, output_log: Path, cwd: Path | None = None
) -> ComplianceResult:
    """The official checker with our rules; it exits 1 on failure.

    ``log`` and ``output_log`` may be relative to ``cwd``, so that the checker's report
    names the log as it lies in a submission tree.
    """
    base = cwd or Path.cwd()
    proc = subprocess.run(
        [sys.executable, "-m", "mlperf_logging.compliance_checker", str(log),
         "--usage", "training", "--ruleset", TRAINING_RULESET,
         # The checker joins --config onto its own package directory: only an absolute
         # path reaches our rules.
         "--config", str(rules.resolve()), "--log_output", str((base / output_log).resolve())],
        capture_output=True, text=True, cwd=base,
    )
    return ComplianceResult(log, proc.returncode == 0, proc.stdout + proc.stderr)


def run_system_desc_checker(system_json: Path, output_log: Path, cwd: Path | None = None) -> ComplianceResult:
    """The official system-description checker; it exits 0 even on failure, so read its verdict."""
    base = cwd or Path.cwd()
    proc = subprocess.run(
        [sys.executable, "-m", "mlperf_logging.system_desc_checker", str(system_json),
         "training", TRAINING_RULESET, "--log_output", str((base / output_log).resolve())],
        capture_output=True, text=True, cwd=base,
    )
    output = proc.stdout + proc.stderr
    passed = proc.returncode == 0 and "System description checker passed" in output
    return ComplianceResult(system_json, passed, output)


def check_score(row: dict) -> None:
    if row["olympic_mean_min"] is None:
        raise ValidationError(
            f"scores.parquet: {row['benchmark']} on {row['target']} has no result: {row['reason']}"
        )


PROVENANCE_KEYS = ("runtime", "runtime_version", "image_id", "image_digest", "lock_sha256", "packages_sha256")


def check_provenance(rows: list[dict]) -> dict[str, dict]:
    """All results of one target come from one software stack: one runtime, one image.

    A mix means some results are stale (made before the image or environment changed);
    packaging them together would claim one system produced them. Returns, per target,
    the stack they share.
    """
    stacks: dict[str, dict] = {}
    for row in rows:
        stack = {k: row[k] for k in PROVENANCE_KEYS}
        first = stacks.setdefault(row["target"], stack)
        if stack != first:
            differ = ", ".join(f"{k} {first[k]} vs {stack[k]}" for k in PROVENANCE_KEYS if first[k] != stack[k])
            raise ValidationError(
                f"provenance.parquet: results of target {row['target']} come from different software "
                f"({row['benchmark']} {row['job']}: {differ}): re-run the stale jobs"
            )
    return stacks


def check_dataset(benchmark: str, data_dir: Path, provenance_rows: list[dict]) -> dict[str, Any]:
    """Every result of ``benchmark`` was made from the dataset in ``data_dir``, byte for byte.

    Each job recorded the sha256 of the dataset manifest it read; the manifest lists the
    sha256 of every source and shard. Returns what checks.json says of the dataset.
    """
    from benchpipe.datasets.prepare import MANIFEST

    path = data_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read the dataset manifest: {exc}") from exc
    digest = sha256_file(path)
    stale = [r for r in provenance_rows if r["benchmark"] == benchmark and r["dataset_manifest_sha256"] != digest]
    if stale:
        first = stale[0]
        raise ValidationError(
            f"provenance.parquet: {len(stale)} {benchmark} result(s) were made from another dataset "
            f"(first: {first['target']} {first['job']}, dataset manifest sha256 "
            f"{first['dataset_manifest_sha256']}, {path} has {digest}): re-run the stale jobs"
        )
    return {
        "manifest_sha256": digest,
        "sources": {s["name"]: s["sha256"] for s in manifest.get("sources", [])},
        "shards": len(manifest.get("shards", [])),
        "subset": manifest.get("subset"),
    }

