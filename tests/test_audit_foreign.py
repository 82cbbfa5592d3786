"""`benchpipe audit` on MLCommons folders that benchpipe did not make: a real published training
organization folder (AMD, training v5.1), read in place, and hostile copies of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchpipe.audit import audit
from benchpipe.audit.foreign import NO_MANIFEST
from benchpipe.cli import main
from benchpipe.contracts.errors import BenchpipeError
from tests.conftest import REPO_ROOT

AMD = REPO_ROOT.parent / "shared" / "data" / "published" / "training_results_v5.1" / "AMD"
SYSTEM = "MI355X_EPYC_9575F_pytorch"
SYSTEM_NAME = "SMCI355X (AS -4126GS-NMR-LCC)"
LORA = f"results/{SYSTEM}/llama2_70b_lora"
LLAMA8B = f"results/{SYSTEM}/llama31_8b"
# What `python -m mlperf_logging.result_summarizer AMD training 5.1.0` scores (SOURCES.md).
PUBLISHED = {"llama2_70b_lora": 10.18474574915825, "llama31_8b": 99.70854353631518}

pytestmark = pytest.mark.skipif(not AMD.is_dir(), reason=f"{AMD}: the published AMD folder is not here")


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
    # The official tools ran on copies: the read-only folder is as published.
    assert sorted(p.name for p in (AMD / LORA).iterdir()) == [f"result_{n}.txt" for n in range(10)] + ["scaling.json"]


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
