"""`benchpipe audit` on MLCommons folders that benchpipe did not make: a real published training
organization folder (AMD, training v5.1), read in place, and hostile copies of it; and an
inference division folder copied out of the workflow's tree (conftest `submitted`), so that
nothing of benchpipe's own (manifest, config, tables) comes with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchpipe.audit import audit
from benchpipe.audit.foreign import NO_MANIFEST, is_benchpipe_tree
from benchpipe.cli import main
from benchpipe.contracts.errors import BenchpipeError
from benchpipe.contracts.layout import DETAIL_LOG, SUMMARY_LOG
from benchpipe.contracts.rounds import ROUND
from tests.conftest import REPO_ROOT

AMD = REPO_ROOT.parent / "shared" / "data" / "published" / "training_results_v5.1" / "AMD"
SYSTEM = "MI355X_EPYC_9575F_pytorch"
SYSTEM_NAME = "SMCI355X (AS -4126GS-NMR-LCC)"
LORA = f"results/{SYSTEM}/llama2_70b_lora"
LLAMA8B = f"results/{SYSTEM}/llama31_8b"
# What `python -m mlperf_logging.result_summarizer AMD training 5.1.0` scores (SOURCES.md).
PUBLISHED = {"llama2_70b_lora": 10.18474574915825, "llama31_8b": 99.70854353631518}

needs_amd = pytest.mark.skipif(not AMD.is_dir(), reason=f"{AMD}: the published AMD folder is not here")


def _copy(tmp_path: Path) -> Path:
    org = tmp_path / "AMD"
    shutil.copytree(AMD, org)
    for path in [org, *org.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return org


def _item(report, name: str):
    return next(item for item in report.items if item.name == name)


def _score_line(report, folder: str) -> str:
    return next(r for r in _item(report, "scores").reasons if r.startswith(f"{folder}: ") and " min (" in r)


@pytest.fixture(scope="module")
def amd_report():
    return audit(AMD)


@needs_amd
def test_published_folder_passes_with_the_summarizers_exact_scores(amd_report) -> None:
    report = amd_report
    assert report.kind == "foreign" and report.to_dict()["kind"] == "foreign"
    assert report.passed, "\n".join(report.lines())
    assert [i.name for i in report.items] == ["integrity", "logs", "scores", "checkers"]
    assert _item(report, "integrity").reasons[0] == NO_MANIFEST
    assert _item(report, "logs").checked == 20
    for benchmark, folder in (("llama2_70b_lora", LORA), ("llama31_8b", LLAMA8B)):
        ours = float(_score_line(report, folder).split(": ", 1)[1].split(" min")[0])
        assert ours == PUBLISHED[benchmark]
        assert f"{folder}: equal to the result summarizer's {PUBLISHED[benchmark]!r}" in _item(report, "scores").reasons
    assert any("training 5.1.0" in r for r in _item(report, "checkers").reasons)
    # The same scores as numbers, for the report page, each with its ten runs.
    recorded = {s["benchmark"]: s for s in report.to_dict()["scores"]}
    for benchmark, value in PUBLISHED.items():
        assert recorded[benchmark]["score_min"] == value == recorded[benchmark]["summarizer_min"]
        assert [log["run"] for log in recorded[benchmark]["logs"]] == list(range(10))
    # The official tools ran on copies: the read-only folder is as published.
    assert sorted(p.name for p in (AMD / LORA).iterdir()) == [f"result_{n}.txt" for n in range(10)] + ["scaling.json"]


@needs_amd
def test_second_run_start_fails_the_logs_though_the_official_checker_only_warns(tmp_path: Path) -> None:
    org = _copy(tmp_path)
    log = org / LLAMA8B / "result_3.txt"
    lines = log.read_text().splitlines(keepends=True)
    first = next(n for n, line in enumerate(lines, 1) if '"key": "run_start"' in line)
    lines.insert(first + 3, lines[first - 1])  # the same run_start again, three lines on
    log.write_text("".join(lines))

    report = audit(org)
    logs = _item(report, "logs")
    assert not report.passed and logs.status == "fail"
    [reason] = logs.reasons
    assert reason.startswith(f"{LLAMA8B}/result_3.txt: line {first + 4}:")
    assert "passed it with only a WARNING" in reason and "run_start" in reason
    # Its time is unchanged, so the summarizer's score still stands: only benchpipe's rules catch it.
    assert _item(report, "checkers").status == "pass"


@needs_amd
def test_scaling_factor_scales_the_derived_score_and_the_rcp_checker_disagrees(tmp_path: Path) -> None:
    org = _copy(tmp_path)
    (org / LORA / "scaling.json").write_text(json.dumps({"scaling_factor": 2.0}))

    report = audit(org)
    scores = _item(report, "scores")
    olympic = 10.150568750000001  # the olympic mean of the ten logs, as the summarizer sums them
    assert _score_line(report, LORA).startswith(f"{LORA}: {olympic * 2.0!r} min (")
    assert f"{LORA}: equal to the result summarizer's {olympic * 2.0!r}" in scores.reasons
    assert any(r.startswith(f"{LORA}/scaling.json: scaling_factor 2.0, the RCP checker derives 1.00336")
               for r in scores.reasons)
    assert scores.status == "fail"
    assert _score_line(report, LLAMA8B).startswith(f"{LLAMA8B}: {PUBLISHED['llama31_8b']!r} min")


@needs_amd
@pytest.mark.slow  # two audits, each running the official tools on 20 logs
def test_published_summary_with_a_wrong_score_fails_naming_the_benchmark(tmp_path: Path) -> None:
    row = {"division": "closed", "submitter": "AMD", "system": SYSTEM_NAME,
           "llama31_8b": 99.7085435363, "llama2_70b_lora": 10.1847457492, "flux1": None}
    good = tmp_path / "good.json"
    good.write_text(json.dumps([row]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([dict(row, llama31_8b=99.7085435364)]))  # one unit off in the 10th decimal
    out = tmp_path / "AMD.audit.json"

    assert main(["audit", str(AMD), "--summary", str(good), "--report", str(out)]) == 0
    summary = _item_dict(json.loads(out.read_text()), "summary")
    assert summary["status"] == "pass" and summary["checked"] >= 2

    assert main(["audit", str(AMD), "--ruleset", "5.1.0", "--summary", str(bad), "--report", str(out)]) == 1
    written = json.loads(out.read_text())
    assert written["kind"] == "foreign" and not written["passed"]
    summary = _item_dict(written, "summary")
    assert summary["status"] == "fail"
    [wrong] = [r for r in summary["reasons"] if "beyond the summary's rounding" in r]
    assert f"{SYSTEM_NAME} llama31_8b: published 99.7085435364 min, the logs give 99.70854353631518" in wrong


def _item_dict(report: dict, name: str) -> dict:
    return next(item for item in report["items"] if item["name"] == name)


def test_a_folder_that_is_neither_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(BenchpipeError, match="neither a benchpipe tree .* nor an MLCommons folder"):
        audit(tmp_path)
    assert main(["audit", str(tmp_path), "--report", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to audit" in err


# --- an inference division folder --------------------------------------------------------------

ORG = "benchpipe-ci"
SCENARIO_DIR = f"{ORG}/results/local-cpu/digits"
OFFLINE_RUN = f"{SCENARIO_DIR}/Offline/performance/run_1"
SCENARIOS = ("MultiStream", "Offline", "Server", "SingleStream")
INFERENCE_ITEMS = ["integrity", "logs", "required", "loadgen", "checkers"]


@pytest.fixture
def division(submitted, tmp_path: Path) -> Path:
    """The tree's closed division folder, copied out of the tree: a folder benchpipe did not make."""
    source = submitted / "submissions" / "ci" / "benchpipe" / "inference" / "closed"
    assert (source / ORG / "results").is_dir(), f"{source}: the workflow's tree has no inference division folder"
    copy = tmp_path / "closed"
    shutil.copytree(source, copy)
    assert not is_benchpipe_tree(copy) and not (tmp_path / "manifest.json").exists()
    return copy


