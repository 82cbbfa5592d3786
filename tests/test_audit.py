"""`benchpipe audit` on the tree the workflow wrote (conftest `submitted`), whole and tampered.

Each tampering works on a copy of the tree and must be caught by the item that can see it,
with a reason that names the file or row; where the manifest is rebuilt to match, only the
deeper item can catch it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchpipe.audit import ITEMS, audit
from benchpipe.package.manifest import write_manifest

TRAINING_LOG = Path("benchpipe/training/benchpipe-ci/results/local-cpu/digits/result_1.txt")
SCENARIO = Path("benchpipe/inference/closed/benchpipe-ci/results/local-cpu/digits/Offline")


@pytest.fixture
def tree(submitted, tmp_path) -> Path:
    copy = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", copy, symlinks=True)
    return copy


def verdicts(tree: Path) -> dict[str, tuple[str, list[str]]]:
    report = audit(tree)
    return {item.name: (item.status, item.reasons) for item in report.items}


def failed(found: dict[str, tuple[str, list[str]]]) -> set[str]:
    return {name for name, (status, _) in found.items() if status == "fail"}


def test_the_workflows_tree_passes_every_item_through_the_audit_rule(submitted, cli_env, repo_root):
    proc = subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(submitted), "--cores", "1", "audit",
         "--configfile", str(repo_root / ".test" / "config" / "config.yaml")],
        env=cli_env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((submitted / "submissions" / "ci.audit.json").read_text())
    assert report["passed"] is True
    items = {item["name"]: item for item in report["items"]}
    assert list(items) == list(ITEMS)
    assert all(item["status"] == "pass" and item["checked"] > 0 for item in items.values()), items
    # 3 training logs and their system through MLCommons' checkers; 16 LoadGen tests; 8 compliance tests;
    # the summary and detail logs of the 12 performance-mode tests held against each other.
    assert items["checkers"]["checked"] == 3 + 1 + 16 + 8 + 12
    assert len(items["checkers"]["details"]) == items["checkers"]["checked"]
    verify = subprocess.run(["benchpipe", "verify", str(submitted / "submissions" / "ci")], env=cli_env,
                            capture_output=True, text=True)
    root = verify.stdout.split("root sha256 ")[1].strip()
    assert items["manifest"]["reasons"] == [f"root sha256 {root}"]
    assert "PASS    checkers" in (submitted / "logs" / "audit.log").read_text()


def flip_a_byte(tree: Path) -> None:
    log = tree / TRAINING_LOG
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0x01
    log.write_bytes(bytes(data))


def edit_table(folder: str, column: str, value) -> Callable[[Path], None]:
    def edit(tree: Path) -> None:
        # local-cpu's partition: the Mobile target (local-litert) has its own.
        (path,) = (tree / "benchpipe" / "tables" / folder).rglob("target=local-cpu/*.parquet")
        table = pq.ParquetFile(path).read()
        rows = table.to_pylist()
        rows[0][column] = value
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
        write_manifest(tree)  # only re-deriving the table from the logs can tell

    return edit


def plant_scaling(tree: Path) -> None:
    """A scaling.json the RCP checker never wrote: the result summarizer would multiply by it."""
    (tree / TRAINING_LOG.parent / "scaling.json").write_text(json.dumps({"scaling_factor": 1.5}))
    write_manifest(tree)


def edit_config(tree: Path) -> None:
    """A config.json that still meets its schema, but is not the config the results were made with."""
    path = tree / "benchpipe" / "config.json"
    config = json.loads(path.read_text())
    config["containers"]["base_image"] = "someone/else:1"  # read by training and inference jobs alike
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_manifest(tree)


def move_partition(tree: Path) -> None:
    scores = tree / "benchpipe" / "tables" / "scores"
    (scores / "round=ci").rename(scores / "round=2027")
    write_manifest(tree)


def break_measurements(tree: Path) -> None:
    path = tree / SCENARIO / "measurements.json"
    data = json.loads(path.read_text())
    data["retraining"] = "maybe"
    path.write_text(json.dumps(data))
    write_manifest(tree)


def invalidate_a_loadgen_log(tree: Path) -> None:
    log = tree / SCENARIO / "performance" / "run_1" / "mlperf_log_detail.txt"
    log.write_text(log.read_text().replace('"result_validity", "value": "VALID"', '"result_validity", "value": "INVALID"'))
    write_manifest(tree)


@pytest.mark.parametrize(
    ("tamper", "item", "reason"),
    [
        (flip_a_byte, "manifest", f"{TRAINING_LOG.as_posix()}: modified: sha256"),
        (lambda t: (t / "benchpipe" / "extra.txt").write_text("x"), "manifest", "benchpipe/extra.txt: extra"),
        (lambda t: (t / TRAINING_LOG).unlink(), "manifest", f"{TRAINING_LOG.as_posix()}: missing"),
        (lambda t: (t / TRAINING_LOG).rename(t / TRAINING_LOG.with_name("result_9.txt")), "manifest", "renamed?"),
        (lambda t: os.symlink("/etc/passwd", t / "benchpipe" / "link"), "manifest",
         "benchpipe/link: symlink to '/etc/passwd', outside the tree"),
        (edit_table("runs", "best_eval_accuracy", 0.5), "tables",
         "runs.parquet: row local-cpu digits 0: best_eval_accuracy 0.5 in the table"),
        (edit_table("scores", "olympic_mean_min", 0.001), "scores",
         "scores.parquet: row local-cpu digits: olympic_mean_min 0.001 in the table"),
        (edit_table("scores", "scaling_factor", 1.5), "scores",
         "scores.parquet: row local-cpu digits: scaling_factor 1.5 in the table, 1.0 from the log"),
        (edit_table("scores", "score_min", 0.001), "scores",
         "scores.parquet: row local-cpu digits: score_min 0.001 in the table"),
        (plant_scaling, "scores",
         f"{TRAINING_LOG.parent.as_posix()}/scaling.json: scaling_factor 1.5, the RCP checker derives 1.0"),
        (break_measurements, "json", f"{SCENARIO.as_posix()}/measurements.json"),
        (move_partition, "tables", "benchpipe/tables/scores/: partitions [('2027', 'closed')], the tree is round ci"),
        (edit_table("provenance", "config_sha256", "0" * 64), "tables",
         f"provenance.parquet: row local-cpu digits train/run_0: config_sha256 '{'0' * 64}', but the train "
         "part of benchpipe/config.json hashes to"),
        (edit_config, "tables", "config_sha256 '"),
    ],
    ids=["byte-flipped", "file-added", "file-removed", "file-renamed", "symlink-planted", "table-edited",
         "score-edited", "factor-edited", "scaled-score-edited", "scaling-planted", "json-invalid", "partition-moved",
         "config-hash-edited", "config-edited"],
)
def test_tampering_is_caught_by_the_item_that_can_see_it(tree, tamper, item, reason):
    tamper(tree)
    found = verdicts(tree)
    status, reasons = found[item]
    assert status == "fail" and any(reason in r for r in reasons), found
    if item != "manifest":
        # The manifest was rebuilt to match: only the deeper item sees it.
        assert failed(found) == {item}, found


def test_an_edited_loadgen_log_fails_the_tables_the_claims_and_the_rules(tree):
    invalidate_a_loadgen_log(tree)
    found = verdicts(tree)
    # checks.json states the test's validity too: the claims item sees it no longer matches the log.
    assert failed(found) == {"tables", "claims", "checkers"}, found
    assert any("benchpipe/checks.json: inference.tests[" in r and "result_validity: 'VALID' stated, 'INVALID'" in r
               for r in found["claims"][1]), found["claims"]
    assert any("inference.parquet: row local-cpu digits Offline performance: result_validity 'VALID' in the table, "
               "'INVALID' from the log" in r for r in found["tables"][1])
    assert any("rule 'result_validity'" in r for r in found["checkers"][1]), found["checkers"]


def test_the_command_line_writes_the_report_and_exits_1_on_failure(tree, cli_env, tmp_path):
    flip_a_byte(tree)
    report = tmp_path / "out" / "report.json"
    proc = subprocess.run(["benchpipe", "audit", str(tree), "--report", str(report)], env=cli_env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "FAIL    manifest" in proc.stdout and f"audit FAILED: {tree}" in proc.stdout
    written = json.loads(report.read_text())
    assert written["passed"] is False and [i["name"] for i in written["items"]] == list(ITEMS)
    missing = subprocess.run(["benchpipe", "audit", str(tmp_path / "nothing")], env=cli_env,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "nothing: not a folder" in missing.stderr
