"""`benchpipe reproduce` on the workflow's tree (conftest `submitted`): a run trained again and a
LoadGen test run again from what the tree recorded match it; a tree whose log was changed does
not, and says where; a run made in an image this machine lacks names the image and its rebuild."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchpipe.contracts.errors import BenchpipeError, ConfigError
from benchpipe.package.manifest import write_manifest
from benchpipe.reproduce import Selection, reproduce
from benchpipe.results.loadgen_parser import parse_accuracy_txt

LOG = Path("benchpipe/training/benchpipe-ci/results/local-cpu/digits/result_1.txt")


@pytest.fixture
def tree(submitted, tmp_path) -> Path:
    copy = tmp_path / "ci"
    shutil.copytree(submitted / "submissions" / "ci", copy)
    return copy


def test_a_run_trained_again_matches_the_tree(submitted, cli_env, tmp_path):
    tree = submitted / "submissions" / "ci"
    report = tmp_path / "report.json"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    proc = subprocess.run(["benchpipe", "reproduce", str(tree), "--select", "local-cpu/digits/run_0",
                           "--work", str(tmp_path / "work"), "--keep", "--report", str(report)],
                          env=cli_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = report.read_text()
    written = json.loads(text)
    assert written["reproduced"] is True and written["time_tolerance"] == 0.25
    (run,) = written["runs"]
    assert run["run"] == "local-cpu/digits/run_0" and run["status"] == "match" and run["differences"] == []
    assert any(c.startswith("eval accuracy identical at") for c in run["checks"]), run
    assert any(c.startswith("time to train tree") for c in run["checks"]), run
    # The rerun used the tree's seed and dataset: its log says so.
    rerun = (tmp_path / "work" / "local-cpu-digits-run_0" / "run" / "mllog.txt").read_text()
    assert '"key": "seed", "value": 11' in rerun

    # Which tree, when, where, with which data: the tree's root as an auditor's `benchpipe verify` prints it.
    verify = subprocess.run(["benchpipe", "verify", str(tree)], env=cli_env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert written["root_sha256"] == re.search(r"root sha256 ([0-9a-f]{64})", verify.stdout).group(1)
    when = datetime.fromisoformat(written["timestamp"])
    assert when.utcoffset() == timedelta(0) and before <= when <= datetime.now(timezone.utc), written["timestamp"]
    assert written["provenance"]["host"] == socket.gethostname()
    assert written["provenance"]["tools"]["benchpipe"] and written["provenance"]["python_version"]
    assert (run["provenance"]["runtime"], run["provenance"]["image"]) == ("local", None), run["provenance"]
    manifest = tree / "benchpipe" / "datasets" / "digits" / "manifest.json"
    (dataset,) = written["datasets"]
    assert dataset == {"benchmark": "digits", "dataset": "digits", "source": "prepared again",
                       "path": str((tmp_path / "work" / "data" / "digits").resolve()),
                       "manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
                       "tree_manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(), "matched": True}
    assert run["provenance"]["dataset_manifest_sha256"] == dataset["manifest_sha256"]
    # Kept, as asked, and said so; the keys in one order, whatever the run.
    assert written["work_kept"] is True and f"reruns kept in {tmp_path / 'work'}" in proc.stdout, proc.stdout
    assert text == json.dumps(written, indent=1, sort_keys=True) + "\n"


def test_a_changed_accuracy_in_the_tree_is_named(tree, tmp_path):
    log = tree / LOG
    text = log.read_text()
    changed = re.sub(r'("key": "eval_accuracy", "value": )([0-9.]+)', r"\g<1>0.123", text, count=1)
    assert changed != text
    log.write_text(changed)
    write_manifest(tree)  # a tree that proves itself, with a number its logs' rerun cannot give
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("not the reruns'")
    reproduction = reproduce(tree, [Selection.parse("local-cpu/digits/run_1")], work)
    (result,) = reproduction.results
    assert result.status == "differ"
    assert any("eval accuracy" in d and "first difference at evaluation 0: tree (1, 0.123)" in d
               for d in result.differences), result.differences
    # The root of the changed tree; without keep, what the reruns wrote is gone and nothing else.
    assert reproduction.root_sha256 == json.loads((tree / "manifest.json").read_text())["root_sha256"]
    assert reproduction.kept is False and sorted(p.name for p in work.iterdir()) == ["mine.txt"]


def test_bad_selections_and_another_dataset_are_refused(tree, tmp_path):
    with pytest.raises(ConfigError, match="expected <target>/<benchmark>/run_<n>"):
        Selection.parse("local-cpu/digits/0")
    with pytest.raises(ConfigError, match=r"no training run local-cpu/digits/run_7 \(runs in the tree: "
                                          r"local-cpu/digits/run_0, local-cpu/digits/run_1"):
        reproduce(tree, [Selection.parse("local-cpu/digits/run_7")], tmp_path / "work")
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"benchmark": "digits"}')
    with pytest.raises(ConfigError, match="another dataset"):
        reproduce(tree, [Selection.parse("local-cpu/digits/run_0")], tmp_path / "work", data=other)
    (tree / "benchpipe" / "extra.txt").write_text("x")
    with pytest.raises(Exception, match="extra"):
        reproduce(tree, [Selection.parse("local-cpu/digits/run_0")], tmp_path / "work")


OFFLINE = Path("benchpipe/inference/closed/benchpipe-ci/results/local-cpu/digits/Offline")


def served_model(submitted: Path) -> Path:
    """The SavedModel the workflow's tests served, as its calibration recorded it."""
    record = json.loads((submitted / "runs" / "local-cpu" / "digits" / "calibrate" / "Offline" / "model.json").read_text())
    return submitted / record["path"]


