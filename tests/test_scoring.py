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
            "training_ruleset": "4.0.0"}


def test_open_runs_short_of_the_target_are_scored_by_time_to_run_and_labelled():
    from benchpipe.results.tables import score_rows

    rows = [_run("open", None, i) for i in range(5)]
    for i, minutes in enumerate([5.0, 1.0, 3.0, 2.0, 4.0]):
        rows[i]["run_stop_ms"] = rows[i]["run_start_ms"] + int(minutes * 60_000)
    [score] = score_rows(rows)
    assert score["olympic_mean_min"] == pytest.approx(3.0)
    assert score["successful_runs"] == 0
    assert score["reason"].startswith("open division: 5 of 5 runs stopped at the epoch limit")


def test_closed_runs_short_of_the_target_still_have_no_score():
    from benchpipe.results.tables import score_rows

    [score] = score_rows([_run("closed", None, i) for i in range(5)])
    assert score["olympic_mean_min"] is None and "5 of 5 runs did not reach the target" in score["reason"]
