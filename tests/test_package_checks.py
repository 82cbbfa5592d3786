import pytest

from benchpipe.contracts.errors import ValidationError
from benchpipe.package.checks import check_rounds, check_score, validate_rows

PERF = {
    "target": "local-cpu", "benchmark": "digits", "scenario": "Offline", "mode": "performance",
    "result_validity": "VALID", "invalid_reason": None, "samples_per_second": 1000.0,
    "latency_p50_ns": 1, "latency_p90_ns": 2, "latency_p99_ns": 3, "early_stopping_latency_ns": None,
    "query_count": 1, "min_duration_ms": 10000, "errors": 0, "warnings": 0, "accuracy": None,
    "accuracy_target": None, "official_round_valid": False, "loadgen_version": "6.0.17",
    "log_sha256": "0" * 64, "result_key": "result_samples_per_second",
    "result_latency_ns": None, "result_samples_per_s": 1000.0,
    "early_stopping_met": None, "official_run": False, "model_sha256": "1" * 64, "inference_round": "v6.1",
    "ttft_p99_ns": None, "tpot_p99_ns": None, "tokens_per_second": None, "result_tokens_per_s": None,
}
ACC = dict(PERF, mode="accuracy", result_validity=None, samples_per_second=None, accuracy=0.98, accuracy_target=0.96,
           result_key=None, result_samples_per_s=None)


# An LLM's Interactive test and its TEST06: ranked in tokens/s, with its token latencies.
LLM = dict(PERF, benchmark="llama31_8b", scenario="Interactive", mode="performance",
           result_key="result_completed_tokens_per_second", result_samples_per_s=None, result_tokens_per_s=2640.0,
           ttft_p99_ns=340_510_151, tpot_p99_ns=25_825_845, tokens_per_second=2640.0)


def test_good_rows_pass():
    validate_rows("inference.parquet", [PERF, ACC, dict(PERF, mode="TEST04"), LLM, dict(LLM, mode="TEST06")])


def test_a_row_of_another_round_is_refused():
    with pytest.raises(ValidationError, match=r"inference.parquet row 1: key 'inference_round'"):
        validate_rows("inference.parquet", [PERF, dict(PERF, inference_round="v5.1")])
    score = {"target": "t", "benchmark": "digits", "training_ruleset": "6.1.0"}
    rows = {"runs.parquet": [], "scores.parquet": [score], "inference.parquet": [PERF]}
    settings = {"training": {"ruleset": "6.1.0"}, "inference": {"round": "v6.1"}}
    check_rounds(rows, settings)
    with pytest.raises(ValidationError, match="scores.parquet: row t digits has training_ruleset 6.1.0, but "
                                              "training.ruleset is 4.0.0: the tables are stale"):
        check_rounds(rows, dict(settings, training={"ruleset": "4.0.0"}))


def test_row_schema_names_row_and_key():
    with pytest.raises(ValidationError, match=r"inference.parquet row 1: key 'result_key'"):
        validate_rows("inference.parquet", [PERF, dict(PERF, mode="TEST01", result_key=None)])
    # A throughput scenario's result is in samples/s, never in the latency column.
    with pytest.raises(ValidationError, match=r"inference.parquet row 1: key 'result_latency_ns'"):
        validate_rows("inference.parquet", [PERF, dict(PERF, result_latency_ns=1000)])
    aborted_with_time = {
        "target": "t", "benchmark": "digits", "run": 0, "division": "closed", "seed": 1, "status": "aborted",
        "run_start_ms": 0, "run_stop_ms": 10, "time_to_train_min": 1.0, "epochs": 30,
        "best_eval_accuracy": 0.9, "quality_target": 0.97, "log_sha256": "0" * 64, "training_ruleset": "4.0.0",
    }
    with pytest.raises(ValidationError, match="runs.parquet row 0: key 'time_to_train_min'"):
        validate_rows("runs.parquet", [aborted_with_time])


def test_event_and_provenance_rows_meet_their_schemas():
    from benchpipe.provenance import FIELDS
    from benchpipe.results.tables import PROVENANCE_JSON

    event = {"target": "t", "benchmark": "digits", "run": 0, "line": 3, "time_ms": 1, "event_type": "POINT_IN_TIME",
             "key": "seed", "value_json": "11", "metadata_json": "{}"}
    validate_rows("training_events.parquet", [event])
    with pytest.raises(ValidationError, match=r"training_events.parquet row 1: key 'event_type'"):
        validate_rows("training_events.parquet", [event, dict(event, event_type="POINT")])
    provenance = {"target": "t", "benchmark": "digits", "job": "infer/Offline/TEST01",
                  **{(f"{f}_json" if f in PROVENANCE_JSON else f): None for f in FIELDS},
                  "runtime": "docker", "lock_sha256": "a" * 64, "code_commit": "b" * 40, "code_dirty": False}
    validate_rows("provenance.parquet", [provenance])
    for key, bad in (("lock_sha256", "A" * 64), ("code_dirty", "false"), ("job", "infer/Offline/TEST05"),
                     ("runtime", "kubernetes")):
        with pytest.raises(ValidationError, match=f"provenance.parquet row 0: key '{key}'"):
            validate_rows("provenance.parquet", [dict(provenance, **{key: bad})])
    with pytest.raises(ValidationError, match="provenance.parquet row 0"):
        validate_rows("provenance.parquet", [{k: v for k, v in provenance.items() if k != "code_commit"}])


def test_benchmark_without_score_is_refused():
    with pytest.raises(ValidationError, match="digits on t has no result: 2 of 5 runs"):
        check_score({"target": "t", "benchmark": "digits", "olympic_mean_min": None, "scaling_factor": 1.0,
                     "score_min": None, "reason": "2 of 5 runs did not reach the target"})


def _dataset(tmp_path, manifest):
    import json

    data = tmp_path / "digits"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data


def test_dataset_check_records_the_manifest_the_results_came_from(tmp_path):
    from benchpipe.contracts.hashing import sha256_file
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


def test_closed_resnet_needs_an_edge_system():
    from benchpipe.package.inference import check_round_scenarios

    settings = {"submission": {"division": "closed"}}
    check_round_scenarios(settings, {"gpu-node": {"system_type": "datacenter"}}, ["digits"])
    check_round_scenarios(settings, {"cpu": {"system_type": "edge"}}, ["resnet"])
    check_round_scenarios({"submission": {"division": "open"}}, {"gpu-node": {"system_type": "datacenter"}}, ["resnet"])
    with pytest.raises(ValidationError, match=r"runs/gpu-node/system.json: system_type is datacenter.*edge systems only"):
        check_round_scenarios(settings, {"gpu-node": {"system_type": "datacenter"}}, ["resnet"])
