import pytest

from benchpipe.train.scoring import olympic_score


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
