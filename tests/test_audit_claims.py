"""The audit's claims item: a number the tree states outside its logs, changed and the manifest
rebuilt to match, is caught naming the file, the key and the rule."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchpipe.audit import ITEMS, audit
from benchpipe.audit.claims import RULE
from benchpipe.package.manifest import write_manifest

CHECKS = Path("benchpipe/checks.json")
SCENARIO = Path("benchpipe/inference/closed/benchpipe-ci/results/local-cpu/digits/Offline")


@pytest.fixture
def tree(submitted, tmp_path) -> Path:
    copy = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", copy, symlinks=True)
    return copy


def claims_reasons(tree: Path) -> list[str]:
    write_manifest(tree)
    report = audit(tree)
    items = {item.name: item for item in report.items}
    others = {name: item.reasons for name, item in items.items() if name != "claims" and item.status == "fail"}
    assert others == {}, others  # only the claims item can see a restated number
    return items["claims"].reasons


def edit_checks(tree: Path, change) -> None:
    path = tree / CHECKS
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_the_workflows_tree_states_only_what_its_logs_say(tree):
    report = audit(tree)
    claims = next(item for item in report.items if item.name == "claims")
    assert "claims" in ITEMS and claims.status == "pass", claims.reasons
    assert any("inference.tests" in d for d in claims.details) and any("accuracy.txt" in d for d in claims.details)


def test_a_doubled_offline_result_in_checks_json_fails(tree):
    def double(data):
        test = next(t for t in data["inference"]["tests"] if (t["scenario"], t["mode"]) == ("Offline", "performance"))
        test["result_samples_per_s"] *= 2

    edit_checks(tree, double)
    reasons = claims_reasons(tree)
    assert len(reasons) == 1, reasons
    assert reasons[0].startswith(f"{CHECKS}: inference.tests[") and ".result_samples_per_s: " in reasons[0]
    assert f"from {SCENARIO}/performance/run_1/mlperf_log_detail.txt ({RULE})" in reasons[0], reasons


def test_a_changed_accuracy_in_checks_json_fails(tree):
    def lower(data):
        test = next(t for t in data["inference"]["tests"] if t["mode"] == "accuracy")
        test["accuracy"] = round(test["accuracy"] - 0.01, 5)

    edit_checks(tree, lower)
    (reason,) = claims_reasons(tree)
    assert reason.startswith(f"{CHECKS}: inference.tests[") and ".accuracy: " in reason and RULE in reason


def test_a_changed_number_in_a_scenario_readme_fails(tree):
    readme = tree / SCENARIO / "README.md"
    text = readme.read_text()
    version = re.search(r"mlcommons-loadgen (\d+)\.", text)
    assert version, text
    readme.write_text(text.replace(f"mlcommons-loadgen {version.group(1)}.", f"mlcommons-loadgen {int(version.group(1)) + 1}."))
    (reason,) = claims_reasons(tree)
    assert reason.startswith(f"{SCENARIO}/README.md: line: ") and RULE in reason


def test_a_changed_accuracy_in_accuracy_txt_fails(tree):
    path = tree / SCENARIO / "accuracy" / "accuracy.txt"
    first, rest = path.read_text().split("\n", 1)
    percent = float(re.match(r"accuracy=([0-9.]+)%", first).group(1))
    path.write_text(first.replace(f"accuracy={percent:.3f}%", f"accuracy={min(percent + 1.5, 100):.3f}%") + "\n" + rest)
    write_manifest(tree)
    reasons = {item.name: item.reasons for item in audit(tree).items if item.status == "fail"}
    # The table's accuracy no longer matches accuracy.txt, and accuracy.txt no longer matches good/total.
    assert any(r.startswith(f"{SCENARIO}/accuracy/accuracy.txt: accuracy: ") and RULE in r
               for r in reasons.get("claims", [])), reasons


def test_an_accuracy_txt_whose_hash_is_not_the_full_logs_fails(tree):
    path = tree / SCENARIO / "accuracy" / "accuracy.txt"
    first, second = path.read_text().splitlines()[:2]
    path.write_text(f"{first}\nhash={'0' * 64}\n")
    (reason,) = claims_reasons(tree)
    assert reason.startswith(f"{SCENARIO}/accuracy/accuracy.txt: hash: ") and "benchpipe/raw/" in reason


def test_a_changed_dataset_figure_in_checks_json_fails(tree):
    def claim_more(data):
        data["datasets"]["digits"]["shards"] += 1

    edit_checks(tree, claim_more)
    (reason,) = claims_reasons(tree)
    assert reason.startswith(f"{CHECKS}: datasets.digits: ") and "manifest.json" in reason and RULE in reason


def test_a_changed_verify_file_fails(tree):
    path = tree / SCENARIO / "TEST04" / "verify_performance.txt"
    text = path.read_text()
    score = re.search(r"test score = ([0-9.e+]+)", text)
    assert score, text
    path.write_text(text.replace(score.group(0), f"test score = {float(score.group(1)) * 2:g}"))
    (reason,) = claims_reasons(tree)
    assert reason.startswith(f"{SCENARIO}/TEST04/verify_performance.txt: line: ") and RULE in reason
