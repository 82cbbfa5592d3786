"""TEST01 and TEST04 on real LoadGen runs of a tiny numpy SUT (tests/loadgen_logs.py).

The Offline runs sleep a fixed time per sample, which makes their throughput reproducible to
about 1 %: far inside the 10 % the rules allow, and far from the 2x and 1.5x the failing
runs differ by. The audit.config is passed to LoadGen by explicit path, as the workflow does.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from pathlib import Path

import pytest
from loadgen_logs import label_of, run_loadgen, wrong_for_odd

from benchpipe.contracts.errors import ConfigError, InferenceError, ValidationError
from benchpipe.contracts.layout import RAW_DIR, VERIFY_ACCURACY, VERIFY_PERFORMANCE
from benchpipe.contracts.records import RunKind
from benchpipe.contracts.rounds import COMPLIANCE_TESTS, ROUND
from benchpipe.infer.compliance import Verification, audit_config, verify_test01, verify_test04
from benchpipe.mlcommons import compliance_tests as official
from benchpipe.package.inference import ComplianceVerdict, ScenarioResults, judged, verify_test, write_test
from benchpipe.results.loadgen_parser import parse_detail_log

# LoadGen's verdicts here depend on timing: these tests run in a pass of their own (Makefile).
pytestmark = pytest.mark.timing

MODEL = "resnet50"
# Offline: one query of target_qps x min_duration x 1.1 = 1650 samples, 0.33 s at the nominal
# 5000 samples/s. The target is 3x the nominal rate so that a 2x faster run still lasts
# min_duration (else LoadGen calls it INVALID before the rate is compared).
OFFLINE = {"target_qps": 15000, "min_query_count": 1}
OFFLINE_RUN = dict(scenario="Offline", min_duration_ms=100, delay_s=2e-4, extra_conf=OFFLINE)
# SingleStream: a target latency below the real one, so LoadGen never runs out of queries
# however fast the SUT answers; 2048 samples so that a caching SUT mostly misses in the
# submission run.
SINGLE = {"target_latency": 0.25, "performance_sample_count_override": 2048}
CACHING_RUN = dict(
    scenario="SingleStream", min_duration_ms=200, delay_s=1e-3, cached_delay_s=3e-4,
    total=2048, perf_count=2048, extra_conf=SINGLE,
)


def _audit(tmp: Path, test: str) -> Path:
    path = tmp / f"{test}.audit.config"
    path.write_text(audit_config(test, MODEL))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Every LoadGen run of this module, once: each is a child process of about half a second."""
    tmp = tmp_path_factory.mktemp("compliance")
    t01, t04 = _audit(tmp, "TEST01"), _audit(tmp, "TEST04")
    plan = {
        "accuracy": dict(scenario="Offline", mode="accuracy", extra_conf=OFFLINE),
        "performance": OFFLINE_RUN,
        "TEST01": dict(OFFLINE_RUN, audit_config=t01),
        "TEST01_wrong": dict(OFFLINE_RUN, audit_config=t01, predict=wrong_for_odd),
        "TEST01_fast": dict(OFFLINE_RUN, audit_config=t01, delay_s=1e-4),
        "TEST01_slow": dict(OFFLINE_RUN, audit_config=t01, delay_s=3e-4),
        "TEST04": dict(OFFLINE_RUN, audit_config=t04),
        "caching_performance": CACHING_RUN,
        "caching_TEST04": dict(CACHING_RUN, audit_config=t04),
        # target_qps far below the SUT's rate: the one query ends before min_duration.
        "invalid": dict(OFFLINE_RUN, audit_config=t04, extra_conf={**OFFLINE, "target_qps": 1000}),
    }
    return {name: run_loadgen(tmp / name, model=MODEL, **kwargs) for name, kwargs in plan.items()}


def _test01(runs, test_dir: str, scenario: str = "Offline", **dirs: Path) -> Verification:
    options = dict(accuracy_dir=runs["accuracy"], test_dir=runs[test_dir], submission_perf_dir=runs["performance"])
    return verify_test01(**{**options, **dirs}, scenario=scenario)


def _test04(runs, test_dir: str, submission: str = "performance", scenario: str = "Offline") -> Verification:
    return verify_test04(test_dir=runs[test_dir], submission_perf_dir=runs[submission], scenario=scenario)


# --- audit.config ----------------------------------------------------------------------------------

