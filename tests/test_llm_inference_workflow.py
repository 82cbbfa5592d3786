"""The tiny llama31_8b suite through the whole workflow, and its tree through MLCommons' inference checker.

`snakemake submit` on .test/config/llama31_8b.yaml with the stand-in CNN/DailyMail and the stand-in
Llama (llama3.1-8b: Offline, Server, Interactive; llama3.1-8b-edge: SingleStream, Offline, on a
system of both categories, open division), then: the token figures of inference.parquet, the
official checker's verdict under the development rule, `benchpipe verify` and `benchpipe audit`,
and a Server result whose TPOT p99 was raised above the round's limit, which the packager refuses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import made_once

from benchpipe.contracts.errors import ValidationError
from benchpipe.mlcommons.inference_checker import VERDICT_DEVELOPMENT, run_inference_checker
from benchpipe.results.tables import read_partitioned

# timing: the suite's Server and Interactive runs are held to TTFT and TPOT limits, which a
# neighbour test's load can break: the serial pass runs it (Makefile's ALONE).
pytestmark = [pytest.mark.slow, pytest.mark.llm, pytest.mark.timing]

ORG, ROUND, TARGET = "benchpipe-ci", "ci-llm", "local-cpu-dc-edge"
SCENARIOS = {"llama3.1-8b": ("Interactive", "Offline", "Server"), "llama3.1-8b-edge": ("Offline", "SingleStream")}
# The checker's RESULT_FIELD_BENCHMARK_OVERWRITE (v6.1) for both models; Interactive is a Server log.
METRIC = {"Offline": "result_tokens_per_second", "Server": "result_completed_tokens_per_second",
          "Interactive": "result_completed_tokens_per_second", "SingleStream": "result_90.00_percentile_latency_ns"}
TPOT_KEY = "result_time_per_output_token_99.00_percentile_ns"


def _snakemake(repo_root: Path, wd: Path, configs: list[Path], env: dict[str, str], *extra: str
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(wd), "--cores", "2", "submit",
         *extra, "--configfile", str(repo_root / ".test" / "config" / "llama31_8b.yaml"), *map(str, configs)],
        env=env, capture_output=True, text=True, timeout=1500,
    )


def _configs(work: Path) -> list[Path]:
    return [work / name for name in ("data.yaml", "model.yaml", "checker.yaml")]


def _run_suite(repo_root: Path, work: Path, env: dict[str, str], checkout: Path) -> None:
    def cli(*args: str) -> str:
        proc = subprocess.run(["benchpipe", *args], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    data, model, checker = _configs(work)
    data.write_text(cli("datasets", "stand-in-cnndm", "--out", str(work / "raw")) + f"  cache_dir: {work / 'cache'}\n")
    model.write_text(cli("stand-in-llama", "--data", str(work / "raw"), "--out", str(work / "model")))
    checker.write_text(f"inference:\n  checker: {checkout}\n")
    proc = _snakemake(repo_root, work / "wd", _configs(work), env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope="module")
def llm_work(repo_root, tmp_path_factory, cli_env, inference_checkout) -> Path:
    """The folder of one run of the tiny suite (configs, stand-ins, wd/), made once whatever the
    number of xdist workers; each worker's tests get their own copy."""
    pristine = made_once(tmp_path_factory, "llm-inference-workflow",
                         lambda out: _run_suite(repo_root, out, cli_env, inference_checkout))
    work = tmp_path_factory.mktemp("llm-inference-workflow")
    shutil.copytree(pristine, work, symlinks=True, dirs_exist_ok=True)
    # The configs name the pristine folder's data and model, which stay where they are.
    return work


def _tree(work: Path) -> Path:
    return work / "wd" / "submissions" / ROUND


def test_inference_parquet_holds_token_figures_for_each_llm_scenario(llm_work):
    rows = read_partitioned(_tree(llm_work) / "benchpipe" / "tables" / "inference").to_pylist()
    perf = {(r["benchmark"], r["scenario"]): r for r in rows if r["mode"] == "performance"}
    assert sorted(perf) == sorted([("llama31_8b", s) for s in SCENARIOS["llama3.1-8b"]]
                                  + [("llama31_8b_edge", s) for s in SCENARIOS["llama3.1-8b-edge"]])
    for (benchmark, scenario), row in perf.items():
        where = f"{benchmark} {scenario}"
        assert row["result_validity"] == "VALID", where
        assert row["result_key"] == METRIC[scenario], where
        assert row["tokens_per_second"] > 0 and row["result_samples_per_s"] is None, where
        if scenario == "SingleStream":
            assert row["result_latency_ns"] > 0 and row["result_tokens_per_s"] is None, where
        else:
            assert row["result_tokens_per_s"] > 0, where
        timed = scenario != "Offline"  # Offline's one query times no token
        assert (row["ttft_p99_ns"] is not None, row["tpot_p99_ns"] is not None) == (timed, timed), where
    # The round's limits, which packaging held them to: Interactive's are the tighter.
    assert perf[("llama31_8b", "Server")]["tpot_p99_ns"] < 100_000_000
    assert perf[("llama31_8b", "Interactive")]["tpot_p99_ns"] < 30_000_000
    assert perf[("llama31_8b", "Interactive")]["ttft_p99_ns"] < 500_000_000
    accuracy = [r for r in rows if r["mode"] == "accuracy"]
    assert len(accuracy) == 5 and all(0 <= r["accuracy"] <= 1 and r["accuracy_target"] for r in accuracy)


