"""MLCommons' package checker, result summarizer, RCPs and system-description rules, run for real.

A tree the package checker accepts needs genuine ResNet-50 result logs; until the ResNet harness
produces them, only rejections are tested here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mlperf_logging.mllog import constants
from mlperf_logging.mllog.mllog import MLLogger
from mlperf_logging.system_desc_checker.system_desc_checker import check_system_desc

from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import ConfigError, ValidationError
from benchpipe.contracts.schemas import validate
from benchpipe.mlcommons.training import (
    TRAINING_SYSTEM_FIELDS,
    check_closed_batch_size,
    check_training_system_desc,
    is_official,
    rcp_batch_sizes,
    required_runs,
    ruleset_benchmarks,
    rulesets_with,
    run_package_checker,
    run_result_summarizer,
)
from benchpipe.package.system import describe_system

SYSTEM = "test-cpu"
TARGET = Target(SYSTEM, "local", "cpu", 1, system={"cooling": "air", "host_storage_type": "local disk"})
INFERENCE_ONLY = ("system_type", "host_network_card_count", "system_type_detail")
TRAINING_STATUS = {"onprem": "Available on-premise", "research": "Research, Development, or Internal (RDI)"}


@pytest.fixture(scope="module")
def description() -> dict[str, str]:
    """benchpipe's own system description of this machine."""
    return describe_system(TARGET, submitter="acme", division="closed", status="research")


def _training_desc(description: dict[str, str], **overrides) -> dict:
    desc = {k: v for k, v in description.items() if k not in INFERENCE_ONLY}
    desc["status"] = TRAINING_STATUS[desc["status"]]
    return {**desc, **overrides}


def _org(tmp_path: Path, desc: dict) -> Path:
    org = tmp_path / "training" / "acme"
    (org / "systems").mkdir(parents=True)
    (org / "results").mkdir()
    (org / "systems" / f"{SYSTEM}.json").write_text(json.dumps(desc, indent=2))
    return org


