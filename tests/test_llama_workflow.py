"""The tiny llama2_70b_lora suite through the whole workflow, and its tree through MLCommons' 6.1.0 tools.

`snakemake submit` on .test/config/llama2_70b_lora.yaml (10 runs of the stand-in on a generated
corpus), then, on copies of the tree's training/<org>/ (the tools write into what they check):
the package checker's verdict, the result summarizer's llama2_70b_lora cell against the tree's
own score, the compliance checker on each log under the open rules and the closed ones, and
the auditor's commands on the tree.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import made_once

from benchpipe.mlcommons import training
from benchpipe.mlcommons.checkers import run_compliance_checker
from benchpipe.mlcommons.rules import training_rules_file

pytestmark = [pytest.mark.slow, pytest.mark.llm]

ORG, ROUND, RULESET = "benchpipe-ci", "ci-llama", "6.1.0"


def _run_llama_suite(repo_root: Path, work: Path, cli_env: dict[str, str]) -> None:
    sources = work / "sources.yaml"
    corpus = subprocess.run(["benchpipe", "datasets", "stand-in-corpus", "--out", str(work / "corpus")],
                            env=cli_env, capture_output=True, text=True, timeout=120)
    assert corpus.returncode == 0, corpus.stderr[-3000:]
    sources.write_text(corpus.stdout + f"  cache_dir: {work / 'cache'}\n")
    proc = subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(work / "wd"), "--cores", "2", "submit",
         "--configfile", str(repo_root / ".test" / "config" / "llama2_70b_lora.yaml"), str(sources)],
        env=cli_env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope="module")
def llama_tree(repo_root, tmp_path_factory, cli_env) -> Path:
    """The working directory of one `snakemake submit` of the tiny llama suite, run once whatever
    the number of xdist workers; each worker's tests get their own copy (audit, report and
    reproduce write beside the tree)."""
    pristine = made_once(tmp_path_factory, "llama-workflow", lambda out: _run_llama_suite(repo_root, out, cli_env))
    work = tmp_path_factory.mktemp("llama-workflow")
    shutil.copytree(pristine, work, symlinks=True, dirs_exist_ok=True)
    return work / "wd"


def _org_copy(tree: Path, tmp_path: Path) -> Path:
    copy = tmp_path / ORG
    shutil.copytree(tree / "training" / ORG, copy)
    return copy


def test_the_tree_has_ten_runs_in_the_official_layout(llama_tree):
    results = llama_tree / "submissions" / ROUND / "training" / ORG / "results" / "local-cpu" / "llama2_70b_lora"
    assert sorted(p.name for p in results.glob("result_*.txt")) == sorted(f"result_{i}.txt" for i in range(10))
    assert (llama_tree / "submissions" / ROUND / "training" / ORG / "systems" / "local-cpu.json").is_file()
    assert not (llama_tree / "submissions" / ROUND / "inference").exists()


def test_the_package_checker_finds_no_errors(llama_tree, tmp_path):
    org = _org_copy(llama_tree / "submissions" / ROUND, tmp_path)
    verdict = training.run_package_checker(org, tmp_path / "package_checker.log", RULESET)
    assert verdict.passed, verdict.problems()
    assert training.PACKAGE_VERDICT_OK in (tmp_path / "package_checker.log").read_text()


def test_the_summarizer_scores_the_suite_as_the_tree_does(llama_tree, tmp_path):
    tree = llama_tree / "submissions" / ROUND
    org = _org_copy(tree, tmp_path)
    verdict = training.run_result_summarizer(org, tmp_path / "summary.csv", tmp_path / "summarizer.log", RULESET,
                                             benchmark="llama2_70b_lora")
    assert verdict.passed, verdict.problems()
    with (tmp_path / "summary.csv").open(newline="") as f:
        cell = next(csv.DictReader(f))["llama2_70b_lora"]
    scores = pq.read_table(tree / "benchpipe" / "tables" / "scores").to_pylist()
    assert len(scores) == 1
    assert float(cell) == scores[0]["score_min"] > 0


@pytest.mark.parametrize("division", ["open", "closed"])
def test_every_log_passes_the_compliance_checker(llama_tree, tmp_path, division):
    """The open rules entirely; the closed ones too, since the stand-in reaches the loss target:
    only the model, which no log shows, keeps these runs out of the closed division."""
    results = llama_tree / "submissions" / ROUND / "training" / ORG / "results" / "local-cpu" / "llama2_70b_lora"
    for log in sorted(results.glob("result_*.txt")):
        copy = tmp_path / log.name
        copy.write_text(log.read_text().replace('"submission_division", "value": "open"',
                                                f'"submission_division", "value": "{division}"'))
        result = run_compliance_checker(copy, training_rules_file("common.yaml", RULESET), tmp_path / "out.log",
                                        ruleset=RULESET)
        assert result.passed, f"{log.name}: {result.problems()}"


def test_the_tree_verifies_and_the_audit_derives_its_score_again(llama_tree, cli_env):
    tree = llama_tree / "submissions" / ROUND
    for command in (["verify", str(tree)], ["audit", str(tree)]):
        proc = subprocess.run([sys.executable, "-m", "benchpipe.cli", *command], env=cli_env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASS    scores" in proc.stdout and "audit PASSED" in proc.stdout


def test_the_report_says_the_model_is_a_stand_in(llama_tree, cli_env):
    tree = llama_tree / "submissions" / ROUND
    proc = subprocess.run([sys.executable, "-m", "benchpipe.cli", "report", str(tree)], env=cli_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = tree.with_name(f"{ROUND}.report.html").read_text()
    assert "llama2_70b_lora trained a stand-in of its reference model" in page


@pytest.mark.parametrize("loss", [0.95, 1.5])
def test_an_open_run_short_of_the_target_is_scored_as_the_summarizer_scores_it(llama_tree, tmp_path, loss):
    """A run that stops short of 0.925 still counts in the open division when its log passes the
    open rules (a loss below 1.0), and is dropped when it does not: the tree's score follows."""
    import json

    from benchpipe.results.tables import score_rows, summarizer_counted, training_log_rows

    org = _org_copy(llama_tree / "submissions" / ROUND, tmp_path)
    results = org / "results" / "local-cpu" / "llama2_70b_lora"
    short = results / "result_3.txt"
    records = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in short.read_text().splitlines()]
    for record in records:
        if record["key"] == "eval_accuracy":
            record["value"] = loss
        if record["key"] == "run_stop":
            record["metadata"]["status"] = "aborted"
    short.write_text("".join(f":::MLLOG {json.dumps(r)}\n" for r in records))
    verdict = training.run_result_summarizer(org, tmp_path / "summary.csv", tmp_path / "summarizer.log", RULESET,
                                             benchmark="llama2_70b_lora")
    assert verdict.passed, verdict.problems()
    logs = {("local-cpu", "llama2_70b_lora", i): results / f"result_{i}.txt" for i in range(10)}
    runs = [training_log_rows("local-cpu", "llama2_70b_lora", i, path, RULESET)[1] for (_, _, i), path in logs.items()]
    counted = summarizer_counted(runs, logs)
    assert counted[("local-cpu", "llama2_70b_lora", 3)] is (loss < 1.0)
    [score] = score_rows(runs, {}, counted)
    assert score["successful_runs"] == 9 and score["score_min"] == verdict.scores["local-cpu"]


def test_a_run_of_the_tree_reproduces_from_the_configured_sources(llama_tree, repo_root, cli_env):
    """The data come from the config's datasets.sources, as llama2_70b_lora's always do: the rerun
    prepares them from there and trains to the same eval losses."""
    tree = llama_tree / "submissions" / ROUND
    proc = subprocess.run(
        [sys.executable, "-m", "benchpipe.cli", "reproduce", str(tree), "--select", "local-cpu/llama2_70b_lora/run_3",
         "--target-file", str(repo_root / "config" / "targets" / "local-cpu.yaml"), "--threads", "2"],
        env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MATCH: local-cpu/llama2_70b_lora/run_3" in proc.stdout + proc.stderr
    assert "eval accuracy identical" in proc.stdout + proc.stderr
