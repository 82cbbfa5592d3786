"""`benchpipe reproduce` on the workflow's tree (conftest `submitted`): a run trained again from
what the tree recorded matches it; a tree whose log was changed does not, and says where."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchpipe.errors import ConfigError
from benchpipe.package.manifest import write_manifest
from benchpipe.reproduce import Selection, reproduce

LOG = Path("benchpipe/training/benchpipe-ci/results/local-cpu/digits/result_1.txt")


@pytest.fixture
def tree(submitted, tmp_path) -> Path:
    copy = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", copy)
    return copy


def test_a_run_trained_again_matches_the_tree(submitted, cli_env, tmp_path):
    tree = submitted / "submissions" / "ci"
    report = tmp_path / "report.json"
    proc = subprocess.run(["benchpipe", "reproduce", str(tree), "--select", "local-cpu/digits/run_0",
                           "--work", str(tmp_path / "work"), "--report", str(report)],
                          env=cli_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = json.loads(report.read_text())
    assert written["reproduced"] is True and written["time_tolerance"] == 0.25
    (run,) = written["runs"]
    assert run["run"] == "local-cpu/digits/run_0" and run["status"] == "match" and run["differences"] == []
    assert any(c.startswith("eval accuracy identical at") for c in run["checks"]), run
    assert any(c.startswith("time to train tree") for c in run["checks"]), run
    # The rerun used the tree's seed and dataset: its log says so.
    rerun = (tmp_path / "work" / "local-cpu-digits-run_0" / "run" / "mllog.txt").read_text()
    assert '"key": "seed", "value": 11' in rerun


def test_a_changed_accuracy_in_the_tree_is_named(tree, tmp_path):
    log = tree / LOG
    text = log.read_text()
    changed = re.sub(r'("key": "eval_accuracy", "value": )([0-9.]+)', r"\g<1>0.123", text, count=1)
    assert changed != text
    log.write_text(changed)
    write_manifest(tree)  # a tree that proves itself, with a number its logs' rerun cannot give
    (result,) = reproduce(tree, [Selection.parse("local-cpu/digits/run_1")], tmp_path / "work")
    assert result.status == "differ"
    assert any("eval accuracy" in d and "first difference at evaluation 0: tree (1, 0.123)" in d
               for d in result.differences), result.differences


def test_bad_selections_and_another_dataset_are_refused(tree, tmp_path):
    with pytest.raises(ConfigError, match="expected <target>/<benchmark>/run_<n>"):
        Selection.parse("local-cpu/digits/0")
    with pytest.raises(ConfigError, match=r"no training run local-cpu/digits/run_7 \(runs in the tree: "
                                          r"local-cpu/digits/run_0, local-cpu/digits/run_1"):
        reproduce(tree, [Selection.parse("local-cpu/digits/run_7")], tmp_path / "work")
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"benchmark": "digits"}')
    with pytest.raises(ConfigError, match="another dataset"):
        reproduce(tree, [Selection.parse("local-cpu/digits/run_0")], tmp_path / "work", data=other)
    (tree / "benchpipe" / "extra.txt").write_text("x")
    with pytest.raises(Exception, match="extra"):
        reproduce(tree, [Selection.parse("local-cpu/digits/run_0")], tmp_path / "work")
