"""The RCP scaling factor: MLCommons' result summarizer multiplies a closed run set's olympic mean
by the scaling_factor the RCP checker writes into scaling.json, and so does scores.parquet's
score_min, to the last bit. Checked on a real published result set (AMD, training v5.1: 10
llama2_70b_lora and 10 llama31_8b logs, read in place) through benchpipe's own table path."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from benchpipe.contracts import registry
from benchpipe.contracts.errors import BenchpipeError, ValidationError
from benchpipe.mlcommons import training
from benchpipe.package.checks import check_summarizer_scores
from benchpipe.results.tables import scaling_factors, score_rows, training_log_rows
from tests.conftest import REPO_ROOT

AMD = REPO_ROOT.parent / "shared" / "data" / "published" / "training_results_v5.1" / "AMD"
SYSTEM = "MI355X_EPYC_9575F_pytorch"
SYSTEM_NAME = "SMCI355X (AS -4126GS-NMR-LCC)"
BENCHMARKS = ("llama2_70b_lora", "llama31_8b")
# What `python -m mlperf_logging.result_summarizer AMD training 5.1.0` scores, as it prints them.
PUBLISHED = {"llama2_70b_lora": 10.18474574915825, "llama31_8b": 99.70854353631518}
# The plain olympic means of the same logs, before scaling.
MEANS = {"llama2_70b_lora": 10.15057, "llama31_8b": 99.31014}

needs_amd = pytest.mark.skipif(not AMD.is_dir(), reason=f"{AMD}: the published AMD folder is not here")


def _folder(benchmark: str) -> Path:
    return AMD / "results" / SYSTEM / benchmark


def _logs(benchmark: str) -> list[Path]:
    return sorted(_folder(benchmark).glob("result_*.txt"), key=lambda p: int(p.stem.removeprefix("result_")))


def _published_factor(benchmark: str) -> float:
    return json.loads((_folder(benchmark) / "scaling.json").read_text())["scaling_factor"]


@pytest.fixture
def any_benchmark(monkeypatch):
    """run_row reads the benchmark's quality target from benchpipe's registry, which need not have a
    plug-in for every MLPerf benchmark: a plug-in it has stands in for those it lacks (what run_row
    reads of it plays no part in a score)."""
    real = registry.get

    def get(name: str):
        try:
            return real(name)
        except BenchpipeError:
            return real("digits")

    monkeypatch.setattr(registry, "get", get)


@pytest.fixture
def amd_runs(any_benchmark) -> tuple[list[dict], dict[tuple[str, str, int], Path]]:
    """(runs rows, their logs) of the 20 AMD logs, parsed under the ruleset their keys give."""
    parsed = {}
    for benchmark in BENCHMARKS:
        for path in _logs(benchmark):
            run = int(path.stem.removeprefix("result_"))
            parsed[(SYSTEM, benchmark, run)] = (path, training_log_rows(SYSTEM, benchmark, run, path, "5.1.0"))
    keys = set.intersection(*({e["key"] for e in events} for _, (events, _) in parsed.values()))
    ruleset, _ = training.detect_ruleset(set(BENCHMARKS), keys)
    assert ruleset == "5.1.0"
    runs = [row for _, (_, row) in parsed.values()]
    assert len(runs) == 20 and {r["division"] for r in runs} == {"closed"}
    return runs, {key: path for key, (path, _) in parsed.items()}


@needs_amd
def test_the_amd_logs_score_exactly_as_the_result_summarizer(amd_runs) -> None:
    runs, logs = amd_runs
    factors = scaling_factors(runs, logs)
    assert factors == {(SYSTEM, b): _published_factor(b) for b in BENCHMARKS}
    scores = {s["benchmark"]: s for s in score_rows(runs, factors)}
    for benchmark in BENCHMARKS:
        score = scores[benchmark]
        assert score["score_min"] == PUBLISHED[benchmark], benchmark  # exactly: the summarizer's digits
        assert score["scaling_factor"] == _published_factor(benchmark) > 1.0
        # The unscaled mean stays beside it: it differs from the summarizer's score.
        assert score["olympic_mean_min"] == pytest.approx(MEANS[benchmark], abs=1e-5)
        assert score["olympic_mean_min"] != score["score_min"]
        assert (score["runs"], score["successful_runs"], score["reason"]) == (10, 10, "")


@needs_amd
def test_the_same_runs_in_the_open_division_are_not_scaled(amd_runs) -> None:
    runs, logs = amd_runs
    opened = [dict(r, division="open") for r in runs]
    assert scaling_factors(opened, logs) == {}
    for score in score_rows(opened):
        assert score["scaling_factor"] == 1.0
        assert score["score_min"] == pytest.approx(score["olympic_mean_min"], rel=1e-12)


@needs_amd
def test_closed_runs_without_their_factor_are_refused(amd_runs) -> None:
    runs, _ = amd_runs
    with pytest.raises(ValidationError, match=f"scores.parquet: {SYSTEM} llama2_70b_lora: closed runs of training "
                                              "5.1.0 are scaled by the RCP checker's factor"):
        score_rows(runs)
    with pytest.raises(ValidationError, match=f"runs.parquet: {SYSTEM} llama2_70b_lora run"):
        scaling_factors(runs, {})


@needs_amd
@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_the_rcp_checker_derives_the_published_factor_and_writes_nothing_beside_the_logs(tmp_path, benchmark):
    folder = tmp_path / benchmark
    folder.mkdir()
    logs = []
    for log in _logs(benchmark):
        # Named otherwise than result_*.txt: the factor comes from the logs given, not a folder's glob.
        logs.append(folder / f"run_{log.stem}.log")
        shutil.copyfile(log, logs[-1])
    before = sorted(p.name for p in folder.iterdir())
    assert training.rcp_scaling_factor(logs, benchmark, "5.1.0") == _published_factor(benchmark)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_no_factor_outside_the_ruleset_or_without_rcps(monkeypatch, tmp_path) -> None:
    assert training.rcp_scaling_factor([], "digits", "5.1.0") == 1.0
    assert training.rcp_scaling_factor([], "resnet", "5.1.0") == 1.0  # retired after 4.0
    monkeypatch.setattr(training, "_rcp_path", lambda benchmark, ruleset: tmp_path / "absent.json")
    assert training.rcp_scaling_factor([], "llama31_8b", "5.1.0") == 1.0


@needs_amd
def test_a_run_set_the_rcp_checker_cannot_read_is_an_error_naming_it(tmp_path) -> None:
    # Two benchmarks' logs, two batch sizes: the checker crashes on such a set (KeyError).
    mixed = _logs("llama2_70b_lora")[:5] + _logs("llama31_8b")[:5]
    with pytest.raises(ValidationError, match=r"llama2_70b_lora: MLCommons' RCP checker fails on the 10 "
                                              r"llama2_70b_lora logs \(training 5.1.0\)"):
        training.rcp_scaling_factor(mixed, "llama2_70b_lora", "5.1.0")
    with pytest.raises(ValidationError, match="absent.txt: no such result log"):
        training.rcp_scaling_factor([tmp_path / "absent.txt"], "llama2_70b_lora", "5.1.0")


# --- packaging: the summarizer's score against score_min ------------------------------------------


def _score(target: str, benchmark: str, minutes: float | None) -> dict:
    return {"target": target, "benchmark": benchmark, "score_min": minutes}


def test_a_summarizer_score_other_than_score_min_fails_naming_both() -> None:
    names = {"t1": "box", "t2": "box", "t3": "other"}
    rows = [_score("t1", "llama31_8b", 99.70854353631518), _score("t2", "llama31_8b", 98.5),
            _score("t3", "llama31_8b", 1.0), _score("t3", "flux1", 2.0)]
    # Two targets named alike: their scores are held together, whatever the rows' order.
    check_summarizer_scores("llama31_8b", [("other", 1.0), ("box", 98.5), ("box", 99.70854353631518)], rows, names,
                            where="s.csv")
    off = math.nextafter(99.70854353631518, 100.0)  # one float up: rounded digits would hide it
    with pytest.raises(ValidationError, match=r"s.csv: the result summarizer scores llama31_8b on system 'box' "
                                              r"\(target\(s\) t1, t2\) 98.5, 99.70854353631519 min, scores.parquet's "
                                              r"score_min is 99.70854353631518, 98.5 min"):
        check_summarizer_scores("llama31_8b", [("other", 1.0), ("box", 98.5), ("box", off)], rows, names,
                                where="s.csv")
    with pytest.raises(ValidationError, match="on system 'other' \\(target\\(s\\) t3\\) none min"):
        check_summarizer_scores("llama31_8b", [("box", 98.5), ("box", 99.70854353631518)], rows, names,
                                where="s.csv")


@needs_amd
def test_the_official_tools_score_the_amd_folder_as_score_min(amd_runs, tmp_path) -> None:
    """As packaging runs them on training/<org>/: the package checker writes scaling.json, then the
    result summarizer multiplies by it; each of its scores must equal score_min."""
    runs, logs = amd_runs
    org = tmp_path / "AMD"
    shutil.copytree(AMD, org)
    for path in [org, *org.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    for benchmark in BENCHMARKS:
        (org / "results" / SYSTEM / benchmark / "scaling.json").unlink()
    training.run_package_checker(org, tmp_path / "package_checker.log", "5.1.0").require()
    for benchmark in BENCHMARKS:
        assert training.read_scaling_factor(org / "results" / SYSTEM / benchmark) == _published_factor(benchmark)
    scores = score_rows(runs, scaling_factors(runs, logs))
    verdict = training.run_result_summarizer(org, tmp_path / "summary.csv", tmp_path / "summarizer.log", "5.1.0",
                                             benchmark="llama31_8b").require()
    names = {SYSTEM: SYSTEM_NAME}
    for benchmark in BENCHMARKS:
        summarized = [(row["system"], float(row[benchmark])) for row in verdict.rows]
        assert summarized == [(SYSTEM_NAME, PUBLISHED[benchmark])]
        check_summarizer_scores(benchmark, summarized, scores, names, where="summary.csv")
        tampered = [dict(s, score_min=s["olympic_mean_min"]) for s in scores]
        with pytest.raises(ValidationError, match=re.escape(f"scores {benchmark} on system '{SYSTEM_NAME}'")):
            check_summarizer_scores(benchmark, summarized, tampered, names, where="summary.csv")


def test_the_score_schema_holds_the_factor_and_the_score() -> None:
    from benchpipe.package.checks import validate_rows

    row = {"target": "t", "benchmark": "llama31_8b", "runs": 10, "successful_runs": 10, "olympic_mean_min": 99.3,
           "reason": "", "training_ruleset": "6.1.0", "scaling_factor": 1.004, "score_min": 99.7}
    validate_rows("scores.parquet", [row])
    validate_rows("scores.parquet", [dict(row, olympic_mean_min=None, score_min=None, reason="2 of 10 runs failed")])
    for key, bad in (("scaling_factor", 0.99), ("scaling_factor", None), ("score_min", None)):
        with pytest.raises(ValidationError, match="scores.parquet row 0"):
            validate_rows("scores.parquet", [dict(row, **{key: bad})])
    with pytest.raises(ValidationError, match="scores.parquet row 0"):
        validate_rows("scores.parquet", [dict(row, olympic_mean_min=None, reason="failed")])  # a score without a mean
    with pytest.raises(ValidationError, match="scores.parquet row 0"):
        validate_rows("scores.parquet", [{k: v for k, v in row.items() if k != "score_min"}])