def test_audit_configs_carry_the_rounds_values():
    assert ROUND == "v6.1" and COMPLIANCE_TESTS == ("TEST01", "TEST04")
    t01 = audit_config("TEST01", "resnet50").splitlines()
    assert [line for line in t01 if not line.startswith("#")] == [
        "*.*.mode = 2",
        "*.*.accuracy_log_rng_seed = 720381539243781796",
        "*.*.accuracy_log_sampling_target = 4096",
    ]
    assert "compliance/TEST01/resnet50/audit.config" in t01[0]
    assert "*.*.accuracy_log_sampling_target = 256" in audit_config("TEST01", "retinanet")
    assert "*.*.accuracy_log_sampling_target = 4096" in audit_config("TEST01", "digits")  # no file of its own
    t04 = [line for line in audit_config("TEST04", "resnet50").splitlines() if not line.startswith("#")]
    for scenario in ("SingleStream", "MultiStream", "Server", "Offline"):
        for line in ("mode = 2", "performance_issue_unique = 0", "performance_issue_same = 1",
                     "performance_issue_same_index = 3"):
            assert f"*.{scenario}.{line}" in t04
    assert len(t04) == 16
    assert "*.Offline.min_query_count = 500" in audit_config("TEST04", "stable-diffusion-xl")


def test_unknown_compliance_test_is_an_error():
    with pytest.raises(InferenceError, match="'TEST05' is not one of TEST01, TEST04"):
        audit_config("TEST05", MODEL)


def test_audit_settings_take_effect(runs):
    t01 = parse_detail_log(runs["TEST01"] / "mlperf_log_detail.txt")
    assert t01.get("effective_accuracy_log_sampling_target") == 4096
    assert t01.get("effective_accuracy_log_rng_seed") == 720381539243781796
    assert t01.get("effective_test_mode") == "PerformanceOnly"
    assert any("Found Audit Config" in w for w in t01.warnings)
    # The performance run logged (a sample of) its responses: here all, 1650 < 4096.
    entries = json.loads((runs["TEST01"] / "mlperf_log_accuracy.json").read_text())
    assert len(entries) == t01.get("effective_samples_per_query") == 1650
    t04 = parse_detail_log(runs["TEST04"] / "mlperf_log_detail.txt")
    assert t04.get("effective_performance_issue_same") is True
    assert t04.get("effective_performance_issue_same_index") == 3
    plain = parse_detail_log(runs["performance"] / "mlperf_log_detail.txt")
    assert plain.get("effective_accuracy_log_sampling_target") == 0
    assert plain.get("effective_performance_issue_same") is False
    assert json.loads((runs["performance"] / "mlperf_log_accuracy.json").read_text()) == []


# --- TEST01 ----------------------------------------------------------------------------------------

def test_test01_passes_on_a_deterministic_sut(runs, tmp_path):
    result = _test01(runs, "TEST01")
    assert result.passed and result.reasons == [] and result.test == "TEST01"
    assert result.figures["compared"] == 1650 and result.figures["mismatched"] == 0
    assert result.figures["test_score"] == pytest.approx(result.figures["reference_score"], rel=0.10)
    accuracy = result.files[VERIFY_ACCURACY].splitlines()
    assert "num_perf_log_qsl_idx_match = 1650" in accuracy and "num_perf_log_data_mismatch = 0" in accuracy
    assert accuracy[-1] == "TEST PASS"
    assert result.files[VERIFY_PERFORMANCE].splitlines()[-1] == "TEST PASS"
    written = result.write(tmp_path)
    assert sorted(p.name for p in written) == [VERIFY_ACCURACY, VERIFY_PERFORMANCE]
    assert (tmp_path / VERIFY_ACCURACY).read_text() == result.files[VERIFY_ACCURACY]


def test_test01_fails_when_the_sut_answers_otherwise_in_performance_mode(runs):
    result = _test01(runs, "TEST01_wrong")
    assert not result.passed
    accuracy = result.files[VERIFY_ACCURACY].splitlines()
    assert "TEST PASS" not in accuracy and accuracy[-1] == "TEST FAIL"
    mismatched = result.figures["mismatched"]
    assert 0 < mismatched < result.figures["compared"] == 1650  # the odd samples
    assert f"num_perf_log_data_mismatch = {mismatched}" in accuracy
    assert result.files[VERIFY_PERFORMANCE].splitlines()[-1] == "TEST PASS"  # its speed is fine
    [reason] = result.reasons
    assert reason.startswith(f"TEST01 accuracy: {mismatched} of 1650 performance-mode responses")
    first = re.search(r"for the same qsl_idx \(first: qsl_idx (\d+): accuracy run (\d+), performance run (\d+)\)", reason)
    idx, expected, found = map(int, first.groups())
    assert idx % 2 == 1 and expected == idx % 10 and found == (idx + 1) % 10