def test_a_loadgen_test_run_again_matches_the_tree(submitted, cli_env, tmp_path):
    tree = submitted / "submissions" / "ci"
    report = tmp_path / "report.json"
    proc = subprocess.run(["benchpipe", "reproduce", str(tree), "--select", "local-cpu/digits/Offline/accuracy",
                           "--select", "local-cpu/digits/Offline/performance", "--model", str(served_model(submitted)),
                           "--work", str(tmp_path / "work"), "--keep", "--report", str(report)],
                          env=cli_env, capture_output=True, text=True, timeout=900, cwd=submitted)
    assert "tolerances: time to train ±25%, LoadGen performance metric ±25%" in proc.stdout, proc.stdout + proc.stderr
    written = json.loads(report.read_text())
    assert written["performance_tolerance"] == 0.25
    accuracy, performance = written["runs"]
    assert accuracy["run"] == "local-cpu/digits/Offline/accuracy" and accuracy["status"] == "match", accuracy
    recorded = parse_accuracy_txt(tree / OFFLINE / "accuracy" / "accuracy.txt")
    assert f"accuracy identical: {recorded}" in accuracy["checks"], accuracy
    assert any(c.startswith("model sha256 ") for c in accuracy["checks"])
    # Timing is the machine's: validity must match, the metric is reported with its figures either way.
    assert "result validity VALID in both" in performance["checks"], performance
    metric = [line for line in performance["checks"] + performance["differences"]
              if line.startswith("result_samples_per_second: tree ")]
    assert len(metric) == 1 and "tolerance ±25%" in metric[0], performance
    assert performance["differences"] == [] or performance["differences"] == metric
    assert proc.returncode == (0 if performance["status"] == "match" else 1)
    # The rerun ran `benchpipe infer` with the tree's user.conf, and recorded the tree's config.
    rerun = tmp_path / "work" / "local-cpu-digits-Offline-accuracy" / "out" / "test"
    assert (rerun / "user.conf").read_bytes() == (tree / OFFLINE / "user.conf").read_bytes()
    config = json.loads((tree / "benchpipe" / "config.json").read_text())
    part = {k: config.get(k) for k in ("containers", "inference", "submission")}  # what an infer job reads
    want = hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert json.loads((rerun / "provenance.json").read_text())["config_sha256"] == want


