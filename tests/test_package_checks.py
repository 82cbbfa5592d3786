import pytest

from benchpipe.errors import ValidationError
from benchpipe.package.checks import check_inference, check_score, validate_rows

PERF = {
    "target": "local-cpu", "benchmark": "digits", "scenario": "Offline", "mode": "performance",
    "result_validity": "VALID", "invalid_reason": None, "samples_per_second": 1000.0,
    "latency_p50_ns": 1, "latency_p90_ns": 2, "latency_p99_ns": 3, "early_stopping_latency_ns": None,
    "query_count": 1, "min_duration_ms": 10000, "errors": 0, "warnings": 0, "accuracy": None,
    "accuracy_target": None, "official_round_valid": False, "loadgen_version": "6.0.17",
    "log_sha256": "0" * 64,
}
ACC = dict(PERF, mode="accuracy", result_validity=None, samples_per_second=None, accuracy=0.98, accuracy_target=0.96)


def test_good_rows_pass():
    validate_rows("inference.parquet", [PERF, ACC])
    check_inference(PERF, 10000)
    check_inference(ACC, 10000)


@pytest.mark.parametrize(
    "row, expected",
    [
        (dict(PERF, result_validity="INVALID", invalid_reason="min duration not met"),
         "result INVALID: min duration not met (re-run it"),
        (dict(PERF, errors=2), "LoadGen logged 2 error(s)"),
        (dict(PERF, min_duration_ms=600000), "ran with min_duration 600000 ms, the config asks for 10000"),
        (dict(ACC, accuracy=0.5), "accuracy 0.5000 below the target 0.9600"),
    ],
)
def test_bad_inference_rows_are_refused(row, expected):
    with pytest.raises(ValidationError, match="digits on local-cpu, Offline") as err:
        check_inference(row, 10000)
    assert expected in str(err.value)


def test_row_schema_names_row_and_key():
    with pytest.raises(ValidationError, match=r"inference.parquet row 1: key 'samples_per_second'"):
        validate_rows("inference.parquet", [PERF, dict(PERF, samples_per_second=None)])
    aborted_with_time = {
        "target": "t", "benchmark": "digits", "run": 0, "division": "closed", "seed": 1, "status": "aborted",
        "run_start_ms": 0, "run_stop_ms": 10, "time_to_train_min": 1.0, "epochs": 30,
        "best_eval_accuracy": 0.9, "quality_target": 0.97, "log_sha256": "0" * 64,
    }
    with pytest.raises(ValidationError, match="runs.parquet row 0: key 'time_to_train_min'"):
        validate_rows("runs.parquet", [aborted_with_time])


def test_benchmark_without_score_is_refused():
    with pytest.raises(ValidationError, match="digits on t has no result: 2 of 5 runs"):
        check_score({"target": "t", "benchmark": "digits", "olympic_mean_min": None,
                     "reason": "2 of 5 runs did not reach the target"})


def _dataset(tmp_path, manifest):
    import json

    data = tmp_path / "digits"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data


def test_dataset_check_records_the_manifest_the_results_came_from(tmp_path):
    from benchpipe.hashing import sha256_file
    from benchpipe.package.checks import check_dataset

    data = _dataset(tmp_path, {"sources": [{"name": "a.gz", "sha256": "ab" * 32}], "shards": [{}, {}],
                               "subset": {"val_images": 6}})
    digest = sha256_file(data / "manifest.json")
    rows = [{"benchmark": "digits", "target": "t", "job": "train/run_0", "dataset_manifest_sha256": digest},
            {"benchmark": "other", "target": "t", "job": "train/run_0", "dataset_manifest_sha256": "x"}]
    assert check_dataset("digits", data, rows) == {
        "manifest_sha256": digest, "sources": {"a.gz": "ab" * 32}, "shards": 2, "subset": {"val_images": 6},
    }


def test_dataset_check_refuses_results_from_other_data(tmp_path):
    from benchpipe.package.checks import check_dataset

    data = _dataset(tmp_path, {"sources": [], "shards": []})
    rows = [{"benchmark": "digits", "target": "t", "job": "infer/Offline/accuracy", "dataset_manifest_sha256": "f" * 64}]
    with pytest.raises(ValidationError, match="infer/Offline/accuracy.*re-run the stale jobs"):
        check_dataset("digits", data, rows)
    with pytest.raises(ValidationError, match="missing.json|cannot read the dataset manifest"):
        check_dataset("digits", tmp_path / "missing", rows)


def test_only_the_rules_benchmarks_go_where_the_official_tools_look(tmp_path):
    from benchpipe.package.tree import training_org_dir

    assert training_org_dir(tmp_path, "acme", "resnet") == tmp_path / "training" / "acme"
    for ours in ("digits", "mnist"):
        assert training_org_dir(tmp_path, "acme", ours) == tmp_path / "benchpipe" / "training" / "acme"