def test_the_tree_lays_out_both_models_as_the_checker_reads_them(llm_work):
    results = _tree(llm_work) / "inference" / "open" / ORG / "results" / TARGET
    for model, scenarios in SCENARIOS.items():
        assert sorted(p.name for p in (results / model).iterdir()) == sorted(scenarios)
        for scenario in scenarios:
            folder = results / model / scenario
            assert "use_token_latencies = 1" in (folder / "user.conf").read_text()
            assert (folder / "accuracy" / "mlperf_log_accuracy.json").stat().st_size <= 10 * 1024
            assert re.search(r"^hash=[0-9a-f]{64}$", (folder / "accuracy" / "accuracy.txt").read_text(), re.M)


def test_the_official_checker_passes_it_under_the_development_rule_only(llm_work, inference_checkout, tmp_path):
    import json

    tree = _tree(llm_work)
    recorded = json.loads((tree / "benchpipe" / "checks.json").read_text())["inference"]["official_checker"]
    assert recorded["verdict"] == VERDICT_DEVELOPMENT
    assert recorded["results"] == {"accepted": 0, "rejected": 5}
    allowed = {re.sub(r"^\[\S+ ERROR\] \S+ ", "", line).split(".")[0].split(",")[0]
               for line in recorded["errors_allowed"]}
    assert allowed == {"Test duration less than 600s in user config", "performance_sample_count"}
    # Run again on a copy: the development rule passes it, the official one does not.
    copy = tmp_path / "tree"
    shutil.copytree(tree / "inference", copy / "inference")
    verdict = run_inference_checker(inference_checkout, copy / "inference", submitter=ORG, development=True,
                                    subset_accuracy=True, keep_dir=copy / "reports")
    assert verdict["verdict"] == VERDICT_DEVELOPMENT
    with pytest.raises(ValidationError, match="official"):
        run_inference_checker(inference_checkout, copy / "inference", submitter=ORG, development=False,
                              subset_accuracy=False, keep_dir=copy / "reports")


def test_the_tree_verifies_and_the_audit_derives_the_token_columns_again(llm_work, cli_env, inference_checkout):
    tree = _tree(llm_work)
    for command in (["verify", str(tree)], ["audit", str(tree), "--inference-checker", str(inference_checkout)]):
        proc = subprocess.run([sys.executable, "-m", "benchpipe.cli", *command], env=cli_env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASS    tables" in proc.stdout and "audit PASSED" in proc.stdout


def test_reproduce_reruns_an_llm_accuracy_test_with_the_same_summaries(llm_work, cli_env, tmp_path):
    """`benchpipe reproduce` on the LLM tree, as an auditor runs it with the checkpoint the tree
    recorded: the dataset prepared again from the config's sources, the accuracy test rerun
    through `benchpipe infer`, the same ROUGE (greedy decoding). (This open-division tree has no
    TEST06; tests/test_reproduce.py compares TEST06 runs.) Before the TPOT test below, which
    removes the tree."""
    import json

    tree, report = _tree(llm_work), tmp_path / "reproduce.json"
    selection = f"{TARGET}/llama31_8b_edge/Offline/accuracy"
    proc = subprocess.run(
        [sys.executable, "-m", "benchpipe.cli", "reproduce", str(tree), "--select", selection,
         "--model", str(llm_work / "model"), "--work", str(tmp_path / "work"), "--report", str(report)],
        env=cli_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = json.loads(report.read_text())["runs"]
    assert run["run"] == selection and run["status"] == "match", run
    assert run["checks"][0].startswith("model sha256 ") and run["checks"][1].startswith("accuracy identical: ")
    assert json.loads(report.read_text())["datasets"][0]["source"] == "prepared again"


def test_a_server_result_with_tpot_above_the_limit_is_refused_naming_it(llm_work, cli_env, repo_root):
    """The Server run's logs say a TPOT p99 of 150 ms (both logs alike, VALID as before), parsed
    again: packaging refuses it with the round's 100 ms limit and the measured p99."""
    perf = llm_work / "wd" / "runs" / TARGET / "llama31_8b" / "infer" / "Server" / "performance"
    detail, summary = perf / "mlperf_log_detail.txt", perf / "mlperf_log_summary.txt"
    pattern = re.compile(rf'("key": "{re.escape(TPOT_KEY)}", "value": )\d+')
    assert pattern.search(detail.read_text())
    detail.write_text(pattern.sub(r"\g<1>150000000", detail.read_text()))
    summary.write_text(re.sub(r"^(99\.00 percentile time to output token \(ns\)\s*:\s*)\d+", r"\g<1>150000000",
                              summary.read_text(), flags=re.M))
    shutil.rmtree(_tree(llm_work))
    _tree(llm_work).with_name(f"{ROUND}.verified").unlink()
    proc = _snakemake(repo_root, llm_work / "wd", _configs(llm_work), cli_env, "--forcerun", "parse")
    assert proc.returncode != 0
    log = (llm_work / "wd" / "logs" / "package.log").read_text()
    assert "rule 'tpot_limit': TPOT p99 150.0 ms" in log, log[-3000:]
    assert "exceeds llama3.1-8b Server's 100 ms limit" in log
    assert not _tree(llm_work).exists()

