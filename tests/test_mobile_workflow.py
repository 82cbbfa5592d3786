"""The Mobile family in the reduced workflow (.test/config/config.yaml, mobile.targets [local-litert]):
digits as fp32 and int8 LiteRT, the app's two image classification tasks in rapid mode, each result
in the app's extended result JSON, and the tree's mobile/ section checked by the packager and the audit.

Every figure below is computed here again from the logs, the way the Mobile app reads them
(flutter/lib: LoadgenInfo, _calculateThroughput), not taken from benchpipe's own code.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest

from benchpipe.package.manifest import write_manifest
from benchpipe.results.tables import read_partitioned

TASKS = {"image_classification_offline_v2": "Offline"}  # .test/config's mobile.tasks
TARGET = "local-litert"


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
    assert len(rows) == 2 * len(TASKS) * 2  # precisions x tasks x modes
    result = json.loads((_mobile(submitted) / "int8" / "result.json").read_text())
    stated = {e["benchmark_id"]: e["performance_run"]["throughput"]["value"] for e in result["results"]}
    for row in rows:
        if row["precision"] == "int8" and row["mode"] == "performance":
            assert row["throughput"] == pytest.approx(stated[row["task_id"]], rel=1e-12)
            assert row["result_validity"] == "VALID" and row["delegate"] == "cpu"


def _audit(tree: Path, env: dict) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "benchpipe.cli", "audit", str(tree)], env=env,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_the_audit_derives_each_result_again_and_fails_a_changed_figure(submitted, cli_env, tmp_path):
    tree = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", tree)
    code, out = _audit(tree, cli_env)
    # A result per precision, and int8's accuracy check per task.
    assert code == 0 and re.search(rf"PASS +mobile: {2 + len(TASKS)} checked", out), out[-3000:]
    path = tree / "mobile" / TARGET / "digits" / "int8" / "result.json"
    result = json.loads(path.read_text())
    result["results"][0]["performance_run"]["throughput"]["value"] *= 2
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    write_manifest(tree)
    code, out = _audit(tree, cli_env)
    assert code != 0
    assert re.search(r"FAIL +mobile", out), out[-3000:]
    assert ("differs from the result derived again from its runs' logs "
            "(/results/0/performance_run/throughput/value") in out


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