def _performance_logs(division: Path) -> list[str]:
    logs = division.glob(f"{ORG}/results/**/performance/run_1/{DETAIL_LOG}")
    return sorted(p.relative_to(division).as_posix() for p in logs)


def test_division_folder_fails_only_on_the_official_min_duration_of_its_short_runs(division: Path) -> None:
    report = audit(division)
    assert report.kind == "foreign" and [i.name for i in report.items] == INFERENCE_ITEMS
    for name in ("integrity", "logs", "required"):
        assert _item(report, name).status == "pass", "\n".join(report.lines())
    assert _item(report, "integrity").reasons[0] == NO_MANIFEST
    assert report.root_sha256 is not None
    # Every scenario folder on disk held to the closed division's files: the compliance tests too.
    required = _item(report, "required")
    assert required.checked == len(SCENARIOS)
    assert all("performance, accuracy, TEST01, TEST04" in d for d in required.details)
    # Nothing says the runs were for development: each is judged as an official one, and the
    # tree's one-second runs (and their compliance runs) are too short, and that alone.
    loadgen = _item(report, "loadgen")
    assert loadgen.status == "fail" and not report.passed
    judged, *failures = loadgen.reasons
    assert judged.startswith("judged as official runs (min duration 600 s, division closed)")
    performance = _performance_logs(division)
    assert len(performance) == 3 * len(SCENARIOS)  # the submission run, TEST01 and TEST04
    assert sorted(f.split(": ", 1)[0] for f in failures) == performance
    assert all(": rule 'min_duration': effective_min_duration_ms is " in f
               and f.endswith("an official run needs at least 600000") for f in failures)
    # The rules ran on every detail log, and each performance run's two logs were compared.
    assert loadgen.checked == len(list(division.rglob(DETAIL_LOG))) + len(performance)
    assert _item(report, "checkers").status == "skipped"