@pytest.mark.parametrize("run, sign", [("TEST01_fast", "+"), ("TEST01_slow", "-")])
def test_test01_fails_when_performance_is_off_by_more_than_10_percent(runs, run, sign):
    result = _test01(runs, run)
    assert not result.passed
    assert result.files[VERIFY_ACCURACY].splitlines()[-1] == "TEST PASS"
    performance = result.files[VERIFY_PERFORMANCE]
    assert "TEST PASS" not in performance
    assert performance.splitlines()[-1].startswith("TEST FAIL: Test score invalid")
    [reason] = result.reasons
    assert reason.startswith("TEST01 performance: Test score invalid") and f"is {sign}" in reason
    assert "within 10%" in reason and str(runs[run]) in reason
    # The file goes into the submission tree: no local paths in it.
    assert str(runs[run].parent) not in performance


def test_test01_fails_on_another_scenario_and_on_invalid_runs(runs):
    # The logs are Offline runs: verifying them as SingleStream is a scenario mismatch.
    result = _test01(runs, "TEST01", scenario="SingleStream")
    assert not result.passed
    assert "scenarios do not match" in result.files[VERIFY_PERFORMANCE]
    # The caching runs are SingleStream: a submission run of another scenario.
    result = _test01(runs, "TEST01", submission_perf_dir=runs["caching_performance"])
    assert not result.passed and "scenarios do not match" in result.reasons[0]
    result = _test04(runs, "invalid")
    assert not result.passed
    assert result.files[VERIFY_PERFORMANCE].splitlines()[-1].startswith("TEST FAIL: Invalid results in the TEST04 run")


def test_test01_errors_name_the_missing_or_malformed_log(runs, tmp_path):
    with pytest.raises(InferenceError, match=rf"{tmp_path}/mlperf_log_accuracy.json: missing"):
        _test01(runs, "TEST01", accuracy_dir=tmp_path)
    # A truncated accuracy log, as a submission tree keeps it, is not a log to verify with.
    text = (runs["accuracy"] / "mlperf_log_accuracy.json").read_text()
    (tmp_path / "mlperf_log_accuracy.json").write_text(text[:200])
    with pytest.raises(InferenceError, match=r"mlperf_log_accuracy.json: not a LoadGen accuracy log \(truncated\?\)"):
        _test01(runs, "TEST01", accuracy_dir=tmp_path)
    (tmp_path / "mlperf_log_accuracy.json").write_text('[{"seq_id": 0, "qsl_idx": 1, "data": "zz"}]')
    with pytest.raises(InferenceError, match="mlperf_log_accuracy.json: entry 0: malformed"):
        _test01(runs, "TEST01", accuracy_dir=tmp_path)
    with pytest.raises(InferenceError, match=rf"{tmp_path}/mlperf_log_detail.txt: missing"):
        _test01(runs, "TEST01", submission_perf_dir=tmp_path)


def test_test01_needs_responses_the_accuracy_run_gave(runs, tmp_path):
    # An accuracy log of other samples: nothing to compare with, whatever the run logged.
    (tmp_path / "mlperf_log_accuracy.json").write_text('[{"seq_id": 0, "qsl_idx": 9999, "data": "01000000"}]')
    result = _test01(runs, "TEST01", accuracy_dir=tmp_path)
    assert not result.passed and result.figures["compared_with_accuracy_run"] == 0
    assert result.figures["missing"] == 64  # each sample's first response; its repeats compare with it
    assert result.files[VERIFY_ACCURACY].splitlines()[-1] == "TEST FAIL"
    assert "none of the 1650 responses" in result.reasons[0]


# --- TEST04 ----------------------------------------------------------------------------------------

def test_test04_passes_when_repeating_a_sample_is_not_faster(runs):
    result = _test04(runs, "TEST04")
    assert result.passed and result.reasons == [] and result.test == "TEST04"
    assert list(result.files) == [VERIFY_PERFORMANCE]
    assert result.files[VERIFY_PERFORMANCE].splitlines()[-1] == "TEST PASS"
    # One-sided: the slower TEST01 run would pass as a TEST04 run too.
    assert _test04(runs, "TEST01_slow").passed


