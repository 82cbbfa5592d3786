"""The Mobile family in the reduced workflow (.test/config/config.yaml, mobile.targets [local-litert]):
digits as fp32 and int8 LiteRT on the app's Offline image classification task in rapid mode, a
supplied model of MobileBERT's shape on the language task, each result in the app's extended
result JSON, and the tree's mobile/ section checked by the packager and the audit.

Every figure below is computed here again from the logs, the way the Mobile app reads them
(flutter/lib: LoadgenInfo, _calculateThroughput), not taken from benchpipe's own code.
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
import numpy as np
import pyarrow.parquet as pq
import pytest

from benchpipe.package.manifest import write_manifest
from benchpipe.results.tables import read_partitioned

TASKS = {"image_classification_offline_v2": "Offline"}  # .test/config's mobile.tasks
TARGET = "local-litert"
# .test/config's mobile.supplied: a tiny model of MobileBERT's inputs and outputs on two SQuAD
# questions (.test/mobile/make.py), on the language task.
SUPPLIED, LANGUAGE = "mobilebert_tiny", "natural_language_processing"
TEST_DATA = Path(__file__).resolve().parents[1] / ".test" / "mobile"
SEQ = 384


def _detail(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            record = json.loads(line[len(":::MLLOG "):])
            values[record["key"]] = record["value"]
    return values


def _mobile(submitted: Path) -> Path:
    return submitted / "submissions" / "ci" / "mobile" / TARGET / "digits"


def test_each_result_validates_against_the_apps_schema_and_states_what_the_logs_say(submitted, mobile_app):
    schema = json.loads((mobile_app / "tools" / "extended_result_schema.json").read_text())
    for precision in ("fp32", "int8"):
        base = _mobile(submitted) / precision
        result = json.loads((base / "result.json").read_text())
        jsonschema.Draft6Validator(schema).validate(result)
        assert [r["benchmark_id"] for r in result["results"]] == sorted(TASKS)
        assert result["environment_info"] == {"platform": "linux",
                                              "value": {"android": None, "ios": None, "windows": None}}
        assert result["build_info"]["dev_test_flag"] and not result["build_info"]["official_release_flag"]
        for entry in result["results"]:
            task = entry["benchmark_id"]
            assert entry["loadgen_scenario"] == TASKS[task]
            assert (entry["min_samples"], entry["min_duration"]) == ((64, 6.0) if TASKS[task] == "SingleStream"
                                                                     else (64, 0.0))  # tasks.pbtxt's rapid mode
            detail = _detail(base / task / "performance" / "mlperf_log_detail.txt")
            perf = entry["performance_run"]
            assert detail["result_validity"] == "VALID" and perf["loadgen"]["is_result_valid"]
            latency90 = detail["result_90.00_percentile_latency_ns"] / 1e9
            samples = detail["result_query_count"] * detail.get("generated_samples_per_query", 1)
            assert perf["loadgen"]["latency90"] == latency90
            assert perf["measured_samples"] == samples
            want = (samples if TASKS[task] == "Offline" else 1) / latency90
            assert perf["throughput"]["value"] == pytest.approx(want, rel=1e-12)
            counts = re.search(r"good=(\d+), total=(\d+)",
                               (base / task / "accuracy" / "accuracy.txt").read_text())
            accuracy = entry["accuracy_run"]["accuracy"]
            assert accuracy["normalized"] == int(counts[1]) / int(counts[2])
            assert accuracy["formatted"] == f"{accuracy['normalized'] * 100:.2f}%"
            assert entry["accuracy_run"]["measured_samples"] == int(counts[2]) == 360  # digits' eval split


def test_int8_is_held_to_fp32s_accuracy_on_the_same_samples(submitted):
    checks = json.loads((_mobile(submitted) / "int8" / "accuracy_check.json").read_text())
    assert sorted(c["task_id"] for c in checks) == sorted(TASKS)
    for check in checks:
        runs = {p: json.loads((_mobile(submitted) / p / check["task_id"] / "accuracy" / "mobile_run.json").read_text())
                for p in ("fp32", "int8")}
        assert (check["fp32"], check["int8"]) == (runs["fp32"]["accuracy"], runs["int8"]["accuracy"])
        assert check["ratio"] == pytest.approx(runs["int8"]["accuracy"] / runs["fp32"]["accuracy"])
        assert check["required"] == 0.98 and check["passed"] == (check["ratio"] >= 0.98)
    assert not (_mobile(submitted) / "fp32" / "accuracy_check.json").exists()


def test_int8_was_calibrated_on_training_samples_only(submitted):
    conversion = json.loads((_mobile(submitted) / "int8" / "model" / "conversion.json").read_text())
    data = submitted / "data" / "digits"
    ids: dict[str, set] = {"train": set(), "eval": set()}
    for shard in json.loads((data / "manifest.json").read_text())["shards"]:
        ids[shard["split"]] |= set(pq.read_table(data / shard["path"], columns=["id"]).column("id").to_pylist())
    rep = conversion["representative"]
    assert rep["split"] == "train" and rep["count"] == len(rep["ids"]) == 100
    assert set(rep["ids"]) <= ids["train"] and not set(rep["ids"]) & ids["eval"]
    assert conversion["options"]["inference_input_type"] == "int8"
    runs = [json.loads(p.read_text()) for p in (_mobile(submitted) / "int8").glob("*/*/mobile_run.json")]
    assert {r["model_sha256"] for r in runs} == {conversion["tflite_sha256"]}


def test_the_mobile_table_has_a_row_per_run(submitted):
    rows = read_partitioned(submitted / "submissions" / "ci" / "benchpipe" / "tables" / "mobile").to_pylist()
    assert len([r for r in rows if r["benchmark"] == "digits"]) == 2 * len(TASKS) * 2  # precisions x tasks x modes
    supplied = {r["mode"]: r for r in rows if r["benchmark"] == SUPPLIED}
    assert sorted(supplied) == ["accuracy", "performance"] and len(rows) == 2 * len(TASKS) * 2 + 2
    assert supplied["accuracy"]["accuracy"] == pytest.approx(0.9, abs=1e-6)
    assert supplied["performance"]["result_validity"] == "VALID"
    result = json.loads((_mobile(submitted) / "int8" / "result.json").read_text())
    stated = {e["benchmark_id"]: e["performance_run"]["throughput"]["value"] for e in result["results"]}
    for row in rows:
        if row["precision"] == "int8" and row["mode"] == "performance":
            assert row["throughput"] == pytest.approx(stated[row["task_id"]], rel=1e-12)
            assert row["result_validity"] == "VALID" and row["delegate"] == "cpu"


def _supplied(tree: Path) -> Path:
    return tree / "mobile" / TARGET / SUPPLIED / "fp32"


def _logits(path: Path) -> dict[int, np.ndarray]:
    """Each sample's two logged output rows: end logits, then start logits."""
    return {e["qsl_idx"]: np.frombuffer(bytes.fromhex(e["data"]), "<f4").reshape(2, SEQ)
            for e in json.loads(path.read_text())}