def test_invalid_performance_log_fails_naming_the_file_and_the_rule(division: Path) -> None:
    log = division / OFFLINE_RUN / DETAIL_LOG
    text = log.read_text()
    line = next(l for l in text.splitlines() if '"key": "result_validity"' in l)
    log.write_text(text.replace(line, line.replace('"value": "VALID"', '"value": "INVALID"')))

    report = audit(division)
    rel = f"{OFFLINE_RUN}/{DETAIL_LOG}"
    assert not report.passed
    assert _item(report, "logs").reasons == [f"{rel}: result_validity is INVALID"]
    loadgen = _item(report, "loadgen").reasons
    assert any(r.startswith(f"{rel}: rule 'result_validity': INVALID") for r in loadgen)
    # Its summary log still says VALID: the cross-check of the two logs names both.
    assert any(r.startswith(f"{OFFLINE_RUN}/{SUMMARY_LOG}: summary says the result is VALID, {DETAIL_LOG} says "
                            "result_validity INVALID") for r in loadgen)


def test_summary_log_renamed_away_fails_the_required_files_and_the_cross_check(division: Path) -> None:
    summary = division / OFFLINE_RUN / SUMMARY_LOG
    summary.rename(summary.with_name("summary.bak"))

    report = audit(division)
    rel = f"{OFFLINE_RUN}/{SUMMARY_LOG}"
    required = _item(report, "required")
    assert required.status == "fail"
    assert required.reasons == [f"{rel}: missing (required by the {ROUND} layout for Offline performance)"]
    assert any(r.startswith(f"{rel}: missing beside {DETAIL_LOG}") for r in _item(report, "loadgen").reasons)


def test_open_division_needs_no_compliance_tests(division: Path) -> None:
    open_ = division.rename(division.with_name("open"))
    for test in open_.glob(f"{SCENARIO_DIR}/*/TEST0[14]"):
        shutil.rmtree(test)

    required = _item(audit(open_), "required")
    assert required.status == "pass", required.reasons
    assert all(d.endswith("requires for performance, accuracy") for d in required.details)