def _write_unfinished_logs(folder: Path, count: int, division: str = "closed", benchmark: str = "resnet") -> None:
    """Result logs through the real mllog of runs that stopped right after run_start."""
    folder.mkdir(parents=True)
    for i in range(count):
        logger = logging.getLogger(f"official-test-{folder}-{i}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = logging.FileHandler(folder / f"result_{i}.txt", mode="w")
        logger.addHandler(handler)
        try:
            mllog = MLLogger(logger=logger)
            for key, value in ((constants.SUBMISSION_ORG, "acme"), (constants.SUBMISSION_PLATFORM, SYSTEM),
                               (constants.SUBMISSION_DIVISION, division),
                               (constants.SUBMISSION_STATUS, "research"),
                               (constants.SUBMISSION_BENCHMARK, benchmark)):
                mllog.event(key, value)
            mllog.start(constants.INIT_START)
            mllog.end(constants.INIT_STOP)
            mllog.start(constants.RUN_START)
        finally:
            logger.removeHandler(handler)
            handler.close()


def test_package_checker_rejects_unfinished_resnet_runs_although_it_exits_0(tmp_path, description):
    org = _org(tmp_path, _training_desc(description))
    _write_unfinished_logs(org / "results" / SYSTEM / "resnet", required_runs("resnet"))
    log = tmp_path / "checks" / "package_checker.log"

    verdict = run_package_checker(org, log)

    assert verdict.returncode == 0  # the tool's exit status says nothing
    assert not verdict.passed
    assert "5 files do not comply, directory cannot be accepted" in verdict.errors[0]
    assert "Required AT_LEAST_ONE occurrence of 'cache_clear' but found 0" in verdict.errors[0]
    # A closed system: seeds and RCPs are checked as well.
    assert "Seed checker failed" in verdict.errors
    assert "RCP Test Failed: Could not detect global_batch_size" in verdict.errors
    text = log.read_text()
    assert "PACKAGE CHECKER FOUND ERRORS, LOOK INTO ERROR LOG LINES AND FIX THEM." in text
    # Run from the org's parent, the tool names files as they lie in the tree.
    assert "acme/results/test-cpu/resnet/result_0.txt" in text and str(tmp_path) not in text
    with pytest.raises(ValidationError, match=r"acme: mlperf_logging.package_checker rejects the tree \(exit 0"):
        verdict.require()


def test_open_division_gets_no_seed_or_rcp_checks(tmp_path, description):
    org = _org(tmp_path, _training_desc(description, division="open"))
    _write_unfinished_logs(org / "results" / SYSTEM / "resnet", required_runs("resnet"), division="open")

    verdict = run_package_checker(org, tmp_path / "package_checker.log")

    assert not verdict.passed and verdict.returncode == 0
    assert "5 files do not comply" in verdict.problems()
    assert not any("Seed" in e or "RCP" in e for e in verdict.errors)


def test_package_checker_rejects_system_json_missing_a_field(tmp_path, description):
    desc = _training_desc(description)
    del desc["cooling"]
    org = _org(tmp_path, desc)

    verdict = run_package_checker(org, tmp_path / "package_checker.log")

    assert verdict.returncode == 0 and not verdict.passed
    assert "System description checker failed for test-cpu : ['Missing field cooling']" in verdict.problems()


def test_skipped_benchmark_is_a_failure_unless_allowed(tmp_path, description):
    org = _org(tmp_path, _training_desc(description))
    (org / "results" / SYSTEM / "digits").mkdir(parents=True)
    (org / "results" / SYSTEM / "digits" / "result_0.txt").write_text("not read\n")

    strict = run_package_checker(org, tmp_path / "strict.log")
    lenient = run_package_checker(org, tmp_path / "lenient.log", allow_skipped=True)

    # The tool itself calls this a success: nothing in digits/ was looked at.
    assert "PACKAGE CHECKER FOUND NO ERRORS, SUCCESS !" in (tmp_path / "strict.log").read_text()
    assert strict.skipped == ("digits",) and not strict.passed
    assert "skipped benchmark(s) digits: not in training 4.0.0" in strict.problems()
    assert lenient.passed and lenient.skipped == ("digits",)


def test_package_checker_crash_is_a_failure(tmp_path, description):
    org = _org(tmp_path, _training_desc(description))
    _write_unfinished_logs(org / "results" / "no-such-system" / "resnet", 1)

    verdict = run_package_checker(org, tmp_path / "package_checker.log")

    assert verdict.returncode == 1 and not verdict.passed
    assert "crashed (exit 1): FileNotFoundError" in verdict.problems()
    assert "systems/no-such-system.json" in verdict.problems()


def test_result_summarizer_leaves_the_score_empty_and_exits_0(tmp_path, description):
    org = _org(tmp_path, _training_desc(description, division="open"))
    _write_unfinished_logs(org / "results" / SYSTEM / "resnet", required_runs("resnet"), division="open")
    csv_out = tmp_path / "summary" / "results.csv"
    stale = tmp_path / "summary" / "results_detailed.csv"
    stale.parent.mkdir()
    stale.write_text("stale\n")  # the tool appends to this file: an old one must not survive

    verdict = run_result_summarizer(org, csv_out, tmp_path / "summarizer.log")

    assert verdict.returncode == 0 and not verdict.passed
    assert csv_out.is_file() and len(verdict.rows) == 1
    assert verdict.rows[0]["system"] == SYSTEM and verdict.rows[0]["resnet"] == ""
    assert verdict.scores == {}
    assert "CRITICAL ERROR: Too many non-converging runs for acme test-cpu/resnet" in verdict.errors
    assert "resnet on test-cpu: no score in results.csv" in verdict.errors
    assert "Compliance check failed in acme/results/test-cpu/resnet/result_0.txt" in verdict.errors
    assert "stale" not in stale.read_text()


def test_result_summarizer_crash_on_unknown_benchmark_is_a_failure(tmp_path, description):
    org = _org(tmp_path, _training_desc(description, division="open"))
    _write_unfinished_logs(org / "results" / SYSTEM / "digits", 1, division="open", benchmark="digits")
    with pytest.raises(ValidationError, match="benchmark 'digits' is not in training 4.0.0"):
        run_result_summarizer(org, tmp_path / "s.csv", tmp_path / "s.log", benchmark="digits")

    verdict = run_result_summarizer(org, tmp_path / "s.csv", tmp_path / "s.log")

    assert not verdict.passed and verdict.returncode != 0
    assert "crashed" in verdict.problems()


def test_rcp_batch_sizes_come_from_the_official_rcps():
    sizes = rcp_batch_sizes("resnet")
    assert sizes == sorted(sizes) and len(sizes) == len(set(sizes))
    assert {1632, 3264, 67840} <= set(sizes)
    with pytest.raises(ConfigError, match="'digits' has no reference convergence points"):
        rcp_batch_sizes("digits")


@pytest.mark.parametrize("batch_size, nearest", [(7, "1632, 3264"), (100_000, "65536, 67840")])
def test_closed_batch_size_without_rcp_is_refused(batch_size, nearest):
    with pytest.raises(ConfigError) as err:
        check_closed_batch_size("resnet", batch_size)
    message = str(err.value)
    assert message.startswith(f"global_batch_size: {batch_size} has no reference convergence point")
    assert message.endswith(f"nearest: {nearest}")


def test_closed_batch_size_with_rcp_or_interpolation_is_accepted():
    assert check_closed_batch_size("resnet", 3264) == "RCP at batch size 3264"
    # 4096 has an RCP, but the checker prunes it and interpolates between its neighbours.
    assert check_closed_batch_size("resnet", 4096) == "RCP interpolated between batch sizes 3264 and 32768"


def test_official_benchmarks():
    assert is_official("resnet") and not is_official("digits")
    assert "resnet" in ruleset_benchmarks("4.0.0")
    assert not is_official("resnet", "5.0.0")  # retired after 4.0
    assert required_runs("resnet", "4.0.0") == 5


def test_rulesets_come_from_benchmark_meta():
    assert "llama2_70b_lora" in ruleset_benchmarks("6.1.0") and "resnet" not in ruleset_benchmarks("6.1.0")
    assert required_runs("llama2_70b_lora", "6.1.0") == 10
    assert required_runs("deepseekv3_671b", "6.1.0") == 3
    with pytest.raises(ConfigError, match="'resnet' is not in MLPerf training 6.1.0"):
        required_runs("resnet", "6.1.0")
    with pytest.raises(ConfigError, match="training ruleset 9.9.9: unknown to mlperf-logging"):
        ruleset_benchmarks("9.9.9")
    found = rulesets_with("resnet")
    assert found[0] == "0.6.0" and found[-1] == "4.0.0" and "1.0.0" in found
    assert rulesets_with("digits") == []


def test_system_field_list_is_the_checkers(tmp_path):
    assert len(TRAINING_SYSTEM_FIELDS) == len(set(TRAINING_SYSTEM_FIELDS)) == 33
    full = {f: "1" for f in TRAINING_SYSTEM_FIELDS} | {"status": "Preview", "division": "open"}
    path = tmp_path / "system.json"
    path.write_text(json.dumps(full))
    assert check_system_desc(str(path), "training", "4.0.0")[0]
    for name in TRAINING_SYSTEM_FIELDS:
        path.write_text(json.dumps({k: v for k, v in full.items() if k != name}))
        assert not check_system_desc(str(path), "training", "4.0.0")[0], name


def test_system_description_meets_the_official_tools(tmp_path, description):
    desc = _training_desc(description)
    check_training_system_desc(desc, "system.json")
    with pytest.raises(ValidationError, match="key 'accelerators_per_node' must be a non-empty string, not 0"):
        check_training_system_desc(dict(desc, accelerators_per_node=0), "system.json")
    with pytest.raises(ValidationError, match="key 'status' is 'research'"):
        check_training_system_desc(dict(desc, status="research"), "system.json")
    with pytest.raises(ValidationError, match="missing field.* cooling"):
        check_training_system_desc({k: v for k, v in desc.items() if k != "cooling"}, "system.json")
    # The summarizer int()s the counts: the schema refuses what would crash it.
    with pytest.raises(ValidationError, match="key 'accelerators_per_node'"):
        validate(dict(description, accelerators_per_node="N/A"), "system_desc.schema.json", what="system.json")
    with pytest.raises(ValidationError, match="key 'accelerators_per_node' is 'N/A'"):
        check_training_system_desc(dict(desc, accelerators_per_node="N/A"), "system.json")

