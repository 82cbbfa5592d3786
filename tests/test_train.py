"""The training harness, through real TensorFlow runs and the official compliance checker."""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from benchpipe import benchmarks
from benchpipe.package.checks import run_compliance_checker
from benchpipe.results.mllog_parser import parse_mllog, read_run, select_model
from benchpipe.train.harness import Submission, train_run

DIGITS = benchmarks.get("digits")
SUBMISSION = Submission("benchpipe", "local-cpu", "closed", "research")


def test_successful_run_logs_every_required_key(trained_run):
    keys = {e.key for e in parse_mllog(trained_run / "mllog.txt")}
    required = {
        "submission_org", "submission_platform", "submission_division", "submission_status",
        "submission_benchmark", "cache_clear", "init_start", "init_stop", "run_start", "run_stop",
        "block_start", "block_stop", "eval_start", "eval_stop", "eval_accuracy", "train_samples",
        "eval_samples", "global_batch_size", "gradient_accumulation_steps", "opt_name", "seed",
        "sgd_opt_base_learning_rate", "sgd_opt_end_learning_rate", "sgd_opt_learning_rate_decay_poly_power",
        "sgd_opt_learning_rate_decay_steps", "sgd_opt_weight_decay", "sgd_opt_momentum", "model_bn_span",
        "opt_learning_rate_warmup_epochs",
    }
    assert required <= keys
    run = read_run(trained_run)
    assert run.status == "success" and run.seed == 7
    assert run.best_eval_accuracy >= DIGITS.quality_target
    assert run.time_to_train_min > 0
    assert (trained_run / "model" / "saved_model.pb").is_file()
    assert select_model([trained_run]) == trained_run / "model"


def test_successful_run_passes_official_checker(trained_run, tmp_path):
    result = run_compliance_checker(trained_run / "mllog.txt", DIGITS.rules_file, tmp_path / "cc.log")
    assert result.passed, result.output


def test_checker_rejects_a_log_missing_a_required_key(trained_run, tmp_path):
    log = tmp_path / "result_0.txt"
    lines = (trained_run / "mllog.txt").read_text().splitlines(keepends=True)
    log.write_text("".join(l for l in lines if '"key": "seed"' not in l))
    result = run_compliance_checker(log, DIGITS.rules_file, tmp_path / "cc.log")
    assert not result.passed
    assert "seed" in result.output


def test_checker_rejects_a_false_success(trained_run, tmp_path):
    # The same log, but every evaluation below the target while run_stop still says success.
    text = re.sub(r'("key": "eval_accuracy", "value": )[0-9.]+', r"\g<1>0.5", (trained_run / "mllog.txt").read_text())
    assert '"value": 0.5' in text
    log = tmp_path / "result_0.txt"
    log.write_text(text)
    result = run_compliance_checker(log, DIGITS.rules_file, tmp_path / "cc.log")
    assert not result.passed
    assert "best_accuracy" in result.output


def test_run_that_misses_target_is_aborted(digits_data, tmp_path):
    unreachable = dataclasses.replace(DIGITS, quality_target=1.01)
    out = tmp_path / "run_0"
    outcome = train_run(unreachable, digits_data, out, seed=3, submission=SUBMISSION, threads=2, max_epochs=2)
    assert outcome.status == "aborted" and outcome.epochs == 2
    run = read_run(out)
    assert run.status == "aborted"
    assert run.time_to_train_min is None  # never reported as a result
    # An honest aborted log is structurally compliant.
    result = run_compliance_checker(out / "mllog.txt", DIGITS.rules_file, tmp_path / "cc.log")
    assert result.passed, result.output
    with pytest.raises(Exception, match="no successful training run"):
        select_model([out])


def test_killed_run_leaves_nothing_complete(digits_data, tmp_path, cli_env):
    out = tmp_path / "runs" / "run_0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchpipe.cli", "train", "--benchmark", "digits", "--data", str(digits_data),
         "--seed", "1", "--org", "o", "--platform", "p", "--division", "closed", "--status", "research",
         "--threads", "1", "--out", str(out)],
        env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    partial_log = None
    while time.monotonic() < deadline and proc.poll() is None:
        partial_log = next(out.parent.glob(".run_0.partial-*/mllog.txt"), None) if out.parent.exists() else None
        if partial_log and "block_start" in partial_log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert partial_log is not None and partial_log.parent.name.startswith(".")
