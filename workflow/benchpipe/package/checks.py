"""benchpipe's own checks before a tree is written: table rows against their schemas, scores,
provenance, datasets, and that tables agree with the raw logs they came from. MLCommons'
checkers run through ``benchpipe.mlcommons``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.schemas import validate

ROW_SCHEMAS = {
    "training_events.parquet": "training_event.schema.json",
    "runs.parquet": "training_run.schema.json",
    "scores.parquet": "score.schema.json",
    "inference.parquet": "inference_result.schema.json",
    "provenance.parquet": "provenance.schema.json",
}


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


# Which column of which table holds the round its rows were judged under, and the config key naming it.
ROUND_COLUMNS = (
    ("runs.parquet", "training_ruleset", ("training", "ruleset")),
    ("scores.parquet", "training_ruleset", ("training", "ruleset")),
    ("inference.parquet", "inference_round", ("inference", "round")),
)


def check_rounds(rows: dict[str, list[dict]], settings: dict[str, Any]) -> None:
    """Every row was parsed under the rounds the config names; others are stale tables."""
    for table, column, (section, key) in ROUND_COLUMNS:
        want = settings[section][key]
        for row in rows[table]:
            if row[column] != want:
                raise ValidationError(
                    f"{table}: row {row['target']} {row['benchmark']} has {column} {row[column]}, but "
                    f"{section}.{key} is {want}: the tables are stale, re-run the parse stage"
                )


def check_score(row: dict) -> None:
    if row["score_min"] is None:
        raise ValidationError(
            f"scores.parquet: {row['benchmark']} on {row['target']} has no result: {row['reason']}"
        )


def check_summarizer_scores(benchmark: str, summarizer: list[tuple[str, float]], score_rows: list[dict],
                            system_names: dict[str, str], where: str) -> None:
    """The result summarizer's score of ``benchmark`` for each system equals scores.parquet's
    score_min of the target that system is, exactly.

    ``summarizer``: (system, minutes) of each row of its CSV (``where``), which pandas writes with
    every digit of the float, so the two are equal to the last bit or the tree states a score that
    MLCommons' tools do not give. ``system_names``: target -> the system_name of its system JSON,
    the name the summarizer's rows carry. Two targets may share a name: each name's scores are
    compared together, in any order.
    """
    ours: dict[str, list[float | None]] = {}
    for row in score_rows:
        if row["benchmark"] == benchmark:
            ours.setdefault(system_names.get(row["target"], row["target"]), []).append(row["score_min"])
    theirs: dict[str, list[float]] = {}
    for system, minutes in summarizer:
        theirs.setdefault(system, []).append(minutes)
    for system in sorted(set(ours) | set(theirs)):
        targets = sorted(t for t, name in system_names.items() if name == system) or [system]
        mine, official = ours.get(system, []), theirs.get(system, [])
        if Counter(mine) != Counter(official):
            raise ValidationError(
                f"{where}: the result summarizer scores {benchmark} on system '{system}' (target(s) "
                f"{', '.join(targets)}) {_minutes(official)} min, scores.parquet's score_min is "
                f"{_minutes(mine)} min: the tree would state a score MLCommons' tools do not give"
            )


def _minutes(values: list) -> str:
    return "none" if not values else ", ".join(repr(v) for v in values)


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