def test_test04_fails_when_the_run_is_more_than_10_percent_faster(runs):
    result = _test04(runs, "TEST01_fast")
    assert not result.passed and result.figures["threshold"] == 0.10
    assert result.files[VERIFY_PERFORMANCE].splitlines()[-1].startswith("TEST FAIL: Test score invalid")
    assert "faster than the submission run" in result.reasons[0]


def test_test04_catches_a_caching_sut(runs):
    # SingleStream: TEST04 compares 1e9 / early-stopping latency, with its 20 % allowance.
    result = _test04(runs, "caching_TEST04", submission="caching_performance", scenario="SingleStream")
    assert not result.passed and result.figures["threshold"] == 0.20
    assert result.figures["test_score"] > 2 * result.figures["reference_score"]
    assert "TEST PASS" not in result.files[VERIFY_PERFORMANCE]
    assert "suggests cached answers" in result.reasons[0]


# --- what the official checker reads ----------------------------------------------------------------

def _submission_tree(runs, tmp_path: Path, t01: Verification, t04: Verification) -> Path:
    """<scenario>/TEST01 and TEST04 as the round's tree holds them (and run_verification.py makes)."""
    root = tmp_path / "Offline"
    for test, verification, run in (("TEST01", t01, "TEST01"), ("TEST04", t04, "TEST04")):
        verification.write(root / test)
        perf = root / test / "performance" / "run_1"
        perf.mkdir(parents=True)
        for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
            shutil.copy(runs[run] / name, perf / name)
    return root


def _official_compliance_check(checkout: Path, root: Path):
    sys.path.insert(0, str(checkout / "tools" / "submission"))
    try:
        from submission_checker.checks.compliance_check import ComplianceCheck
        from submission_checker.configuration.configuration import Config
        from submission_checker.loader import SubmissionLogs
    finally:
        sys.path.pop(0)
    # What the checker's loader passes on: the lines of TEST01/verify_accuracy.txt.
    data = {
        "division": "closed", "benchmark": "resnet", "scenario": "Offline", "compliance_path": str(root),
        "TEST01_acc_result": (root / "TEST01" / VERIFY_ACCURACY).read_text().splitlines(keepends=True),
    }
    logs = SubmissionLogs(loader_data=data)
    check = ComplianceCheck(logging.getLogger("official-compliance"), str(root), Config(ROUND, {}), logs)
    assert check.test_list == ["TEST01", "TEST04"]
    return check


def test_the_official_compliance_check_reads_our_verify_files(runs, tmp_path, inference_checkout):
    # compliance_check.py: accuracy_check wants a line that is exactly "TEST PASS" in
    # TEST01/verify_accuracy.txt; compliance_performance_check wants "TEST PASS" in a line of
    # TEST01/ and TEST04/verify_performance.txt, and performance/run_1 with the summary and detail.
    passing = _submission_tree(runs, tmp_path / "pass", _test01(runs, "TEST01"), _test04(runs, "TEST04"))
    check = _official_compliance_check(inference_checkout, passing)
    assert check.dir_exists_check() and check.accuracy_check() and check.compliance_performance_check()

    failing = _submission_tree(runs, tmp_path / "fail", _test01(runs, "TEST01_fast"), _test04(runs, "TEST01_fast"))
    check = _official_compliance_check(inference_checkout, failing)
    assert check.dir_exists_check() and not check.compliance_performance_check()
    # A TEST01 accuracy failure sends the checker to look for the non-deterministic evidence
    # (TEST01/accuracy/baseline_accuracy.txt ...), which our tree does not have: it fails.
    wrong = _submission_tree(runs, tmp_path / "wrong", _test01(runs, "TEST01_wrong"), _test04(runs, "TEST04"))
    assert not _official_compliance_check(inference_checkout, wrong).accuracy_check()


def test_label_of_is_the_deterministic_sut():
    import numpy as np

    indices = np.arange(12)
    assert label_of(indices).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert (wrong_for_odd(indices) != label_of(indices)).tolist() == [i % 2 == 1 for i in range(12)]


# --- MLCommons' own run_verification.py, and ours beside it ----------------------------------------

def _official_test01(checkout: Path, runs, run: str, out: Path) -> official.OfficialVerdict:
    return official.verify_test01(
        checkout, accuracy_log=runs["accuracy"] / "mlperf_log_accuracy.json",
        submission_perf_dir=runs["performance"], test_dir=runs[run], output_dir=out, dtype="int32",
    )


