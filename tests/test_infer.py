"""LoadGen tests through the real mlperf_loadgen, each in its own process as in the workflow."""

import json
import subprocess
import sys

import numpy as np
import pytest

from benchpipe.errors import InferenceError
from benchpipe.infer.loadgen_run import LoadGenTest, accuracy_from_log
from benchpipe.results.loadgen_parser import parse_accuracy_txt, parse_detail_log
from benchpipe.results.tables import inference_row


def run_infer(cli_env, data, train_run, runs, scenario, mode, min_ms=500):
    out = runs / "local-cpu" / "digits" / "infer" / scenario / mode
    proc = subprocess.run(
        [sys.executable, "-m", "benchpipe.cli", "infer", "--benchmark", "digits", "--data", str(data),
         "--train-runs", str(train_run), "--scenario", scenario, "--mode", mode,
         "--min-duration-ms", str(min_ms), "--threads", "2", "--out", str(out)],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream"])
def test_performance_run_is_valid(cli_env, digits_data, trained_run, tmp_path, scenario):
    out = run_infer(cli_env, digits_data, trained_run, tmp_path, scenario, "performance")
    detail = parse_detail_log(out / "mlperf_log_detail.txt")
    assert detail.get("result_validity") == "VALID", detail.get("result_invalid_reason")
    assert detail.errors == []
    assert detail.get("effective_min_duration_ms") == 500
    conf = (out / "user.conf").read_text()
    assert f"digits.{scenario}.min_duration = 500" in conf
    assert "not valid for an official round" in conf
    row = inference_row("local-cpu", "digits", scenario, "performance", out)
    assert row["samples_per_second"] > 0 and row["official_round_valid"] is False


def test_accuracy_run_reaches_target(cli_env, digits_data, trained_run, tmp_path):
    out = run_infer(cli_env, digits_data, trained_run, tmp_path, "Offline", "accuracy")
    accuracy = parse_accuracy_txt(out / "accuracy.txt")
    assert accuracy >= 0.97 * 0.99
    entries = json.loads((out / "mlperf_log_accuracy.json").read_text())
    assert len({e["qsl_idx"] for e in entries}) == 360
    row = inference_row("local-cpu", "digits", "Offline", "accuracy", out)
    assert row["accuracy"] == pytest.approx(accuracy)
    assert row["result_validity"] is None


def test_accuracy_script_decodes_responses(tmp_path):
    labels = np.array([1, 2, 3], dtype=np.int32)
    entries = [{"seq_id": i, "qsl_idx": i, "data": np.array([p], "<i4").tobytes().hex()} for i, p in enumerate([1, 2, 0])]
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps(entries))
    assert accuracy_from_log(log, labels) == (pytest.approx(2 / 3), 3)
    log.write_text(json.dumps([{"qsl_idx": 0, "data": "zz"}]))
    with pytest.raises(InferenceError, match="entry 0: malformed"):
        accuracy_from_log(log, labels)


def test_bad_scenario_is_refused():
    with pytest.raises(InferenceError, match="scenario 'Server' is not one of"):
        LoadGenTest("Server", "performance", 1000)