def test_a_test_needs_the_model_and_calibration_the_tree_recorded(submitted, tree, tmp_path):
    select = [Selection.parse("local-cpu/digits/Offline/accuracy")]
    with pytest.raises(ConfigError, match=r"local-cpu/digits/Offline/accuracy: served the model with sha256 "
                                          r"[0-9a-f]{64}, which the tree does not hold: give it with --model DIR"):
        reproduce(tree, select, tmp_path / "work")
    other = tmp_path / "other-model"
    shutil.copytree(served_model(submitted), other)
    (other / "extra.txt").write_text("x")
    with pytest.raises(ConfigError, match=f"{other} has sha256 "):
        reproduce(tree, select, tmp_path / "work", models=[other])
    with pytest.raises(ConfigError, match=r"no LoadGen test other-cpu/digits/Offline/accuracy \(tests in the tree: "
                                          r"local-cpu/digits/MultiStream/TEST01"):
        reproduce(tree, [Selection.parse("other-cpu/digits/Offline/accuracy")], tmp_path / "work")
    with pytest.raises(ConfigError, match="a mode of performance, accuracy, TEST01, TEST04"):
        Selection.parse("local-cpu/digits/Offline/TEST05")
    calibration = tree / "benchpipe" / "raw" / "local-cpu" / "digits" / "Offline" / "calibration.json"
    calibration.unlink()
    write_manifest(tree)
    with pytest.raises(BenchpipeError, match=f"{calibration}: missing: the tree does not record the calibration"):
        reproduce(tree, select, tmp_path / "work", models=[served_model(submitted)])


def record_image(tree: Path, job: str, **fields) -> None:
    """The provenance table says ``job`` ran in an image (a tree made on another machine, say)."""
    # local-cpu's partition: the Mobile target (local-litert) has its own.
    (path,) = (tree / "benchpipe" / "tables" / "provenance").rglob("target=local-cpu/*.parquet")
    table = pq.ParquetFile(path).read()
    rows = [dict(row, **fields) if row["job"] == job else row for row in table.to_pylist()]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    write_manifest(tree)


def test_a_run_whose_image_is_not_here_names_its_digest_and_the_rebuild(tree, repo_root, tmp_path):
    missing = "sha256:" + "0" * 64
    record_image(tree, "train/run_0", runtime="docker", runtime_version="27.0", image="tensorflow-cpu",
                 image_tag="benchpipe/tensorflow-cpu:gone", image_id=missing, image_digest=missing,
                 base_image="benchpipe/debian:bookworm", base_image_id="sha256:" + "1" * 64, lock_sha256="2" * 64,
                 wheels_json="{}")
    reproduction = reproduce(tree, [Selection.parse("local-cpu/digits/run_0")], tmp_path / "work",
                             target_file=repo_root / "config" / "targets" / "docker-cpu.yaml")
    (result,) = reproduction.results
    assert result.status == "not reproduced" and result.checks == [] and result.provenance is None
    assert reproduction.datasets == [] and not (tmp_path / "work").exists()  # created here, so removed whole
    (why,) = result.differences
    # Whether or not docker answers here, the digest is named and the rebuild spelled out, not run.
    assert f"image {missing} (digest {missing})" in why, why
    assert ("`benchpipe image wheelhouse --lock containers/tensorflow-cpu/requirements.lock --out "
            "wheelhouse/tensorflow-cpu && benchpipe image build --engine docker --recipe containers/tensorflow-cpu "
            "--wheelhouse wheelhouse/tensorflow-cpu --project . --base benchpipe/debian:bookworm "
            "--out images/docker/tensorflow-cpu.json`") in why, why
    assert f"sha256 {'2' * 64}" in why
    with pytest.raises(ConfigError, match="local-cpu.yaml: runtime local, image None; local-cpu/digits/run_0 ran on "
                                          "runtime docker in image tensorflow-cpu: another target"):
        reproduce(tree, [Selection.parse("local-cpu/digits/run_0")], tmp_path / "work",
                  target_file=repo_root / "config" / "targets" / "local-cpu.yaml")


# --- Unit tests on hand-made rows: an LLM's test, compared by its token metric. ---------------------

def _row(**fields) -> dict:
    row = {"result_validity": "VALID", "invalid_reason": None, "result_key": "result_completed_tokens_per_second",
           "result_latency_ns": None, "result_samples_per_s": None, "result_tokens_per_s": None}
    return {**row, **fields}


def test_a_test_is_compared_by_the_metric_its_row_has():
    from benchpipe.reproduce import Comparison, _compare_test, _result

    assert _result(_row(result_tokens_per_s=1500.0)) == 1500.0  # an LLM: tokens/s, samples/s null
    assert _result(_row(result_samples_per_s=690.0)) == 690.0  # a classifier's throughput
    # A latency scenario is compared by its latency whichever model it served.
    assert _result(_row(result_latency_ns=2_000_000, result_tokens_per_s=10.0)) == 2_000_000.0

    server = Selection.parse("local-cpu/llama31_8b/Server/performance")
    close = Comparison(str(server))
    _compare_test(close, server, _row(result_tokens_per_s=1000.0), _row(result_tokens_per_s=1100.0), 0.25)
    assert close.status == "match", close.differences
    assert close.checks[-1] == "result_completed_tokens_per_second: tree 1000, rerun 1100 (+10.0%; tolerance ±25%)"
    far = Comparison(str(server))
    _compare_test(far, server, _row(result_tokens_per_s=1000.0), _row(result_tokens_per_s=500.0), 0.25)
    assert far.status == "differ" and "tree 1000, rerun 500 (-50.0%" in far.differences[0]


