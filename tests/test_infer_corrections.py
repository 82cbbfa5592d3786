"""A performance run that a wrong calibration made INVALID is corrected from what it measured, and run again.

LoadGen's own reason names the setting: Offline's expected QPS, the SingleStream or MultiStream
expected latency, a Server rate the run did not sustain. The first tests read real LoadGen logs
of a tiny numpy SUT (tests/loadgen_logs.py, no TensorFlow); those marked ``timing`` force a wrong
user.conf on the digits model through `benchpipe infer`, as the workflow runs it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from loadgen_logs import run_loadgen

from benchpipe.contracts.records import RunKind
from benchpipe.contracts.schemas import load_schema
from benchpipe.infer.loadgen_run import (
    LATENCY_HEADROOM,
    OFFLINE_QPS_HEADROOM,
    Correction,
    corrected_conf,
    correction_for,
    read_calibration,
)
from benchpipe.infer.validity import (
    LOWER_EXPECTED_LATENCY,
    LOWER_SERVER_QPS,
    RAISE_OFFLINE_QPS,
    check_performance,
    correctable_recommendation,
)
from benchpipe.package.inference import correction_note, scenario_readme
from benchpipe.results.loadgen_parser import DetailLog, parse_detail_log
from benchpipe.results.tables import provenance_row

MIN_MS = 1000


def _detail(run: Path) -> DetailLog:
    return parse_detail_log(run / "mlperf_log_detail.txt")


@pytest.fixture(scope="module")
def invalid_runs(tmp_path_factory) -> dict[str, DetailLog]:
    """Real LoadGen runs, each INVALID for one reason (about half a second each)."""
    tmp = tmp_path_factory.mktemp("reasons")
    plan = {
        # One query of 30 samples, answered in 3 ms: far below min_duration.
        "offline": dict(scenario="Offline", delay_s=1e-4, extra_conf={"target_qps": 100, "min_query_count": 1}),
        # 50 ms expected for a 1 ms SUT: LoadGen generates too few queries, and runs out.
        "single_stream": dict(scenario="SingleStream", delay_s=1e-3, extra_conf={"target_latency": 50}),
        # 1,000 queries/s scheduled for a SUT that takes 2 ms each: it falls behind.
        "server_behind": dict(scenario="Server", delay_s=2e-3, extra_conf={"target_qps": 1000, "target_latency": 15}),
        # 100 queries/s kept up with, but each takes 2 ms against a 1 ms bound: no rate helps.
        "server_kept_up": dict(scenario="Server", delay_s=2e-3, extra_conf={"target_qps": 100, "target_latency": 1}),
        # max_duration stops the run long before its minimum query count.
        "exited_early": dict(scenario="SingleStream", delay_s=1e-3,
                             extra_conf={"target_latency": 0.25, "min_query_count": 100000, "max_duration": 250}),
    }
    return {name: _detail(run_loadgen(tmp / name, model="digits", min_duration_ms=300, **kwargs))
            for name, kwargs in plan.items()}


def test_loadgen_names_each_correctable_setting_in_its_own_words(invalid_runs):
    offline = correctable_recommendation(invalid_runs["offline"], "Offline")
    assert (offline.key, offline.lower, offline.text) == ("target_qps", False, RAISE_OFFLINE_QPS)
    single = correctable_recommendation(invalid_runs["single_stream"], "SingleStream")
    assert (single.key, single.lower, single.text) == ("target_latency", True, LOWER_EXPECTED_LATENCY)
    # LoadGen logs an error beside it when the queries ran out: that one error is part of the reason.
    assert any("Ran out of generated queries" in e for e in invalid_runs["single_stream"].errors)
    server = correctable_recommendation(invalid_runs["server_behind"], "Server")
    assert (server.key, server.lower, server.text) == ("target_qps", True, LOWER_SERVER_QPS)
    # The test exiting early, or a reason of another scenario, is not a setting to correct.
    assert correctable_recommendation(invalid_runs["exited_early"], "SingleStream") is None
    assert correctable_recommendation(invalid_runs["offline"], "Server") is None


def test_each_correction_comes_from_what_the_run_measured(invalid_runs):
    offline = invalid_runs["offline"]
    fix = correction_for(offline, "Offline")
    rate = offline.get("result_samples_per_second")
    assert fix.before == 100 and fix.after == round(rate * OFFLINE_QPS_HEADROOM, 1) > fix.before
    assert fix.recommendation == RAISE_OFFLINE_QPS and f"{rate:.1f} samples/s" in fix.measured

    single = invalid_runs["single_stream"]
    fix = correction_for(single, "SingleStream")
    median = single.get("result_50.00_percentile_latency_ns")
    assert fix.key == "target_latency" and fix.before == 50.0
    assert fix.after == round(median * LATENCY_HEADROOM / 1e6, 3) < fix.before
    assert f"median latency {median / 1e6:.3f} ms" in fix.measured

    behind = invalid_runs["server_behind"]
    fix = correction_for(behind, "Server")
    completed = behind.get("result_completed_samples_per_sec")
    assert completed < 0.95 * behind.get("result_scheduled_samples_per_sec")
    assert fix.before == 1000 and fix.after == round(completed * 0.8, 1) < completed


def test_what_a_setting_cannot_cure_is_not_corrected(invalid_runs):
    kept_up = invalid_runs["server_kept_up"]
    assert correctable_recommendation(kept_up, "Server") is not None  # LoadGen does say: reduce target QPS
    assert kept_up.get("result_completed_samples_per_sec") >= 0.95 * kept_up.get("result_scheduled_samples_per_sec")
    assert correction_for(kept_up, "Server") is None  # but the run kept up: a lower rate would be a guess
    assert correction_for(invalid_runs["exited_early"], "SingleStream") is None


def test_the_corrected_setting_replaces_its_line_with_the_reason_above_it():
    conf = "# benchpipe dev\nm.Offline.min_duration = 1000\n# 10.0 samples/s measured\nm.Offline.target_qps = 20.0\n"
    fix = Correction("target_qps", 20.0, 400.0, "200.0 samples/s; target 2.0 x that", RAISE_OFFLINE_QPS)
    lines = corrected_conf(conf, "m", "Offline", fix, 1).splitlines()
    assert lines[:3] == ["# benchpipe dev", "m.Offline.min_duration = 1000", "# 10.0 samples/s measured"]
    assert lines[3].startswith("# attempt 1 ran with m.Offline.target_qps = 20.0: LoadGen judged it INVALID: Incr")
    assert lines[4] == "# corrected by benchpipe infer from what it measured: 200.0 samples/s; target 2.0 x that"
    assert lines[5:] == ["m.Offline.target_qps = 400.0"]
    # A user.conf without the setting (LoadGen's default) gets it at the end.
    assert corrected_conf("m.Offline.min_duration = 1000\n", "m", "Offline", fix, 2).endswith(
        "\nm.Offline.target_qps = 400.0\n")


def test_a_scenario_readme_says_its_user_conf_was_corrected():
    kind = RunKind(False, 1000, 200)
    attempts = [
        {"attempt": 1, "folder": "attempts/1", "user_conf_sha256": "a" * 64, "result_validity": "INVALID",
         "invalid_reason": RAISE_OFFLINE_QPS,
         "correction": {"key": "target_qps", "before": 20.0, "after": 400.0, "measured": "200.0 samples/s",
                        "recommendation": RAISE_OFFLINE_QPS}},
        {"attempt": 2, "folder": ".", "user_conf_sha256": "b" * 64, "result_validity": "VALID",
         "invalid_reason": None, "correction": None},
    ]
    assert correction_note(attempts[1:]) == correction_note(None) == ""
    readme = scenario_readme("t", "digits", "Offline", "model", "6.0.17", kind, {}, attempts)
    assert scenario_readme("t", "digits", "Offline", "model", "6.0.17", kind, {}) in readme
    assert "**user.conf corrected**: LoadGen judged 1 performance attempt(s) INVALID" in readme
    assert f"attempt 1: target_qps 20.0 -> 400.0 ({RAISE_OFFLINE_QPS})" in readme


# --- the digits model through `benchpipe infer` ----------------------------------------------------


def benchpipe(cli_env, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchpipe.cli", *args], env=cli_env, cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def infer(cli_env, data: Path, calibration: Path, out: Path, scenario: str, mode: str = "performance",
          *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return benchpipe(cli_env, "infer", "--benchmark", "digits", "--data", str(data), "--calibration",
                     str(calibration), "--scenario", scenario, "--mode", mode, "--threads", "2", "--out", str(out),
                     *extra, cwd=cwd)


@pytest.fixture(scope="module")
def calibrated(cli_env, digits_data, trained_run, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corrections")
    found = {}
    for scenario in ("Offline", "SingleStream"):
        out = root / scenario
        proc = benchpipe(cli_env, "calibrate", "--benchmark", "digits", "--data", str(digits_data), "--train-runs",
                         str(trained_run), "--scenario", scenario, "--min-duration-ms", str(MIN_MS),
                         "--accuracy-samples", "200", "--threads", "2", "--out", str(out))
        assert proc.returncode == 0, proc.stderr[-3000:]
        found[scenario] = out
    return found


def miscalibrated(calibration: Path, to: Path, key: str, value: float) -> Path:
    """A copy of ``calibration`` whose user.conf sets ``key`` to ``value``: a calibration gone wrong."""
    shutil.copytree(calibration, to)
    conf = to / "user.conf"
    text, count = re.subn(rf"^(digits\.\w+\.{key}) = .*$", rf"\1 = {value}", conf.read_text(), flags=re.M)
    assert count == 1
    conf.write_text(text)
    return to


def attempts_of(run: Path) -> list[dict]:
    attempts = json.loads((run / "provenance.json").read_text())["attempts"]
    # As provenance.parquet holds them: JSON text whose content the schema describes.
    row = provenance_row("local-cpu", "digits", f"infer/{run.parent.name}/performance", run)
    assert json.loads(row["attempts_json"]) == attempts
    jsonschema.validate(attempts, load_schema("provenance.schema.json")["properties"]["attempts_json"]["contentSchema"])
    return attempts


def conf_value(conf: Path, key: str) -> float:
    return float(re.search(rf"^digits\.\w+\.{key} = (\S+)$", conf.read_text(), flags=re.M).group(1))


def check_kept_attempts(run: Path, attempts: list[dict], key: str, requested_key: str, scale: float = 1.0) -> None:
    """Every INVALID attempt in attempts/<n>/ with the user.conf it ran with; the VALID one is the run itself."""
    *corrected, final = attempts
    assert corrected and all(a["result_validity"] == "INVALID" and a["correction"]["key"] == key for a in corrected)
    digest = hashlib.sha256((run / "user.conf").read_bytes()).hexdigest()
    assert final == {"attempt": len(attempts), "folder": ".", "result_validity": "VALID", "invalid_reason": None,
                     "correction": None, "user_conf_sha256": digest}
    assert sorted(p.name for p in (run / "attempts").iterdir()) == [str(a["attempt"]) for a in corrected]
    for attempt in corrected:
        folder = run / attempt["folder"]
        conf = (folder / "user.conf").read_bytes()
        assert hashlib.sha256(conf).hexdigest() == attempt["user_conf_sha256"]
        detail = _detail(folder)
        assert detail.get("result_validity") == "INVALID"
        assert attempt["invalid_reason"].startswith(attempt["correction"]["recommendation"])
        assert detail.get(requested_key) * scale == pytest.approx(attempt["correction"]["before"], rel=1e-5)
    # Each correction is what LoadGen read for the next attempt; the last one, for the run itself.
    for previous, following in zip(corrected, [*corrected[1:], final], strict=True):
        ran_with = _detail(run / following["folder"]).get(requested_key) * scale
        assert ran_with == pytest.approx(previous["correction"]["after"], rel=1e-5)
    assert conf_value(run / "user.conf", key) == corrected[-1]["correction"]["after"]
    ran = _detail(run)
    assert check_performance(ran, run / "mlperf_log_detail.txt", scenario=run.parent.name, official=False,
                             min_duration_ms=MIN_MS, loadgen_model="digits") == []


@pytest.mark.timing
def test_an_offline_rate_calibrated_a_tenth_too_low_is_corrected_and_the_run_ends_valid(
        cli_env, digits_data, calibrated, tmp_path):
    _, calibration = read_calibration(calibrated["Offline"])
    wrong = miscalibrated(calibrated["Offline"], tmp_path / "calibration", "target_qps",
                          round(calibration.offline_qps / 10, 1))
    calibrated_conf = (wrong / "user.conf").read_text()
    run = tmp_path / "Offline" / "performance"
    proc = infer(cli_env, digits_data, wrong, run, "Offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    attempts = attempts_of(run)
    check_kept_attempts(run, attempts, "target_qps", "requested_offline_expected_qps")
    assert attempts[0]["invalid_reason"] == RAISE_OFFLINE_QPS
    assert (run / "attempts" / "1" / "user.conf").read_text() == calibrated_conf
    assert "LoadGen judged it INVALID: Increase expected QPS" in (run / "user.conf").read_text()
    assert (wrong / "user.conf").read_text() == calibrated_conf  # the calibration stays as calibrate wrote it

    # A compliance test runs exactly as the submission run: with the user.conf it ended with.
    test04 = tmp_path / "Offline" / "TEST04"
    proc = infer(cli_env, digits_data, wrong, test04, "Offline", "TEST04", "--user-conf", str(run / "user.conf"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (test04 / "user.conf").read_bytes() == (run / "user.conf").read_bytes()
    assert json.loads((test04 / "provenance.json").read_text())["attempts"] is None
    assert not (test04 / "attempts").exists()


@pytest.mark.timing
def test_a_single_stream_latency_far_too_high_is_corrected_and_the_run_ends_valid(
        cli_env, digits_data, calibrated, tmp_path):
    # 100 ms for a model that answers in a fraction of a millisecond: LoadGen generates its 100
    # minimum queries, and they run out long before min_duration.
    wrong = miscalibrated(calibrated["SingleStream"], tmp_path / "calibration", "target_latency", 100)
    run = tmp_path / "SingleStream" / "performance"
    proc = infer(cli_env, digits_data, wrong, run, "SingleStream")
    assert proc.returncode == 0, proc.stderr[-3000:]
    attempts = attempts_of(run)
    check_kept_attempts(run, attempts, "target_latency", "requested_single_stream_expected_latency_ns", 1e-6)
    assert attempts[0]["correction"]["before"] == 100.0
    assert attempts[0]["invalid_reason"] == LOWER_EXPECTED_LATENCY
    assert "Decrease the expected latency" in proc.stderr  # the job's log says what it corrected


@pytest.mark.timing
def test_a_calibrated_run_needs_no_correction_and_keeps_no_attempts(cli_env, digits_data, calibrated, tmp_path):
    run = tmp_path / "performance"
    proc = infer(cli_env, digits_data, calibrated["SingleStream"], run, "SingleStream")
    assert proc.returncode == 0, proc.stderr[-3000:]
    attempts = attempts_of(run)
    assert [(a["attempt"], a["folder"], a["result_validity"], a["correction"]) for a in attempts] == [
        (1, ".", "VALID", None)]
    assert not (run / "attempts").exists()
    assert (run / "user.conf").read_bytes() == (calibrated["SingleStream"] / "user.conf").read_bytes()


@pytest.mark.timing
def test_an_invalid_run_the_harness_cannot_correct_still_fails_with_loadgens_reason(
        cli_env, digits_data, calibrated, tmp_path):
    """max_duration ends the run before its minimum query count: no setting LoadGen names would help."""
    calibration = tmp_path / "calibration"
    shutil.copytree(calibrated["SingleStream"], calibration)
    conf = calibration / "user.conf"
    conf.write_text(conf.read_text() + "digits.SingleStream.min_query_count = 10000000\n"
                                       "digits.SingleStream.max_duration = 300\n")
    run = tmp_path / "performance"
    proc = infer(cli_env, digits_data, calibration, run, "SingleStream")
    assert proc.returncode == 1
    assert ("SingleStream performance: LoadGen judged the run INVALID (Decrease the expected latency so the loadgen "
            "pre-generates more queries. The test exited early, before enough queries were issued.)") in proc.stderr
    assert "correction(s)" not in proc.stderr and "nothing kept, run it again" in proc.stderr
    assert not run.exists() and not list(tmp_path.glob(".performance.partial-*"))


def test_the_workflow_runs_each_compliance_test_with_its_performance_runs_user_conf(repo_root, tmp_path, cli_env):
    proc = subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(tmp_path), "-n", "-p", "--cores", "2",
         "submit", "--configfile", str(repo_root / ".test" / "config" / "config.yaml")],
        env=cli_env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = [line for line in proc.stdout.splitlines() if " -- benchpipe infer " in line]
    assert len(commands) == 16  # 4 scenarios x performance, accuracy, TEST01, TEST04
    for command in commands:
        scenario, mode = re.search(r"--scenario (\w+) --mode (\w+)", command).groups()
        # Copied out of the performance run's folder, which a container would not show beside the test's.
        conf = f"runs/local-cpu/digits/performance_conf/{scenario}/user.conf"
        if mode.startswith("TEST"):
            # Its input (mounted in a container) and the user.conf it runs with.
            assert f"--input {conf} " in command and f"--user-conf {conf} " in command
        else:
            assert "--user-conf" not in command and conf not in command
    copies = [line.removeprefix("Shell command: ") for line in proc.stdout.splitlines()
              if line.startswith("Shell command: cp ")]
    assert sorted(copies) == sorted(f"cp runs/local-cpu/digits/infer/{s}/performance/user.conf "
                                    f"runs/local-cpu/digits/performance_conf/{s}/user.conf"
                                    f" > logs/performance_conf/local-cpu/digits/{s}.log 2>&1"
                                    for s in ("MultiStream", "Offline", "Server", "SingleStream"))


@pytest.mark.rerun
def test_the_tree_holds_the_corrected_run_whose_user_conf_the_compliance_tests_ran_with(
        submitted, tmp_path, cli_env, repo_root):
    """The workflow's Offline performance run made again from a tenth of the calibrated rate; then the
    workflow and its audit: the tree holds the final run, its user.conf and a README that says so."""
    import pyarrow.parquet as pq

    from benchpipe.provenance import config_sha256

    workdir = tmp_path / "workflow"
    shutil.copytree(submitted, workdir, symlinks=True)  # times kept: Snakemake finds it up to date
    runs = workdir / "runs" / "local-cpu" / "digits"
    settings = json.loads((workdir / "submissions" / "ci" / "benchpipe" / "config.json").read_text())
    # As the workflow hands it to its jobs: the tree's config must name every result.
    env = dict(cli_env, BENCHPIPE_CONFIG_SHA256=config_sha256(settings, "infer"))
    _, calibration = read_calibration(runs / "calibrate" / "Offline")
    wrong = miscalibrated(runs / "calibrate" / "Offline", tmp_path / "calibration", "target_qps",
                          round(calibration.offline_qps / 10, 1))
    remade = tmp_path / "Offline" / "performance"
    # In the workflow's directory, as its jobs run: the calibration names the model by its relative path.
    proc = infer(env, workdir / "data" / "digits", wrong, remade, "Offline", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    performance = runs / "infer" / "Offline" / "performance"
    shutil.rmtree(performance)
    shutil.move(remade, performance)

    def snakemake(target: str) -> None:
        done = subprocess.run(
            ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(workdir), "--cores", "2", target,
             "--configfile", str(repo_root / ".test" / "config" / "config.yaml")],
            env=cli_env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-5000:]

    snakemake("submit")
    conf = (performance / "user.conf").read_bytes()
    assert (performance / "attempts" / "1").is_dir()  # the performance run was not made again
    for test in ("TEST01", "TEST04"):
        assert (runs / "infer" / "Offline" / test / "user.conf").read_bytes() == conf, test
    tree = workdir / "submissions" / "ci"
    scenario = tree / "benchpipe/inference/closed/benchpipe-ci/results/local-cpu/digits/Offline"
    assert (scenario / "user.conf").read_bytes() == conf
    assert not [p for p in tree.rglob("*") if p.name == "attempts"]
    corrected = conf_value(performance / "user.conf", "target_qps")
    for run in (scenario / "performance" / "run_1", scenario / "TEST04" / "performance" / "run_1"):
        assert _detail(run).get("requested_offline_expected_qps") == pytest.approx(corrected, rel=1e-5), run
    readme = (scenario / "README.md").read_text()
    assert "**user.conf corrected**: LoadGen judged 1 performance attempt(s) INVALID" in readme
    rows = pq.read_table(tree / "benchpipe" / "tables" / "provenance").to_pylist()
    recorded = next(r for r in rows if r["job"] == "infer/Offline/performance")
    assert json.loads(recorded["attempts_json"]) == attempts_of(performance)

    snakemake("audit")  # which renders every scenario README anew, the correction note included
    assert json.loads((workdir / "submissions" / "ci.audit.json").read_text())["passed"] is True
