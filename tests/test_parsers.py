import json

import pytest

from benchpipe.contracts.errors import ParseError
from benchpipe.results.loadgen_parser import parse_accuracy_txt, parse_detail_log
from benchpipe.results.mllog_parser import parse_mllog, summarize_run


def mllog_line(key, value=None, event_type="POINT_IN_TIME", time_ms=0, **metadata):
    record = {"namespace": "", "time_ms": time_ms, "event_type": event_type, "key": key,
              "value": value, "metadata": {"file": "x.py", "lineno": 1, **metadata}}
    return ":::MLLOG " + json.dumps(record)


def header():
    return [mllog_line(k, v) for k, v in [("submission_benchmark", "digits"), ("submission_org", "o"),
                                          ("submission_platform", "p"), ("submission_division", "closed"),
                                          ("seed", 5)]]


def test_summary_of_a_finished_run(tmp_path):
    log = tmp_path / "mllog.txt"
    log.write_text("\n".join(header() + [
        "some framework chatter",
        mllog_line("run_start", event_type="INTERVAL_START", time_ms=1000),
        mllog_line("block_start", event_type="INTERVAL_START", first_epoch_num=1, epoch_count=1),
        mllog_line("eval_accuracy", 0.98, epoch_num=1),
        mllog_line("run_stop", event_type="INTERVAL_END", time_ms=61000, status="success"),
    ]) + "\n")
    run = summarize_run(parse_mllog(log), log)
    assert (run.status, run.seed, run.epochs, run.best_eval_accuracy) == ("success", 5, 1, 0.98)
    assert run.time_to_train_min == pytest.approx(1.0)


def test_run_without_run_stop_is_refused_as_unfinished(tmp_path):
    # A killed run's log: no result, not even an aborted one (the workflow keeps no such run).
    log = tmp_path / "mllog.txt"
    log.write_text("\n".join(header() + [mllog_line("run_start", event_type="INTERVAL_START")]))
    with pytest.raises(ParseError, match=r"mllog.txt: no run_stop: the run did not finish \(run_start on line 6"):
        summarize_run(parse_mllog(log), log)


def test_malformed_record_names_the_line(tmp_path):
    log = tmp_path / "mllog.txt"
    log.write_text("\n".join(header() + [':::MLLOG {"key": "run_start", "time_ms": ']))
    with pytest.raises(ParseError, match=r"mllog.txt: line 6: malformed MLLOG record"):
        parse_mllog(log)


def test_missing_required_key_is_named(tmp_path):
    log = tmp_path / "mllog.txt"
    log.write_text(mllog_line("seed", 1))
    with pytest.raises(ParseError, match="required key 'submission_benchmark' missing"):
        summarize_run(parse_mllog(log), log)


def test_detail_log_errors_and_last_values(tmp_path):
    log = tmp_path / "mlperf_log_detail.txt"
    rows = [
        {"key": "result_validity", "value": "INVALID", "metadata": {}},
        {"key": "error_runtime", "value": "SUT dropped a sample", "metadata": {"is_error": True}},
        {"key": "result_validity", "value": "VALID", "metadata": {}},
    ]
    log.write_text("\n".join(":::MLLOG " + json.dumps(r) for r in rows))
    detail = parse_detail_log(log)
    assert detail.get("result_validity") == "VALID"
    assert detail.errors == ["line 2: error_runtime: SUT dropped a sample"]
    with pytest.raises(ParseError, match="key 'result_samples_per_second' missing"):
        detail.require("result_samples_per_second", log)


def test_accuracy_txt(tmp_path):
    path = tmp_path / "accuracy.txt"
    path.write_text("accuracy=98.250%, good=393, total=400\nhash=abc\n")
    assert parse_accuracy_txt(path) == pytest.approx(0.9825)
    path.write_text("top1 98\n")
    with pytest.raises(ParseError, match="line 1: expected 'accuracy=<percent>%'"):
        parse_accuracy_txt(path)