def test_an_llm_test_can_be_selected_and_its_checkpoint_matched(tmp_path):
    from benchpipe.infer.models import checkpoint_sha256
    from benchpipe.reproduce import _model_sha256

    interactive = Selection.parse("local-gpu/llama31_8b/Interactive/performance")
    assert (interactive.scenario, interactive.job) == ("Interactive", "infer/Interactive/performance")
    checkpoint = tmp_path / "llama"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"model_type": "llama"}')
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    assert _model_sha256(checkpoint) == checkpoint_sha256(checkpoint)  # what calibrate recorded for it
    with pytest.raises(Exception, match="saved_model.pb"):
        _model_sha256(tmp_path)  # neither: the SavedModel's refusal, as before


def _test06_log(folder: Path, outputs: list[tuple[int, list[int]]]) -> Path:
    """A TEST06 run's accuracy log: every response, its tokens (int32), first token and count."""
    import numpy as np

    folder.mkdir(parents=True)
    entries = [{"seq_id": n, "qsl_idx": idx, "data": np.asarray(tokens, "<i4").tobytes().hex().upper(),
                "token_data": np.asarray(tokens[:1], "<i4").tobytes().hex().upper(), "token_count": len(tokens)}
               for n, (idx, tokens) in enumerate(outputs)]
    (folder / "mlperf_log_accuracy.json").write_text(json.dumps(entries))
    return folder


def test_test06_is_compared_by_its_checks_and_each_samples_outputs(tmp_path):
    from benchpipe.reproduce import Comparison, _compare_test06

    eos = (2,)
    tree = _test06_log(tmp_path / "tree", [(0, [5, 6, 2]), (3, [7, 2]), (0, [5, 6, 2])])
    same = _test06_log(tmp_path / "same", [(3, [7, 2]), (0, [5, 6, 2]), (0, [5, 6, 2])])
    result = Comparison("local-cpu/llama31_8b/Server/TEST06")
    _compare_test06(result, "Server", tree, eos, same, eos)
    assert result.status == "match", result.differences
    assert result.checks == ["TEST06 checks: tree passed, rerun passed (3 responses rerun)",
                             "TEST06 outputs identical for all 2 samples"]

    changed = _test06_log(tmp_path / "changed", [(0, [5, 6, 2]), (3, [7, 8, 2]), (0, [5, 6, 2])])
    result = Comparison("local-cpu/llama31_8b/Server/TEST06")
    _compare_test06(result, "Server", tree, eos, changed, eos)
    assert result.differences == ["TEST06 outputs: 1 of 2 samples answered differently "
                                  "(qsl_idx 3: tree [7, 2], rerun [7, 8, 2])"]

    # Two EOS at the end fail benchpipe's check on the rerun only; another sample answered too.
    doubled = _test06_log(tmp_path / "doubled", [(0, [5, 6, 2, 2]), (4, [7, 2])])
    result = Comparison("local-cpu/llama31_8b/Server/TEST06")
    _compare_test06(result, "Server", tree, eos, doubled, eos)
    assert result.status == "differ"
    assert result.differences[0].startswith("TEST06 checks: tree passed, rerun failed: TEST06 EOS: 1 of 2 responses")
    assert result.differences[1] == ("TEST06 samples: the tree answered 2 samples, the rerun 2; 2 in one only "
                                     "(qsl_idx [3, 4])")


def test_test06_is_selectable_and_a_tree_without_it_names_what_it_holds(tree, tmp_path):
    selection = Selection.parse("local-cpu/llama31_8b/Server/TEST06")
    assert (selection.mode, selection.job) == ("TEST06", "infer/Server/TEST06")
    with pytest.raises(ConfigError, match=r"no LoadGen test local-cpu/digits/Offline/TEST06 \(tests in the tree: "
                                          r"local-cpu/digits/MultiStream/TEST01"):
        reproduce(tree, [Selection.parse("local-cpu/digits/Offline/TEST06")], tmp_path / "work")