def _official_test04(checkout: Path, runs, run: str, out: Path, submission: str = "performance"):
    return official.verify_test04(checkout, submission_perf_dir=runs[submission], test_dir=runs[run], output_dir=out)


def _relative_files(verdict: official.OfficialVerdict) -> list[str]:
    return [p.relative_to(verdict.folder).as_posix() for p in verdict.files]


@pytest.mark.parametrize("run, accuracy, performance", [
    ("TEST01", True, True),
    ("TEST01_wrong", False, True),  # odd samples answered otherwise in performance mode
    ("TEST01_fast", True, False),  # twice the submission run's throughput
])
def test_official_test01_and_ours_agree(runs, tmp_path, inference_checkout, run, accuracy, performance):
    verdict = _official_test01(inference_checkout, runs, run, tmp_path)
    ours = _test01(runs, run)
    assert verdict.passed == ours.passed == (accuracy and performance)
    assert {c.name: c.passed for c in verdict.checks} == {VERIFY_ACCURACY: accuracy, VERIFY_PERFORMANCE: performance}
    assert verdict.accuracy_passed is ours.accuracy_passed is accuracy
    assert ("TEST PASS" in ours.files[VERIFY_PERFORMANCE]) is performance
    expected = "TEST PASS" if accuracy else "TEST FAIL"
    assert f"{VERIFY_ACCURACY}: {expected}" in verdict.decided_by
    if not performance:
        assert f"{VERIFY_PERFORMANCE}: TEST FAIL: Test score invalid" in verdict.decided_by
        assert verdict.reasons == [
            f"TEST01/{VERIFY_PERFORMANCE}: TEST FAIL: Test score invalid "
            "(MLCommons compliance/TEST01/run_verification.py)"
        ]
    # The script's own counters. Its mismatch count compares each answer with the previous one for
    # the sample (ours with the accuracy run's): the counts differ, whether there are any does not.
    counts = dict(line.split(" = ") for line in (verdict.folder / VERIFY_ACCURACY).read_text().splitlines()
                  if line.startswith("num_"))
    assert (int(counts["num_perf_log_data_mismatch"]) > 0) is (ours.figures["mismatched"] > 0) is (not accuracy)
    assert int(counts["num_perf_log_qsl_idx_match"]) == ours.figures["compared"] == 1650
    # The folder as the round's tree holds it, the run's logs copied unchanged.
    assert verdict.folder == tmp_path / "TEST01" and verdict.test == "TEST01" and verdict.round == ROUND
    assert verdict.tree_path == "{division}/{submitter}/results/{system}/{benchmark}/{scenario}/TEST01"
    assert _relative_files(verdict) == [
        "accuracy/mlperf_log_accuracy.json", "performance/run_1/mlperf_log_detail.txt",
        "performance/run_1/mlperf_log_summary.txt", VERIFY_ACCURACY, VERIFY_PERFORMANCE,
    ]
    assert (verdict.folder / "accuracy" / "mlperf_log_accuracy.json").read_bytes() == \
        (runs[run] / "mlperf_log_accuracy.json").read_bytes()


@pytest.mark.parametrize("run, submission, passed", [
    ("TEST04", "performance", True),
    ("TEST01_fast", "performance", False),  # Offline, twice as fast as the submission run
    ("caching_TEST04", "caching_performance", False),  # SingleStream, a SUT that caches answers
])
def test_official_test04_and_ours_agree(runs, tmp_path, inference_checkout, run, submission, passed):
    verdict = _official_test04(inference_checkout, runs, run, tmp_path, submission)
    scenario = parse_detail_log(runs[run] / "mlperf_log_detail.txt").get("effective_scenario")
    ours = _test04(runs, run, submission=submission, scenario=scenario)
    assert verdict.passed is ours.passed is passed
    assert verdict.accuracy_passed is None and [c.name for c in verdict.checks] == [VERIFY_PERFORMANCE]
    decided = "TEST PASS" if passed else "TEST FAIL: Test score invalid"
    assert verdict.decided_by == [f"{VERIFY_PERFORMANCE}: {decided}"]
    # TEST04's script reads the summaries, ours the detail logs: the same rates.
    text = (verdict.folder / VERIFY_PERFORMANCE).read_text()
    official_scores = [float(line.split(" = ")[1]) for line in text.splitlines() if line.endswith(tuple("0123456789"))
                       and " score = " in line]
    assert official_scores == pytest.approx([ours.figures["reference_score"], ours.figures["test_score"]], rel=1e-4)
    assert _relative_files(verdict) == [
        "performance/run_1/mlperf_log_detail.txt", "performance/run_1/mlperf_log_summary.txt", VERIFY_PERFORMANCE,
    ]