def test_a_supplied_model_states_the_f1_scored_from_its_logged_logits(submitted, mobile_app):
    base = _supplied(submitted / "submissions" / "ci")
    result = json.loads((base / "result.json").read_text())
    jsonschema.Draft6Validator(json.loads((mobile_app / "tools" / "extended_result_schema.json").read_text())
                               ).validate(result)
    (entry,) = result["results"]
    assert (entry["benchmark_id"], entry["loadgen_scenario"]) == (LANGUAGE, "SingleStream")
    assert entry["performance_run"]["loadgen"]["is_result_valid"]
    # Each window's span where the model put its highest start and end logits: q1 "super bowl 50"
    # (tokens 4..6), q2 "scored 1 , 000 points" (7..11), as .test/mobile/make.py built them.
    spans = {i: (int(np.argmax(rows[1])), int(np.argmax(rows[0])))
             for i, rows in _logits(base / LANGUAGE / "accuracy" / "mlperf_log_accuracy.json").items()}
    assert spans == {0: (4, 6), 1: (7, 11)}
    # q1's answer exactly (F1 1); q2's "scored 1,000 points" against "1,000 points": 2 words in
    # common, precision 2/3, recall 1, F1 0.8. The app's F1 is the mean over the questions.
    accuracy = entry["accuracy_run"]
    assert accuracy["accuracy"]["normalized"] == pytest.approx((1.0 + 0.8) / 2, abs=1e-6)
    assert accuracy["measured_samples"] == 2
    assert accuracy["dataset"]["name"].startswith("stand-in for Squad V1.1 validation set: 2 SQuAD v1.1 windows")
    # The two files the F1 was scored on travel with the run, as the user's folder holds them.
    kept = base / LANGUAGE / "accuracy" / "dataset"
    for name in ("squad_eval_mini.tfrecord", "squad_groundtruth.tfrecord"):
        assert (kept / name).read_bytes() == (TEST_DATA / "squad" / name).read_bytes()
    conversion = json.loads((base / "model" / "conversion.json").read_text())
    tflite = (TEST_DATA / "mobilebert_tiny.tflite").read_bytes()
    assert conversion["converter"] == "supplied" and conversion["tflite_sha256"] == hashlib.sha256(tflite).hexdigest()
    assert not (base / "accuracy_check.json").exists()  # fp32 alone: nothing to hold int8 to


