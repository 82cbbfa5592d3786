"""LoadGen through the command line, each test in its own process as in the workflow:
a calibration per scenario writes the user.conf every test of that scenario runs with."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from benchpipe.contracts.errors import InferenceError
from benchpipe.contracts.records import RunKind
from benchpipe.contracts.registry import get
from benchpipe.infer.loadgen_run import LoadGenTest, accuracy_from_log, read_calibration
from benchpipe.infer.models import savedmodel_sha256
from benchpipe.infer.validity import check_performance
from benchpipe.results.loadgen_parser import parse_accuracy_txt, parse_detail_log
from benchpipe.results.tables import SCENARIO_METRIC, inference_row

# LoadGen's verdicts here depend on timing: these tests run in a pass of their own (Makefile).
pytestmark = pytest.mark.timing

MIN_MS = 1000


def benchpipe(cli_env, *args):
    return subprocess.run([sys.executable, "-m", "benchpipe.cli", *args], env=cli_env,
                          capture_output=True, text=True, timeout=600)


def calibrate(cli_env, data, model_args, out, scenario, *extra):
    proc = benchpipe(cli_env, "calibrate", "--benchmark", "digits", "--data", str(data), *model_args,
                     "--scenario", scenario, "--min-duration-ms", str(MIN_MS), "--threads", "2",
                     "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def infer(cli_env, data, calibration, out, scenario, mode):
    proc = benchpipe(cli_env, "infer", "--benchmark", "digits", "--data", str(data), "--calibration",
                     str(calibration), "--scenario", scenario, "--mode", mode, "--threads", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def calibrations(cli_env, digits_data, trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("infer") / "local-cpu" / "digits" / "infer"
    return {
        s: calibrate(cli_env, digits_data, ["--train-runs", str(trained_run)], root / s / "calibration", s,
                     "--accuracy-samples", "200")
        for s in ("Offline", "SingleStream", "MultiStream", "Server")
    }


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream", "MultiStream", "Server"])
def test_calibrated_performance_run_is_valid_the_first_time(cli_env, digits_data, calibrations, scenario):
    calibration = calibrations[scenario]
    out = infer(cli_env, digits_data, calibration, calibration.parent / "performance", scenario, "performance")
    path = out / "mlperf_log_detail.txt"
    detail = parse_detail_log(path)
    problems = check_performance(detail, path, scenario=scenario, official=False, min_duration_ms=MIN_MS,
                                 loadgen_model="digits", division="closed")
    assert problems == []
    assert detail.get("effective_min_duration_ms") == MIN_MS
    # Server's user.conf has LoadGen issue overdue queries together, as calibration ran them
    # (LoadGen logs the setting in Server runs only).
    assert detail.get("requested_server_coalesce_queries") is (True if scenario == "Server" else None)
    conf = (out / "user.conf").read_text()
    assert conf == (calibration / "user.conf").read_text()
    assert f"digits.{scenario}.min_duration = {MIN_MS}" in conf and "not valid for a round" in conf
    key = {"Offline": "target_qps", "Server": "target_qps"}.get(scenario, "target_latency")
    assert f"digits.{scenario}.{key} = " in conf
    row = inference_row("local-cpu", "digits", scenario, "performance", out)
    assert row["result_key"] == SCENARIO_METRIC[scenario]
    assert (row["result_latency_ns"] or row["result_samples_per_s"]) > 0 and row["official_round_valid"] is False and row["official_run"] is False
    assert row["model_sha256"] == json.loads((calibration / "model.json").read_text())["sha256"]


def test_server_calibration_searched_for_a_valid_rate(calibrations):
    kind, calibration = read_calibration(calibrations["Server"])
    assert kind == RunKind(False, MIN_MS, 200)
    tried = calibration.search
    assert any(valid for _, valid, _ in tried)
    assert calibration.server_target_qps <= max(qps for qps, valid, _ in tried if valid)
    assert f"digits.Server.target_qps = {round(calibration.server_target_qps, 1)}" in (
        calibrations["Server"] / "user.conf").read_text()


def test_accuracy_run_covers_the_development_subset(cli_env, digits_data, calibrations):
    calibration = calibrations["Offline"]
    out = infer(cli_env, digits_data, calibration, calibration.parent / "accuracy", "Offline", "accuracy")
    accuracy = parse_accuracy_txt(out / "accuracy.txt")
    assert accuracy >= get("digits").inference.accuracy_target
    entries = json.loads((out / "mlperf_log_accuracy.json").read_text())
    assert sorted({e["qsl_idx"] for e in entries}) == list(range(200))  # the first 200, each once
    row = inference_row("local-cpu", "digits", "Offline", "accuracy", out)
    assert row["accuracy"] == pytest.approx(accuracy) and row["result_validity"] is None


def test_compliance_runs_apply_their_audit_config(cli_env, digits_data, calibrations):
    calibration = calibrations["SingleStream"]
    test01 = infer(cli_env, digits_data, calibration, calibration.parent / "TEST01", "SingleStream", "TEST01")
    detail = parse_detail_log(test01 / "mlperf_log_detail.txt")
    assert detail.get("result_validity") == "VALID"
    assert detail.get("effective_accuracy_log_sampling_target") > 0
    assert json.loads((test01 / "mlperf_log_accuracy.json").read_text())  # performance answers logged
    test04 = infer(cli_env, digits_data, calibration, calibration.parent / "TEST04", "SingleStream", "TEST04")
    assert parse_detail_log(test04 / "mlperf_log_detail.txt").get("effective_performance_issue_same") is True
    # An audit.config never leaks into a submission run of the same scenario.
    plain = calibration.parent / "performance"
    if not plain.exists():
        infer(cli_env, digits_data, calibration, plain, "SingleStream", "performance")
    detail = parse_detail_log(plain / "mlperf_log_detail.txt")
    assert detail.get("effective_performance_issue_same") is False
    assert detail.get("effective_accuracy_log_sampling_target") == 0


def test_supplied_model_is_checked_against_its_sha256(cli_env, digits_data, trained_run, tmp_path):
    model = tmp_path / "supplied"
    shutil.copytree(trained_run / "model", model)
    digest = savedmodel_sha256(model)
    printed = benchpipe(cli_env, "model-sha256", str(model))
    assert printed.returncode == 0 and printed.stdout.strip() == digest
    out = calibrate(cli_env, digits_data, ["--model", str(model), "--model-sha256", digest],
                    tmp_path / "Offline" / "calibration", "Offline")
    record = json.loads((out / "model.json").read_text())
    assert record["origin"] == "supplied" and record["sha256"] == digest

    (model / "variables" / "extra").write_text("changed")
    bad = benchpipe(cli_env, "calibrate", "--benchmark", "digits", "--data", str(digits_data), "--model", str(model),
                    "--model-sha256", digest, "--scenario", "Offline", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1
    assert "inference.models.digits.sha256" in bad.stderr and "the config says" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_accuracy_script_decodes_responses(tmp_path):
    labels = np.array([1, 2, 3], dtype=np.int32)
    entries = [{"seq_id": i, "qsl_idx": i, "data": np.array([p], "<i4").tobytes().hex()} for i, p in enumerate([1, 2, 0])]
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps(entries))
    assert accuracy_from_log(log, labels) == (pytest.approx(2 / 3), 3)
    log.write_text(json.dumps([{"qsl_idx": 0, "data": "zz"}]))
    with pytest.raises(InferenceError, match="entry 0: malformed"):
        accuracy_from_log(log, labels)


def test_bad_scenario_and_mode_are_refused():
    with pytest.raises(InferenceError, match="scenario 'Interactive' is not one of"):
        LoadGenTest("Interactive", "performance")
    with pytest.raises(InferenceError, match="mode 'TEST05' is not one of"):
        LoadGenTest("Offline", "TEST05")


def test_run_kinds_from_the_config():
    official = RunKind.from_settings({"official": True, "min_duration_ms": 1000, "accuracy_samples": 10})
    assert official == RunKind(True, 600_000, None) and official.label == "official"
    development = RunKind.from_settings({"official": False, "min_duration_ms": 1000, "accuracy_samples": 10})
    assert development == RunKind(False, 1000, 10)
    assert "not valid for a round" in development.label and "first 10 samples" in development.label


def test_an_invalid_timed_run_fails_and_leaves_nothing_for_a_rerun_to_take_as_done(cli_env, digits_data,
                                                                                    calibrations, tmp_path):
    """A bound no run can meet (1 us) makes the Server run INVALID: the job fails, naming why."""
    calibration = tmp_path / "calibration"
    shutil.copytree(calibrations["Server"], calibration)
    conf = calibration / "user.conf"
    conf.write_text(conf.read_text() + "digits.Server.target_latency = 0.001\n")
    out = tmp_path / "performance"
    proc = benchpipe(cli_env, "infer", "--benchmark", "digits", "--data", str(digits_data), "--calibration",
                     str(calibration), "--scenario", "Server", "--mode", "performance", "--threads", "2",
                     "--out", str(out))
    assert proc.returncode == 1
    assert "Server performance: LoadGen judged the run INVALID (Reduce target QPS" in proc.stderr
    assert "p99 latency" in proc.stderr and "nothing kept, run it again" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".performance.partial-*"))