def test_official_output_is_what_the_checker_reads(runs, tmp_path, inference_checkout):
    root = tmp_path / "Offline"
    assert _official_test01(inference_checkout, runs, "TEST01", root).passed
    assert _official_test04(inference_checkout, runs, "TEST04", root).passed
    check = _official_compliance_check(inference_checkout, root)
    assert check.dir_exists_check() and check.accuracy_check() and check.compliance_performance_check()


def test_official_verification_fails_loudly_without_a_verdict(runs, tmp_path, inference_checkout):
    # TEST04's script ends a scenario mismatch with a line that is neither TEST PASS nor TEST FAIL.
    with pytest.raises(ValidationError, match=r"TEST04/run_verification.py: .*verify_performance.txt holds no "
                                              r"'TEST PASS' or 'TEST FAIL' line; its last line: Test and reference "
                                              r"scenarios do not match!"):
        _official_test04(inference_checkout, runs, "caching_TEST04", tmp_path)
    # The script copies into what is there: a stale verify file could pass for its verdict.
    with pytest.raises(ValidationError, match=r"TEST04: exists; .* needs a fresh output folder"):
        _official_test04(inference_checkout, runs, "TEST04", tmp_path)
    with pytest.raises(ValidationError, match=rf"{tmp_path}/mlperf_log_detail.txt: missing: the submission run's"):
        official.verify_test01(inference_checkout, accuracy_log=runs["accuracy"] / "mlperf_log_accuracy.json",
                               submission_perf_dir=tmp_path, test_dir=runs["TEST01"], output_dir=tmp_path / "out")
    with pytest.raises(ConfigError, match=r"constants.py: TEST01_ACC_PATH has no round 'v0.1'"):
        official.verify_test01(inference_checkout, accuracy_log=runs["accuracy"] / "mlperf_log_accuracy.json",
                               submission_perf_dir=runs["performance"], test_dir=runs["TEST01"],
                               output_dir=tmp_path / "out", round="v0.1")
    with pytest.raises(ConfigError, match="is not a checkout of mlcommons/inference"):
        official.verify_test04(tmp_path, submission_perf_dir=runs["performance"], test_dir=runs["TEST04"],
                               output_dir=tmp_path / "out")


# --- packaging: MLCommons' output in the tree, ours in its place without a checkout ----------------

def _group(runs, test01: str = "TEST01") -> ScenarioResults:
    tests = {"accuracy": runs["accuracy"], "performance": runs["performance"], "TEST01": runs[test01],
             "TEST04": runs["TEST04"]}
    return ScenarioResults("sut", "resnet", "Offline", tests=tests)


def _package_tests(group: ScenarioResults, root: Path, checker: Path | None, staging: Path) -> tuple[Path, dict]:
    settings = {"inference": {"checker": str(checker) if checker else None, "round": ROUND}}
    submission = {"division": "closed", "submitter": "org"}
    scenario_dir = root / "closed" / "org" / "results" / "sut" / "resnet" / "Offline"
    verdicts = {test: verify_test(test, group, settings, staging) for test in COMPLIANCE_TESTS}
    for test, verdict in verdicts.items():
        write_test(scenario_dir / test, group, verdict, root, "resnet", submission)
    return scenario_dir, verdicts


