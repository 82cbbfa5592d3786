import pytest

from benchpipe.results.scoring import olympic_score


def test_drops_fastest_and_slowest():
    score = olympic_score([5.0, 1.0, 3.0, 2.0, 4.0])
    assert score.olympic_mean_minutes == pytest.approx(3.0)
    assert (score.runs, score.successful_runs, score.reason) == (5, 5, "")


def test_one_failed_run_counts_as_slowest():
    score = olympic_score([5.0, 1.0, None, 2.0, 4.0])
    assert score.olympic_mean_minutes == pytest.approx((2.0 + 4.0 + 5.0) / 3)
    assert score.successful_runs == 4


def test_two_failed_runs_give_no_result():
    score = olympic_score([5.0, None, None, 2.0, 4.0])
    assert score.olympic_mean_minutes is None
    assert "2 of 5 runs did not reach the target" in score.reason


def test_too_few_runs():
    assert olympic_score([1.0, 2.0]).olympic_mean_minutes is None


def _run(division: str, minutes: float | None, run: int) -> dict:
    start = 1_000 * run
    stop = start + int((minutes if minutes is not None else 10.0) * 60_000)
    return {"target": "t", "benchmark": "resnet", "run": run, "division": division,
            "time_to_train_min": minutes, "run_start_ms": start, "run_stop_ms": stop, "quality_target": 0.759,
            "training_ruleset": "4.0.0", "status": "aborted" if minutes is None else "success"}


def test_open_runs_short_of_the_target_are_scored_by_time_to_run_and_labelled():
    from benchpipe.results.tables import score_rows

    rows = [_run("open", None, i) for i in range(5)]
    for i, minutes in enumerate([5.0, 1.0, 3.0, 2.0, 4.0]):
        rows[i]["run_stop_ms"] = rows[i]["run_start_ms"] + int(minutes * 60_000)
    [score] = score_rows(rows, counted={("t", "resnet", i): True for i in range(5)})
    assert score["olympic_mean_min"] == pytest.approx(3.0)
    assert score["successful_runs"] == 0
    assert score["reason"].startswith("open division: 5 of 5 runs stopped at the epoch or step limit")
    assert "each run whose log passes the open rules" in score["reason"]


def test_open_runs_of_an_mlperf_benchmark_count_as_the_summarizer_counts_them():
    """It counts every run whose log passes the compliance checker, short of the target or not,
    and drops the others: one dropped is the slowest, two leave no score."""
    from benchpipe.contracts.errors import ValidationError
    from benchpipe.results.tables import score_rows

    rows = [_run("open", m, i) for i, m in enumerate([5.0, 1.0, 3.0, 2.0, 4.0])]
    rows[4].update(status="aborted", time_to_train_min=None)  # 4 minutes, short of the target
    passes = {("t", "resnet", i): True for i in range(5)}
    [score] = score_rows(rows, counted=passes)
    assert score["olympic_mean_min"] == pytest.approx(3.0)  # 4.0 counted: 2, 3, 4 kept
    assert score["successful_runs"] == 4 and "1 of 5 runs stopped" in score["reason"]
    [score] = score_rows(rows, counted={**passes, ("t", "resnet", 4): False})
    assert score["olympic_mean_min"] == pytest.approx((2.0 + 3.0 + 5.0) / 3)  # dropped, as the slowest
    [score] = score_rows(rows, counted={**passes, ("t", "resnet", 4): False, ("t", "resnet", 0): False})
    assert score["olympic_mean_min"] is None and score["score_min"] is None
    with pytest.raises(ValidationError, match="run\\(s\\) \\[0, 1, 2, 3, 4\\] were not judged"):
        score_rows(rows)


def test_closed_runs_short_of_the_target_still_have_no_score():
    from benchpipe.results.tables import score_rows

    [score] = score_rows([_run("closed", None, i) for i in range(5)])
    assert score["olympic_mean_min"] is None and "5 of 5 runs did not reach the target" in score["reason"]


def test_score_min_is_the_summarizers_olympic_mean_times_the_given_factor():
    from benchpipe.results.tables import score_rows

    rows = [_run("closed", m, i) for i, m in enumerate([5.0, 1.0, 3.0, 2.0, 4.0])]
    for row in rows:
        # Times that /60000 and /60/1000 round differently: the summarizer divides twice.
        row["run_stop_ms"] = row["run_start_ms"] + int(row["time_to_train_min"] * 60_000) + 7
    [score] = score_rows(rows, {("t", "resnet"): 1.25})
    kept = sorted((float(r["run_stop_ms"]) - float(r["run_start_ms"])) / 60 / 1000 for r in rows)[1:-1]
    assert score["scaling_factor"] == 1.25
    assert score["score_min"] == sum(kept) * 1.0 / len(kept) * 1.25  # the summarizer's order, to the bit
    assert score["olympic_mean_min"] == pytest.approx(3.0)


def test_a_closed_mlperf_score_needs_its_factor_and_others_have_none():
    from benchpipe.contracts.errors import ValidationError
    from benchpipe.results.tables import score_rows

    closed = [_run("closed", m, i) for i, m in enumerate([5.0, 1.0, 3.0, 2.0, 4.0])]
    with pytest.raises(ValidationError, match="scores.parquet: t resnet: closed runs of training 4.0.0 are scaled"):
        score_rows(closed)
    # Not an MLPerf benchmark of the runs' ruleset, or open: the RCP checker never sees it.
    for rows in ([dict(r, training_ruleset="6.1.0") for r in closed], [dict(r, division="open") for r in closed]):
        [score] = score_rows(rows)
        assert score["scaling_factor"] == 1.0 and score["score_min"] == pytest.approx(3.0)
