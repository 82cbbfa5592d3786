"""MobileBERT's task on a host, end to end through the command line: a tiny ``.tflite`` with MobileBERT's
inputs and outputs (input_ids, input_mask, segment_ids: int32 [1, 384]; end and start logits: float32
[1, 384]) supplied with its sha256, served by LiteRT under LoadGen, and its accuracy run scored with
SQuAD F1 as the app scores it; the app's dataset files are found by the names tasks.pbtxt gives them
and held to its MD5s."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_mobile_squad import QUERY, sample, sample_features, truth_features, write

from benchpipe.mobile.squad import SquadGroundTruth, f1_score

TASK = "natural_language_processing"
SEQ = 384
# The tiny model puts its start logit on the token whose id is START_ID, its end on END_ID.
START_ID, END_ID = 501, 502
EVAL_FILE, TRUTH_FILE = "squad_eval_mini.tfrecord", "squad_groundtruth.tfrecord"  # tasks.pbtxt's names


def tiny_mobilebert(path: Path) -> Path:
    import tensorflow as tf

    spec = [tf.TensorSpec([1, SEQ], tf.int32, name=name) for name in ("input_ids", "input_mask", "segment_ids")]

    @tf.function(input_signature=spec)
    def serve(ids, mask, segments):
        # Every input counts (a converter drops an unused one), but only the two ids decide the span.
        small = tf.cast(mask, tf.float32) * 0.01 + tf.cast(segments, tf.float32) * 0.001
        start = tf.cast(tf.equal(ids, START_ID), tf.float32) * 10.0 + small
        end = tf.cast(tf.equal(ids, END_ID), tf.float32) * 10.0 + small
        return end, start  # the app reads output 0 as the end, output 1 as the start

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], serve)
    path.write_bytes(converter.convert())
    return path


def padded(window, start: int, end: int):
    """``window``'s inputs padded to the model's 384 tokens, START_ID and END_ID where the answer lies."""
    n = len(window.span_tokens)
    ids = np.zeros(SEQ, np.int32)
    ids[:n] = np.arange(1, n + 1)
    ids[start], ids[end] = START_ID, END_ID
    mask = np.zeros(SEQ, np.int32)
    mask[:n] = 1
    segments = np.zeros(SEQ, np.int32)
    segments[:n] = window.segment_ids
    return dataclasses.replace(window, input_ids=ids, input_mask=mask, segment_ids=segments)


@pytest.fixture(scope="module")
def squad_dir(tmp_path_factory) -> Path:
    return write_squad_files(tmp_path_factory.mktemp("squad"))


def write_squad_files(out: Path) -> Path:
    """Two questions in the app's two ZLIB TFRecord files, under the app's file names: the tiny
    model scores F1 0.9 on them."""
    # q1: "super bowl 50" (tokens 4..6) is the answer; q2: the model picks "scored 1 , 000 points"
    # (tokens 7..11) where "1,000 points" is.
    q1 = padded(sample("q1", QUERY, ["super", "bowl", "50", "was", "won"], [0, 1, 2, 3, 4]), 4, 6)
    q2 = padded(sample("q2", ["how", "many", "?"], ["the", "broncos", "scored", "1", ",", "000", "points", "."],
                       [0, 1, 2, 3, 3, 3, 4, 4]), 7, 11)
    truth = [SquadGroundTruth("q1", ("super", "bowl", "50", "was", "won"), ("Super", "Bowl", "50", "was", "won"),
                              ("Super Bowl 50",)),
             SquadGroundTruth("q2", ("the", "broncos", "scored", "1 , 000", "points ."),
                              ("The", "Broncos", "scored", "1,000", "points."), ("1,000 points",))]
    write(out / EVAL_FILE, [sample_features(s, 1000 + i) for i, s in enumerate((q1, q2))])
    write(out / TRUTH_FILE, [truth_features(t) for t in truth])
    return out


@pytest.fixture(scope="module")
def app(mobile_app, tmp_path_factory, cli_env) -> Path:
    out = tmp_path_factory.mktemp("app") / "app"
    benchpipe(cli_env, "mobile", "app", "--app", str(mobile_app), "--out", str(out), "--require", f"{TASK}:SQUAD")
    return out


@pytest.fixture(scope="module")
def supplied(tmp_path_factory, cli_env) -> Path:
    tflite = tiny_mobilebert(tmp_path_factory.mktemp("user") / "mobilebert.tflite")
    out = tmp_path_factory.mktemp("models") / "fp32"
    sha256 = hashlib.sha256(tflite.read_bytes()).hexdigest()
    benchpipe(cli_env, "mobile", "supply", "--tflite", str(tflite), "--sha256", sha256, "--precision", "fp32",
              "--out", str(out))
    return out


def benchpipe(env: dict, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["benchpipe", *args], env=env, capture_output=True, text=True, timeout=600)
    assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
    return proc


def run(env, app: Path, model: Path, data: Path, out: Path, mode: str, *extra: str, ok: bool = True):
    return benchpipe(env, "mobile", "run", "--data", str(data), "--tasks", str(app / "tasks.json"), "--task", TASK,
                     "--model", str(model), "--mode", mode, "--run-mode", "rapid", "--out", str(out), *extra, ok=ok)


def test_the_supplied_model_is_checked_and_recorded(supplied, tmp_path, cli_env):
    conversion = json.loads((supplied / "conversion.json").read_text())
    tflite = supplied / "model.tflite"
    assert conversion["converter"] == "supplied" and conversion["representative"] is None
    assert conversion["tflite_sha256"] == conversion["source_sha256"] == hashlib.sha256(tflite.read_bytes()).hexdigest()
    wrong = benchpipe(cli_env, "mobile", "supply", "--tflite", str(tflite), "--sha256", "0" * 64, "--precision",
                      "int8", "--out", str(tmp_path / "int8"), ok=False)
    assert f"{tflite}: sha256 {conversion['tflite_sha256']}, the model's stated sha256 is {'0' * 64}" in wrong.stderr
    assert not (tmp_path / "int8").exists()


def test_the_accuracy_run_scores_squad_f1_from_the_logged_logits(app, supplied, squad_dir, tmp_path, cli_env):
    out = tmp_path / "accuracy"
    run(cli_env, app, supplied, squad_dir, out, "accuracy", "--stand-in-data")
    record = json.loads((out / "mobile_run.json").read_text())
    # q1 exactly; q2 "scored 1,000 points" against "1,000 points", as the app's F1 counts words.
    expected = (1.0 + f1_score(["1,000 points"], "scored 1,000 points")) / 2
    assert record["accuracy"] == pytest.approx(expected, abs=1e-6) and expected == pytest.approx(0.9)
    assert record["accuracy_samples"] == 2 and record["benchmark"] == "mobilebert"
    assert record["scenario"] == "SingleStream" and record["backend"]["batch_size"] == 1
    assert record["dataset"]["files"] == {"input": EVAL_FILE, "groundtruth": TRUTH_FILE}
    assert record["dataset"]["app_dataset"] is False
    assert record["dataset"]["name"].startswith("stand-in for Squad V1.1 validation set: 2 SQuAD v1.1 windows")
    # The accuracy log holds each window's two output rows, as the app logs a MobileBERT prediction.
    logged = json.loads((out / "mlperf_log_accuracy.json").read_text())
    rows = {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), "<f4").reshape(2, SEQ) for e in logged}
    assert sorted(rows) == [0, 1]
    assert [(int(np.argmax(r[1])), int(np.argmax(r[0]))) for _, r in sorted(rows.items())] == [(4, 6), (7, 11)]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["dataset_manifest_sha256"] is None  # the app's files, not a prepared dataset


@pytest.mark.timing  # LoadGen must judge it VALID
def test_the_performance_run_is_valid_on_the_lite_file(app, supplied, squad_dir, tmp_path, cli_env):
    out = tmp_path / "performance"
    run(cli_env, app, supplied, squad_dir, out, "performance", "--stand-in-data")
    record = json.loads((out / "mobile_run.json").read_text())
    assert (record["min_query_count"], record["min_duration_s"]) == (64, 6.0)
    assert record["accuracy"] is None and record["dataset"]["files"] == {"input": EVAL_FILE}
    assert "Result is : VALID" in (out / "mlperf_log_summary.txt").read_text()


def test_files_other_than_the_apps_are_refused_without_stand_in_data(app, supplied, squad_dir, tmp_path, cli_env):
    tasks = json.loads((app / "tasks.json").read_text())["tasks"][TASK]
    want = tasks["dataset_files"]["full"]["input_checksum"]
    actual = hashlib.md5((squad_dir / EVAL_FILE).read_bytes()).hexdigest()
    refused = run(cli_env, app, supplied, squad_dir, tmp_path / "out", "accuracy", ok=False)
    says = f"{squad_dir / EVAL_FILE}: MD5 {actual}, tasks.pbtxt states {want}: not the app's full dataset"
    assert says in refused.stderr
    assert not (tmp_path / "out").exists()
    missing = run(cli_env, app, supplied, tmp_path, tmp_path / "out", "accuracy", ok=False)
    assert f"{tmp_path / EVAL_FILE}: missing: the app's full dataset file of {TASK}" in missing.stderr


def test_a_benchmark_for_a_supplied_model_and_a_hosts_image_task_accuracy_are_refused(app, supplied, squad_dir,
                                                                                      tmp_path, cli_env):
    named = run(cli_env, app, supplied, squad_dir, tmp_path / "out", "accuracy", "--stand-in-data",
                "--benchmark", "digits", ok=False)
    assert f"{TASK} (SQUAD) runs the model the user supplies, not digits's: leave out --benchmark" in named.stderr
    unnamed = benchpipe(cli_env, "mobile", "run", "--data", str(squad_dir), "--tasks", str(app / "tasks.json"),
                        "--task", "object_detection", "--model", str(supplied), "--mode", "accuracy",
                        "--run-mode", "rapid", "--out", str(tmp_path / "out"), ok=False)
    assert ("object_detection (COCO): on a host benchpipe runs its performance runs only; its accuracy "
            "(mAP) is the app's binary's to score, on a phone (runtime adb)") in unnamed.stderr
    # MobileBERT's three inputs are no image classifier's.
    inputs = benchpipe(cli_env, "mobile", "run", "--data", str(squad_dir), "--tasks", str(app / "tasks.json"),
                       "--task", "image_classification_v2", "--model", str(supplied), "--mode", "accuracy",
                       "--run-mode", "rapid", "--out", str(tmp_path / "out"), ok=False)
    assert f"{supplied / 'model.tflite'}: 3 inputs; the Mobile app's image tasks serve models of one" in inputs.stderr
