"""The training harness, through real TensorFlow runs and the official compliance checker."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchpipe.contracts import registry
from benchpipe.contracts.errors import TrainingError
from benchpipe.mlcommons.checkers import run_compliance_checker
from benchpipe.results.mllog_parser import parse_mllog, read_run, select_model
from benchpipe.train.harness import Block, Submission, eval_blocks, train_run

DIGITS = registry.get("digits")
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


def test_init_ends_before_the_data_are_read_and_the_seed_is_logged_once(trained_run):
    events = parse_mllog(trained_run / "mllog.txt")
    keys = [e.key for e in events]
    order = ["cache_clear", "init_start", "seed", "init_stop", "run_start", "train_samples", "block_start", "run_stop"]
    assert [keys.index(k) for k in order] == sorted(keys.index(k) for k in order)
    assert keys.count("run_start") == keys.count("init_stop") == keys.count("seed") == 1
    # digits evaluates after every epoch: one block, one epoch and one evaluation each.
    blocks = [(e.metadata["first_epoch_num"], e.metadata["epoch_count"]) for e in events if e.key == "block_start"]
    evals = [e.metadata["epoch_num"] for e in events if e.key == "eval_accuracy"]
    epochs = [e.metadata["epoch_num"] for e in events if e.key == "epoch_stop"]
    assert blocks == [(n, 1) for n in evals] and epochs == evals == list(range(1, len(evals) + 1))


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


def _eval_accuracies(run_dir):
    return [(e.metadata["epoch_num"], e.value) for e in parse_mllog(run_dir / "mllog.txt") if e.key == "eval_accuracy"]


def test_warm_up_does_not_change_the_results(trained_run, digits_data, tmp_path):
    # The fixture's run warmed up; this one, with the same seed, traces inside its timed part.
    out = tmp_path / "cold"
    outcome = train_run(DIGITS, digits_data, out, seed=7, submission=SUBMISSION, threads=2, warm_up=False)
    assert outcome.status == "success"
    assert _eval_accuracies(out) == _eval_accuracies(trained_run)


def test_no_step_is_traced_after_run_start(digits_data, tmp_path):
    from tracing import record_traces

    traced_at_ms: list[float] = []

    def counted_model():
        return record_traces(DIGITS.build_model(), traced_at_ms)

    counted = dataclasses.replace(DIGITS, build_model=counted_model, quality_target=1.01)
    train_run(counted, digits_data, tmp_path / "run", seed=5, submission=SUBMISSION, threads=2, max_epochs=2)
    run_start = next(e.time_ms for e in parse_mllog(tmp_path / "run" / "mllog.txt") if e.key == "run_start")
    assert [t for t in traced_at_ms if t < run_start]  # the warm-up, inside init
    # The export traces again, after run_stop; nothing traces inside the timed run.
    run_stop = next(e.time_ms for e in parse_mllog(tmp_path / "run" / "mllog.txt") if e.key == "run_stop")
    assert not [t for t in traced_at_ms if run_start <= t <= run_stop]


def test_the_seed_alone_decides_the_eval_accuracies(digits_data, tmp_path):
    unreachable = dataclasses.replace(DIGITS, quality_target=1.01)
    runs = {}
    for name, seed in [("a", 11), ("b", 11), ("c", 12)]:
        train_run(unreachable, digits_data, tmp_path / name, seed=seed, submission=SUBMISSION, threads=2, max_epochs=2)
        runs[name] = _eval_accuracies(tmp_path / name)
    assert [n for n, _ in runs["a"]] == [1, 2]
    assert runs["a"] == runs["b"]
    assert [a for _, a in runs["a"]] != [c for _, c in runs["c"]]


def test_warm_up_traces_both_steps_and_leaves_the_state_alone(digits_data):
    from benchpipe.datasets.prepare import load_split
    from benchpipe.train.harness import DataShape, compile_model, configure_tensorflow, top1, warm_up_steps

    configure_tensorflow(seed=5, threads=2)
    shape = DataShape.from_manifest(digits_data)
    batch = DIGITS.hyperparameters.global_batch_size
    model = compile_model(DIGITS, -(-shape.train_rows // batch))
    traces = {"train": 0, "predict": 0}

    def counted(name, step):
        def traced(data):
            traces[name] += 1  # Python runs here only while TensorFlow traces the step
            return step(data)
        return traced

    model.train_step = counted("train", model.train_step)
    model.predict_step = counted("predict", model.predict_step)
    model.optimizer.build(model.trainable_variables)
    state = [*model.variables, *model.optimizer.variables]
    before = [v.numpy().copy() for v in state]

    warm_up_steps(model, batch, shape)
    assert traces["train"] >= 1 and traces["predict"] >= 1
    assert all((v.numpy() == b).all() for v, b in zip(state, before))
    assert int(model.optimizer.iterations.numpy()) == 0

    # The real batches, shuffled, with a short last one, and the real eval split: no new trace.
    after_warm_up = dict(traces)
    train = load_split(digits_data, "train")
    assert len(train.labels) % batch != 0
    model.fit(train.features, train.labels, batch_size=batch, epochs=1, shuffle=True, verbose=0)
    top1(model, load_split(digits_data, "eval"))
    assert traces == after_warm_up
    assert int(model.optimizer.iterations.numpy()) == shape.train_rows // batch + 1


def test_eval_cadence_sets_blocks_and_evaluations(digits_data, tmp_path):
    every_other = dataclasses.replace(DIGITS, quality_target=1.01, eval_every_epochs=2, eval_offset=1)
    out = tmp_path / "run_0"
    # Evaluations after epochs 1 and 3: the limit of 2 epochs is rounded up to the next one.
    outcome = train_run(every_other, digits_data, out, seed=4, submission=SUBMISSION, threads=2, max_epochs=2)
    assert outcome.status == "aborted" and outcome.epochs == 3
    events = parse_mllog(out / "mllog.txt")
    assert [(e.metadata["first_epoch_num"], e.metadata["epoch_count"]) for e in events if e.key == "block_start"] \
        == [(1, 1), (2, 2)]
    assert [e.metadata["first_epoch_num"] for e in events if e.key == "block_stop"] == [1, 2]
    assert [e.metadata["epoch_num"] for e in events if e.key == "eval_accuracy"] == [1, 3]
    assert [e.metadata["epoch_num"] for e in events if e.key == "epoch_start"] == [1, 2, 3]
    assert read_run(out).epochs == 3
    result = run_compliance_checker(out / "mllog.txt", DIGITS.rules_file, tmp_path / "cc.log")
    assert result.passed, result.output
    # The same log under ResNet's name passes the official closed ResNet rules of 4.0.0.
    resnet_log = tmp_path / "resnet.txt"
    resnet_log.write_text((out / "mllog.txt").read_text().replace('"value": "digits"', '"value": "resnet"'))
    official = subprocess.run(
        [sys.executable, "-m", "mlperf_logging.compliance_checker", str(resnet_log), "--usage", "training",
         "--ruleset", "4.0.0", "--log_output", str(tmp_path / "resnet.log")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert official.returncode == 0 and "closed_resnet.yaml" in official.stdout + official.stderr, official.stderr


def test_eval_blocks_follow_the_reference_resnet_cadence():
    resnet_like = dataclasses.replace(DIGITS, eval_every_epochs=4, eval_offset=2)
    blocks = eval_blocks(resnet_like, 41)
    # The reference: first evaluation after epoch eval_offset_epochs, then every 4, and
    # train_epochs = 2 + ceil((41 - 2) / 4) * 4 = 42.
    assert blocks[:2] == [Block(1, 2), Block(3, 4)] and blocks[-1] == Block(39, 4) and blocks[-1].last_epoch == 42
    assert [b.last_epoch for b in eval_blocks(dataclasses.replace(resnet_like, eval_offset=0), 41)][-2:] == [40, 44]
    assert [b.last_epoch for b in eval_blocks(DIGITS, 3)] == [1, 2, 3]


@pytest.mark.parametrize("every, offset, limit", [(0, 0, 5), (4, 4, 5), (4, -1, 5), (1, 0, 0)])
def test_an_impossible_cadence_is_refused_before_anything_is_written(digits_data, tmp_path, every, offset, limit):
    wrong = dataclasses.replace(DIGITS, eval_every_epochs=every, eval_offset=offset)
    out = tmp_path / "run_0"
    with pytest.raises(TrainingError, match="digits: .*epoch"):
        train_run(wrong, digits_data, out, seed=1, submission=SUBMISSION, threads=2, max_epochs=limit)
    assert not out.exists()


def test_open_runs_short_of_the_target_serve_the_most_accurate(tmp_path):
    def run(name: str, division: str, accuracies: list[float]) -> Path:
        run_dir = tmp_path / division / name
        (run_dir / "model").mkdir(parents=True)
        events = [("submission_division", division), ("submission_org", "o"), ("submission_platform", "p"),
                  ("submission_benchmark", "digits"), ("seed", 1), ("run_start", None)]
        events += [("eval_accuracy", a) for a in accuracies] + [("run_stop", None)]
        lines = []
        for t, (key, value) in enumerate(events):
            meta = {"status": "aborted"} if key == "run_stop" else ({"epoch_num": t} if key == "eval_accuracy" else {})
            lines.append(":::MLLOG " + json.dumps({"namespace": "", "time_ms": t, "event_type": "POINT_IN_TIME",
                                                  "key": key, "value": value, "metadata": meta}))
        (run_dir / "mllog.txt").write_text("\n".join(lines) + "\n")
        return run_dir

    open_runs = [run("run_0", "open", [0.2, 0.4]), run("run_1", "open", [0.5]), run("run_2", "open", [0.5])]
    assert select_model(open_runs) == open_runs[1] / "model"
    with pytest.raises(TrainingError, match="no successful training run"):
        select_model([run("run_0", "closed", [0.9])])