def test_packaging_keeps_the_official_output_where_the_checker_reads_it(runs, tmp_path, inference_checkout):
    official_dir, theirs = _package_tests(_group(runs), tmp_path / "official", inference_checkout, tmp_path / "s")
    own_dir, ours = _package_tests(_group(runs), tmp_path / "own", None, tmp_path / "s2")
    assert all(v.official is not None and v.disagreement() is None and v.passed for v in theirs.values())
    assert theirs["TEST01"].verified_by.startswith("MLCommons' compliance/TEST01/run_verification.py (round v6.1)")
    assert all(v.official is None and v.passed for v in ours.values())
    assert ours["TEST04"].verified_by == "benchpipe's own verification (no inference.checker configured)"
    # The same layout either way; ours labelled as benchpipe's in each verify file.
    listing = {d: sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
               for d in (official_dir, own_dir)}
    assert listing[official_dir] == listing[own_dir] == [
        "TEST01/accuracy/mlperf_log_accuracy.json", "TEST01/performance/run_1/mlperf_log_detail.txt",
        "TEST01/performance/run_1/mlperf_log_summary.txt", "TEST01/verify_accuracy.txt",
        "TEST01/verify_performance.txt", "TEST04/performance/run_1/mlperf_log_detail.txt",
        "TEST04/performance/run_1/mlperf_log_summary.txt", "TEST04/verify_performance.txt",
    ]
    for name in ("TEST01/verify_accuracy.txt", "TEST04/verify_performance.txt"):
        assert (own_dir / name).read_text().startswith("benchpipe's own TEST0")
        assert "benchpipe" not in (official_dir / name).read_text()
    for root in (official_dir, own_dir):
        check = _official_compliance_check(inference_checkout, root)
        assert check.dir_exists_check() and check.accuracy_check() and check.compliance_performance_check()


def test_packaging_refuses_a_failing_or_disputed_verification(runs, tmp_path, inference_checkout):
    _, verdicts = _package_tests(_group(runs, "TEST01_wrong"), tmp_path / "tree", inference_checkout, tmp_path / "s")
    wrong = verdicts["TEST01"]
    assert not wrong.passed and wrong.accuracy_passed is False and wrong.disagreement() is None
    # A failed comparison of answers stops packaging even for a development run.
    assert judged(wrong, RunKind(official=False, min_duration_ms=100, accuracy_samples=None))
    assert wrong.reasons[0] == "TEST01/verify_accuracy.txt: TEST FAIL (MLCommons compliance/TEST01/run_verification.py)"
    assert wrong.reasons[1].startswith("TEST01 accuracy: ")  # ours, saying which answers differ
    # Were benchpipe's verification to pass what MLCommons' fails, the two would disagree: an error.
    disputed = ComplianceVerdict("TEST01", _test01(runs, "TEST01"), wrong.official)
    assert disputed.disagreement() == (
        "TEST01: MLCommons' run_verification.py and benchpipe's verification disagree: theirs "
        "verify_accuracy.txt: TEST FAIL; verify_performance.txt: TEST PASS; ours TEST PASS"
    )


@pytest.mark.parametrize("checker", [True, False])
@pytest.mark.parametrize("test01, passes", [("TEST01", True), ("TEST01_wrong", False)])
def test_the_audit_verifies_the_packaged_tests_again(runs, tmp_path, inference_checkout, checker, test01, passes):
    from benchpipe.audit import FAIL, PASS, Item
    from benchpipe.audit.tree import _compliance_tests

    tree = tmp_path / "tree"
    group = _group(runs, test01)
    if passes:
        scenario_dir, _ = _package_tests(group, tree / "inference", inference_checkout if checker else None, tmp_path)
    else:
        # Packaging would refuse it: lay it out from its verdict, as a tampered tree would hold it.
        settings = {"inference": {"checker": str(inference_checkout) if checker else None, "round": ROUND}}
        scenario_dir = tree / "inference" / "closed" / "org" / "results" / "sut" / "resnet" / "Offline"
        verdict = verify_test("TEST01", group, settings, tmp_path)
        write_test(scenario_dir / "TEST01", group, verdict, tree / "inference", "resnet",
                   {"division": "closed", "submitter": "org"})
    (scenario_dir / "performance" / "run_1").mkdir(parents=True)
    for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
        shutil.copy(runs["performance"] / name, scenario_dir / "performance" / "run_1" / name)
    raw = tree / RAW_DIR / "sut" / "resnet" / "Offline"
    raw.mkdir(parents=True)
    shutil.copy(runs["accuracy"] / "mlperf_log_accuracy.json", raw / "mlperf_log_accuracy.json")
    item = Item("checkers")
    # The TEST01 run's accuracy log is read from TEST01/accuracy/, where run_verification.py puts it.
    _compliance_tests(tree, tree, item, RunKind(official=False, min_duration_ms=100, accuracy_samples=None))
    assert item.checked == (2 if passes else 1)
    assert item.status == (PASS if passes else FAIL), item.reasons
    if not passes:
        [reason] = item.reasons
        assert reason.startswith("inference/closed/org/results/sut/resnet/Offline/TEST01: TEST01 accuracy: ")