def test_the_f1_is_derived_from_the_kept_files_and_their_md5s(submitted, tmp_path):
    from benchpipe.contracts.errors import BenchpipeError
    from benchpipe.mobile.result import derive_run
    from benchpipe.mobile.run import read_mobile_run

    run = tmp_path / "accuracy"
    shutil.copytree(_supplied(submitted / "submissions" / "ci") / LANGUAGE / "accuracy", run)
    record = read_mobile_run(run)
    assert derive_run(run, record)["accuracy"]["normalized"] == pytest.approx(0.9, abs=1e-6)
    truth = run / "dataset" / "squad_groundtruth.tfrecord"
    truth.write_bytes(truth.read_bytes() + b"\0")
    with pytest.raises(BenchpipeError, match=rf"^{truth}: MD5 [0-9a-f]{{32}}, the run scored a file of MD5 "):
        derive_run(run, record)
    truth.unlink()
    with pytest.raises(BenchpipeError, match=rf"^{truth}: missing: the groundtruth file "):
        derive_run(run, record)


def _audit(tree: Path, env: dict) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "benchpipe.cli", "audit", str(tree)], env=env,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_the_audit_derives_each_result_again_and_fails_a_changed_figure(submitted, cli_env, tmp_path):
    tree = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", tree)
    code, out = _audit(tree, cli_env)
    # A result per precision of digits and one of the supplied model, and int8's accuracy check per task.
    assert code == 0 and re.search(rf"PASS +mobile: {3 + len(TASKS)} checked", out), out[-3000:]
    path = tree / "mobile" / TARGET / "digits" / "int8" / "result.json"
    result = json.loads(path.read_text())
    result["results"][0]["performance_run"]["throughput"]["value"] *= 2
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    # The supplied model's q1 start logit moved one token on, to "bowl": "bowl 50" against "Super
    # Bowl 50" scores F1 0.8, the mean 0.8; its result, record and accuracy log no longer agree.
    log = _supplied(tree) / LANGUAGE / "accuracy" / "mlperf_log_accuracy.json"
    entries = json.loads(log.read_text())
    for entry in entries:
        if entry["qsl_idx"] == 0:
            rows = np.frombuffer(bytes.fromhex(entry["data"]), "<f4").reshape(2, SEQ).copy()
            rows[1, 5] = 20.0
            entry["data"] = rows.astype("<f4").tobytes().hex().upper()
    log.write_text(json.dumps(entries))
    write_manifest(tree)
    code, out = _audit(tree, cli_env)
    assert code != 0
    assert re.search(r"FAIL +mobile", out), out[-3000:]
    assert ("differs from the result derived again from its runs' logs "
            "(/results/0/performance_run/throughput/value") in out
    assert re.search(rf"{SUPPLIED}/fp32/{LANGUAGE}/accuracy: mobile_run.json states accuracy 0.899\d+, its logs give "
                     r"0.800\d+", out), out[-3000:]


def test_an_int8_model_below_the_accuracy_rule_is_refused_by_the_packager(submitted, cli_env, tmp_path):
    """int8's accuracy runs scored again as if it had lost a tenth of its answers: `benchpipe
    mobile result` records the failed check, and packaging refuses the tree, naming the rule."""
    work = tmp_path / "wd"
    shutil.copytree(submitted, work, symlinks=True)
    runs = work / "runs" / TARGET / "digits" / "mobile"
    for task in TASKS:
        run = runs / "int8" / task / "accuracy"
        record = json.loads((run / "mobile_run.json").read_text())
        total = record["accuracy_samples"]
        good = round(record["accuracy"] * total) - total // 10
        (run / "accuracy.txt").write_text(re.sub(r"good=\d+", f"good={good}", re.sub(
            r"accuracy=[0-9.]+%", f"accuracy={good / total * 100:.3f}%", (run / "accuracy.txt").read_text())))
        record["accuracy"] = good / total
        (run / "mobile_run.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    # Nothing verified is lost: a refused tree leaves the last one in place, so remove it to see none is made.
    shutil.rmtree(work / "submissions" / "ci")
    (work / "submissions" / "ci.verified").unlink()
    proc = subprocess.run(
        ["snakemake", "-s", str(Path(__file__).resolve().parents[1] / "Snakefile"), "--directory", str(work),
         "--cores", "2", "submit", "--forcerun", "mobile_result",
         "--configfile", str(Path(__file__).resolve().parents[1] / ".test" / "config" / "config.yaml")],
        env=cli_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode != 0
    checks = json.loads((runs / "int8" / "result" / "accuracy_check.json").read_text())
    assert not any(c["passed"] for c in checks)
    log = (work / "logs" / "package.log").read_text()
    assert re.search(r"mobile local-litert/digits/int8: image_classification_offline_v2: int8 accuracy 0\.\d+ is "
                     r"\d+\.\d% of fp32's 0\.\d+ on the same 360 samples; the rule asks at least 98%", log), log[-2000:]
    assert not (work / "submissions" / "ci").exists()
