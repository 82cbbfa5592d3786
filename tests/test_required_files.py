"""The files MLPerf's layouts require: a tree that lacks one fails the audit even with its manifest
rebuilt to match, and packaging never writes such a tree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchpipe.audit import Item, audit
from benchpipe.audit.required import check_required_files
from benchpipe.contracts.config import inference_modes
from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.layout import required_scenario_files
from benchpipe.package.inference import ScenarioResults, check_written
from benchpipe.package.manifest import write_manifest

ORG = Path("benchpipe/inference/closed/benchpipe-ci")
SCENARIOS = ORG / "results/local-cpu/digits"
TRAINING = Path("benchpipe/training/benchpipe-ci/results/local-cpu/digits")


@pytest.fixture
def tree(submitted, tmp_path) -> Path:
    copy = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", copy, symlinks=True)
    return copy


def json_reasons(tree: Path) -> list[str]:
    """The audit's json item, the one that holds the tree to its layouts, after the manifest was rebuilt."""
    write_manifest(tree)  # the manifest alone can then tell nothing
    items = {item.name: item for item in audit(tree).items}
    assert items["manifest"].status == "pass", items["manifest"].reasons
    assert items["json"].status == "fail"
    return items["json"].reasons


def test_the_workflows_tree_has_every_required_file(tree):
    item = Item("json")
    check_required_files(tree, item, json.loads((tree / "benchpipe/config.json").read_text()))
    assert item.status == "pass", item.reasons
    # Four scenario folders (performance, accuracy, TEST01, TEST04 each) and one training result folder.
    assert item.checked == 4 + 1
    assert f"{SCENARIOS}/Offline/: the files the v6.1 layout requires for performance, accuracy, TEST01, TEST04" \
        in item.details


def test_a_summary_log_renamed_away_fails_the_audit(tree):
    run = tree / SCENARIOS / "Offline" / "performance" / "run_1"
    (run / "mlperf_log_summary.txt").rename(run / "mlperf_log_summary.old")
    assert (f"{SCENARIOS}/Offline/performance/run_1/mlperf_log_summary.txt: missing "
            "(required by the v6.1 layout for Offline performance)") in json_reasons(tree)


def test_a_missing_test04_verdict_fails_the_audit(tree):
    (tree / SCENARIOS / "Server" / "TEST04" / "verify_performance.txt").unlink()
    assert (f"{SCENARIOS}/Server/TEST04/verify_performance.txt: missing "
            "(required by the v6.1 layout for Server TEST04)") in json_reasons(tree)


def test_a_training_result_removed_and_the_rest_renumbered_fails_the_audit(tree):
    results = tree / TRAINING
    (results / "result_1.txt").unlink()
    (results / "result_2.txt").rename(results / "result_1.txt")
    assert (f"{TRAINING}/result_2.txt: missing (required: 3 result files, "
            "training.runs of the tree's config for digits)") in json_reasons(tree)


@pytest.mark.parametrize(
    "remove, reason",
    [
        (SCENARIOS / "SingleStream" / "README.md",
         f"{SCENARIOS}/SingleStream/README.md: missing (required by the v6.1 layout for the SingleStream folder)"),
        (SCENARIOS / "MultiStream" / "accuracy" / "accuracy.txt",
         f"{SCENARIOS}/MultiStream/accuracy/accuracy.txt: missing (required by the v6.1 layout for MultiStream accuracy)"),
        (SCENARIOS / "Offline" / "TEST01",
         f"{SCENARIOS}/Offline/TEST01/verify_accuracy.txt: missing (required by the v6.1 layout for Offline TEST01)"),
        (SCENARIOS / "Server",
         f"{SCENARIOS}/Server/user.conf: missing (required by the v6.1 layout for the Server folder)"),
        (ORG / "systems" / "local-cpu.json",
         f"{ORG}/systems/local-cpu.json: missing (required by the v6.1 layout for system local-cpu)"),
        (ORG / "src", f"{ORG}/src/: missing or empty (required by the v6.1 layout: the code that produced the results)"),
    ],
    ids=["readme", "accuracy-txt", "test01-folder", "scenario-folder", "system", "src"],
)
def test_each_required_file_is_named_when_missing(tree, remove, reason):
    path = tree / remove
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    item = Item("json")
    check_required_files(tree, item, json.loads((tree / "benchpipe/config.json").read_text()))
    assert reason in item.reasons


def test_one_training_result_too_many_is_named(tree):
    results = tree / TRAINING
    shutil.copyfile(results / "result_0.txt", results / "result_3.txt")
    item = Item("json")
    check_required_files(tree, item, json.loads((tree / "benchpipe/config.json").read_text()))
    assert item.reasons == [f"{TRAINING}/result_3.txt: one result file too many (required: exactly 3, "
                            "training.runs of the tree's config for digits)"]


def test_compliance_files_are_required_only_where_packaging_runs_the_tests():
    closed = {path for path, _ in required_scenario_files(inference_modes({"submission": {"division": "closed"}}))}
    opened = {path for path, _ in required_scenario_files(inference_modes({"submission": {"division": "open"}}))}
    assert {"TEST01/verify_accuracy.txt", "TEST04/verify_performance.txt",
            "TEST04/performance/run_1/mlperf_log_summary.txt"} <= closed - opened
    assert {"README.md", "user.conf", "measurements.json", "accuracy/mlperf_log_accuracy.json",
            "performance/run_1/mlperf_log_detail.txt"} <= opened
    with pytest.raises(ValidationError, match="mode 'TEST05': the inference layout names no files for it"):
        required_scenario_files(["performance", "TEST05"])


def test_packaging_refuses_a_scenario_folder_it_wrote_incompletely(tmp_path):
    settings = {"submission": {"division": "open", "submitter": "org"}, "inference": {"round": "v6.1"}}
    scenario = tmp_path / "benchpipe/inference/open/org/results/local-cpu/digits/Offline"
    for path, _ in required_scenario_files(inference_modes(settings)):
        (scenario / path).parent.mkdir(parents=True, exist_ok=True)
        (scenario / path).write_text("x")
    group = ScenarioResults("local-cpu", "digits", "Offline")
    check_written(tmp_path, [group], settings)  # complete: nothing to say
    (scenario / "accuracy" / "accuracy.txt").unlink()
    with pytest.raises(ValidationError, match=r"lacks 1 file\(s\): benchpipe/inference/open/org/results/local-cpu/"
                                              r"digits/Offline/accuracy/accuracy.txt: missing \(required by the "
                                              r"v6.1 layout for Offline accuracy\)"):
        check_written(tmp_path, [group], settings)
