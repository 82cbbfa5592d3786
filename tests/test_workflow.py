"""The Snakemake workflow itself: config errors before any job, the DAG, lint, and a full run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from benchpipe.package.manifest import verify_manifest

STAGES = {"datasets", "train", "calibrate", "infer", "parse", "describe_system", "package", "submit"}
SCENARIOS = ("Offline", "SingleStream", "MultiStream", "Server")
MODES = ("performance", "accuracy", "TEST01", "TEST04")  # closed: the compliance tests too


def snakemake(repo_root: Path, workdir: Path, env, *args: str, timeout: int = 900):
    return subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(workdir), *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_dry_run_lists_every_stage(repo_root, tmp_path, cli_env):
    proc = snakemake(repo_root, tmp_path, cli_env, "-n", "submit",
                     "--configfile", str(repo_root / "config" / "config.yaml"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for stage in STAGES:
        assert f"rule {stage}:" in out or f"\n{stage} " in out, stage
    assert re.search(r"^train +5$", out, flags=re.MULTILINE)  # digits' five runs (the column fits the longest rule)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"benchmarks": ["digits"]}, "key 'submission'"),
        ({"submission": {"division": "open"}}, "key 'submission.submitter'"),
        ({"submission": {"submitter": "a"}, "training": {"runs": "many"}}, "key 'training.runs'"),
        ({"submission": {"submitter": "a"}, "benchmarks": ["imagenet-huge"]}, "benchmarks[0]"),
        ({"submission": {"submitter": "a"}, "targets": ["mars"]}, "targets[0]"),
        # llama2_70b_lora: the closed rules, before any job, with the rule quoted.
        ({"submission": {"submitter": "a"}, "benchmarks": ["llama2_70b_lora"], "training": {
            "ruleset": "6.1.0", "hyperparameters": {"llama2_70b_lora": {"model": "stand-in"}}}},
         "model: \"stand-in\" is not the reference's \"llama2-70b\", and the closed division allows only"),
        ({"submission": {"submitter": "a"}, "benchmarks": ["llama2_70b_lora"], "training": {
            "ruleset": "6.1.0", "hyperparameters": {"llama2_70b_lora": {"checkpoint": "/c", "lora_rank": 8}}}},
         "lora_rank: 8 logs lora_rank = 8, which training_6.1.0/closed_llama2_70b_lora.yaml"),
        ({"submission": {"submitter": "a"}, "benchmarks": ["llama2_70b_lora"], "training": {
            "ruleset": "6.1.0", "hyperparameters": {"llama2_70b_lora": {"checkpoint": "/c", "global_batch_size": 4,
                                                                        "micro_batch_size": 1}}}},
         "global_batch_size: 4 has no reference convergence point"),
        ({"submission": {"submitter": "a"}, "benchmarks": ["resnet"], "training": {"ruleset": "6.1.0"}},
         "resnet was retired after training 4.0.0; set training.ruleset: 4.0.0"),
        # An LLM benchmark trains nothing: it needs the checkpoint it serves.
        ({"submission": {"submitter": "a"}, "benchmarks": ["llama31_8b_edge"]},
         "inference.models.llama31_8b_edge: llama31_8b_edge trains nothing and serves your Llama checkpoint"),
    ],
)
def test_invalid_config_fails_before_any_job(repo_root, tmp_path, cli_env, data, expected):
    config = write_config(tmp_path, data)
    proc = snakemake(repo_root, tmp_path, cli_env, "--cores", "1", "submit", "--configfile", str(config))
    assert proc.returncode != 0
    assert expected in proc.stderr + proc.stdout
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_lint_is_clean(repo_root, tmp_path, cli_env):
    proc = snakemake(repo_root, tmp_path, cli_env, "--lint", "--configfile", str(repo_root / "config" / "config.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_end_to_end_on_reduced_config(repo_root, submitted, cli_env):
    config = repo_root / ".test" / "config" / "config.yaml"
    workdir = submitted  # where `snakemake submit` ran (conftest)
    tree = workdir / "submissions" / "ci"

    # Every file accounted for, and the auditor's command agrees.
    assert verify_manifest(tree) > 20
    verify = subprocess.run(["benchpipe", "verify", str(tree)], env=cli_env, capture_output=True, text=True)
    assert verify.returncode == 0 and "match manifest.json" in verify.stdout

    # Training layout: system, 3 results that passed the official checker with our rules, in
    # benchpipe's own section: the official tools read training/ and know only their benchmarks.
    assert not (tree / "training").exists()
    org = tree / "benchpipe" / "training" / "benchpipe-ci"
    system = json.loads((org / "systems" / "local-cpu.json").read_text())
    assert system["status"] == "Research, Development, or Internal (RDI)"
    assert all(isinstance(v, str) for v in system.values()) and "system_type" not in system
    results = sorted(p.name for p in (org / "results" / "local-cpu" / "digits").iterdir())
    assert results == ["result_0.txt", "result_1.txt", "result_2.txt"]
    checks = json.loads((tree / "benchpipe" / "checks.json").read_text())
    checked = {c["log"]: c["passed"] for c in checks["training_compliance"]}
    assert checked == {
        "benchpipe/training/benchpipe-ci/systems/local-cpu.json": True,
        **{f"benchpipe/training/benchpipe-ci/results/local-cpu/digits/result_{i}.txt": True for i in range(3)},
    }
    assert (org / "benchmarks" / "digits" / "implementations" / "benchpipe" / "benchpipe" / "cli.py").is_file()

    # The dataset's manifest (sha256 of every source and shard) travels into the tree, and
    # every training run and LoadGen test names it as the data it read.
    from benchpipe.contracts.hashing import sha256_file

    data_manifest = sha256_file(workdir / "data" / "digits" / "manifest.json")
    assert sha256_file(tree / "benchpipe" / "datasets" / "digits" / "manifest.json") == data_manifest
    assert checks["datasets"]["digits"]["manifest_sha256"] == data_manifest
    provenance = pq.read_table(tree / "benchpipe" / "tables" / "provenance").to_pylist()
    # 3 runs, 16 LoadGen tests, and the Mobile family's 4 (2 precisions x 1 task x 2 modes) on local-litert;
    # the supplied model's 2 read the app's files, not a prepared dataset.
    digits = [r for r in provenance if r["benchmark"] == "digits"]
    assert len(digits) == 3 + 16 + 4 and {r["dataset_manifest_sha256"] for r in digits} == {data_manifest}
    assert sum(r["job"].startswith("mobile/") and r["target"] == "local-litert" for r in digits) == 4
    supplied = [r for r in provenance if r["benchmark"] == "mobilebert_tiny"]
    assert len(provenance) == len(digits) + 2 and {r["dataset_manifest_sha256"] for r in supplied} == {None}
    # ... and the code and the tools that made it.
    from importlib.metadata import version

    head = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert {r["code_commit"] for r in provenance} == {head.stdout.strip()}
    assert {r["code_dirty"] for r in provenance} <= {True, False} and len({r["code_dirty"] for r in provenance}) == 1
    assert {(r["loadgen_version"], r["mlperf_logging_version"], r["benchpipe_version"]) for r in provenance} == {
        (version("mlcommons-loadgen"), version("mlperf-logging"), version("benchpipe"))}

    # Inference layout, in benchpipe's own section (digits is not an MLPerf model), labelled
    # as not valid for an official round; the compliance tests verified beside their logs.
    assert not (tree / "inference").exists()
    inf = tree / "benchpipe" / "inference" / "closed" / "benchpipe-ci"
    assert json.loads((inf / "systems" / "local-cpu.json").read_text())["status"] == "rdi"
    for scenario in SCENARIOS:
        sdir = inf / "results" / "local-cpu" / "digits" / scenario
        for rel in ("performance/run_1/mlperf_log_detail.txt", "performance/run_1/mlperf_log_summary.txt",
                    "accuracy/mlperf_log_detail.txt", "accuracy/accuracy.txt", "accuracy/mlperf_log_accuracy.json",
                    "measurements.json", "user.conf", "README.md",
                    "TEST01/verify_accuracy.txt", "TEST01/verify_performance.txt",
                    "TEST01/performance/run_1/mlperf_log_detail.txt",
                    "TEST04/verify_performance.txt", "TEST04/performance/run_1/mlperf_log_detail.txt"):
            assert (sdir / rel).is_file(), rel
        assert (sdir / "accuracy" / "mlperf_log_accuracy.json").stat().st_size <= 10 * 1024
        assert "Not valid for an official round" in (sdir / "README.md").read_text()
        # TEST01's answers match the accuracy run's; the development run's performance
        # comparisons are reported with their verdict (judged only in official runs).
        assert "TEST PASS" in (sdir / "TEST01" / "verify_accuracy.txt").read_text().splitlines()
        for test in ("TEST01", "TEST04"):
            assert "TEST PASS" in (sdir / test / "verify_performance.txt").read_text() or (
                f"{test} failed, reported but not judged" in (sdir / "README.md").read_text())
    compliance = checks["inference"]["compliance"]
    assert {(c["scenario"], c["test"]) for c in compliance} == {(s, t) for s in SCENARIOS for t in ("TEST01", "TEST04")}
    assert all(c["passed"] or not c["judged"] for c in compliance)
    assert checks["inference"]["official"] is False and checks["inference"]["official_checker"] is None

    # Parquet tables with their explicit schemas, hive-partitioned by round, division and
    # target: pyarrow reads each folder as one table, the partition keys as columns.
    tables = tree / "benchpipe" / "tables"
    assert sorted(p.relative_to(tables).as_posix() for p in tables.rglob("*.parquet")) == sorted(
        f"{t}/round=ci/division=closed/target={target}/part-0.parquet"
        for t, target in (("inference", "local-cpu"), ("mobile", "local-litert"), ("provenance", "local-cpu"),
                          ("provenance", "local-litert"), ("runs", "local-cpu"), ("scores", "local-cpu"),
                          ("training_events", "local-cpu")))
    runs = pq.read_table(tables / "runs").to_pylist()
    assert {(r["round"], r["division"], r["target"]) for r in runs} == {("ci", "closed", "local-cpu")}
    assert [r["run"] for r in runs] == [0, 1, 2]
    assert [r["seed"] for r in runs] == [11, 12, 13]
    assert all(r["status"] == "success" and r["time_to_train_min"] > 0 for r in runs)
    scores = pq.read_table(tables / "scores").to_pylist()
    assert len(scores) == 1 and scores[0]["olympic_mean_min"] > 0
    inference = pq.read_table(tables / "inference").to_pylist()
    assert {(r["scenario"], r["mode"]) for r in inference} == {(s, m) for s in SCENARIOS for m in MODES}
    assert all(r["result_validity"] == "VALID" for r in inference if r["mode"] != "accuracy")
    assert not any(r["official_round_valid"] for r in inference)
    events = pq.read_table(tables / "training_events")
    assert events.schema.field("time_ms").type == "int64" and events.num_rows > 3 * 30

    receipt = (workdir / "submissions" / "ci.verified").read_text()
    assert f"{verify_manifest(tree)} files match manifest.json" in receipt

    # A second run has nothing to do.
    again = snakemake(repo_root, workdir, cli_env, "-n", "submit", "--configfile", str(config))
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    # Packaging refuses what it cannot verify, and leaves the verified tree untouched.
    shutil.copy(workdir / "runs" / "local-cpu" / "digits" / "train" / "run_0" / "mllog.txt", workdir / "keep.txt")
    with open(workdir / "runs" / "local-cpu" / "digits" / "train" / "run_0" / "mllog.txt", "a") as f:
        f.write("tampered\n")
    settings = (tree / "benchpipe" / "config.json").read_text()

    def package(tables: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["benchpipe", "package", "--settings", settings, "--runs", str(workdir / "runs"),
             "--tables", str(workdir / tables), "--datasets", str(workdir / "data"), "--out", str(tree)],
            env=cli_env, capture_output=True, text=True,
        )

    bad = package("tables")
    assert bad.returncode == 1
    assert "mllog.txt: sha256" in bad.stderr and "re-run the parse stage" in bad.stderr
    assert verify_manifest(tree) > 20

    # A log that parses but breaks the rules: the official checker stops the packaging.
    log = workdir / "runs" / "local-cpu" / "digits" / "train" / "run_0" / "mllog.txt"
    log.write_text("".join(l for l in (workdir / "keep.txt").read_text().splitlines(True) if '"key": "cache_clear"' not in l))
    runs = workdir / "runs" / "local-cpu" / "digits"
    reparse = subprocess.run(
        ["benchpipe", "parse", "--runs", str(workdir / "runs"), "--out", str(workdir / "tables2"),
         "--train-runs", *[str(runs / "train" / f"run_{i}") for i in range(3)],
         "--tests", *[str(p) for p in sorted((runs / "infer").glob("*/*"))]],
        env=cli_env, capture_output=True, text=True,
    )
    assert reparse.returncode == 0, reparse.stderr
    bad = package("tables2")
    assert bad.returncode == 1
    assert "1 training file(s) fail the official checkers" in bad.stderr and "'cache_clear'" in bad.stderr
    assert verify_manifest(tree) > 20
    assert not list(tree.parent.glob(".ci.partial-*"))

    # The same failure through Snakemake, which deletes a job's outputs before re-running
    # it: the verified tree survives, only the receipt goes.
    forced = snakemake(repo_root, workdir, cli_env, "--cores", "1", "--forcerun", "parse", "submit",
                       "--configfile", str(config))
    assert forced.returncode != 0
    assert "fail the official checkers" in (workdir / "logs" / "package.log").read_text()
    assert verify_manifest(tree) > 20
    assert not (workdir / "submissions" / "ci.verified").exists()


def test_missing_benchpipe_command_is_reported_before_any_job(repo_root, tmp_path, cli_env):
    env = dict(cli_env, PATH="/usr/bin:/bin")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(repo_root / "Snakefile"),
         "--directory", str(tmp_path), "--cores", "1", "submit",
         "--configfile", str(repo_root / "config" / "config.yaml")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "`benchpipe` command is not on PATH" in proc.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "target, env_extra, expected",
    [
        ("docker-cpu", {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "the Docker engine is not reachable"),
        ("apptainer-cuda", {}, "apptainer is not installed"),
    ],
)
def test_missing_engine_stops_the_workflow_before_any_job(repo_root, tmp_path, cli_env, target, env_extra, expected):
    config = write_config(tmp_path, {"submission": {"submitter": "a"}, "targets": [target]})
    proc = snakemake(repo_root, tmp_path, dict(cli_env, **env_extra), "--cores", "1", "submit",
                     "--configfile", str(config))
    assert proc.returncode != 0
    assert f"target {target} (runtime " in proc.stderr and expected in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_official_runs_and_supplied_models_reach_the_calibration(repo_root, tmp_path, cli_env):
    model = tmp_path / "supplied"
    model.mkdir()
    config = write_config(tmp_path, {
        "submission": {"submitter": "acme", "division": "open"},
        "inference": {"official": True, "scenarios": ["Server"],
                      "models": {"digits": {"savedmodel": str(model), "sha256": "ab" * 32}}},
    })
    proc = snakemake(repo_root, tmp_path, cli_env, "-n", "-p", "submit", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    calibrate = [l for l in out.splitlines() if "benchpipe calibrate" in l]
    assert calibrate and all("--official" in l and f"--model {model} --model-sha256 {'ab' * 32}" in l for l in calibrate)
    assert "--train-runs" not in " ".join(calibrate)
    assert "TEST01" not in out  # the open division has no compliance tests


def test_supplied_model_for_an_untested_benchmark_is_refused(repo_root, tmp_path, cli_env):
    config = write_config(tmp_path, {
        "submission": {"submitter": "acme"},
        "inference": {"benchmarks": [], "models": {"digits": {"savedmodel": "m", "sha256": "ab" * 32}}},
    })
    proc = snakemake(repo_root, tmp_path, cli_env, "-n", "submit", "--configfile", str(config))
    assert proc.returncode != 0
    assert "inference.models.digits: digits is not a benchmark that LoadGen tests" in proc.stdout + proc.stderr


def test_llm_suite_dry_run_trains_nothing_and_runs_each_models_scenarios(repo_root, tmp_path, cli_env):
    """The tiny LLM suite on a system of both categories, with the files its header names: data
    sources, a checkpoint and a checker; closed here, so that llama3.1-8b's TEST06 runs too."""
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (checkpoint / name).write_text(name)
    checker = tmp_path / "inference" / "tools" / "submission" / "submission_checker"
    checker.mkdir(parents=True)
    (checker / "main.py").write_text("")
    sha = "ab" * 32
    sources = {name: {"urls": [f"file:///stand-in/{name}"], "sha256": sha}
               for name in ("cnn_eval.json", "tokenizer.json")}
    llms = ("llama31_8b", "llama31_8b_edge")
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({
        "submission": {"division": "closed"},
        "datasets": {"sources": {b: sources for b in llms}},
        "inference": {"checker": str(tmp_path / "inference"),
                      "models": {b: {"checkpoint": str(checkpoint), "sha256": sha} for b in llms}},
    }))
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = snakemake(repo_root, workdir, cli_env, "-n", "-p", "submit", "--configfile",
                     str(repo_root / ".test" / "config" / "llama31_8b.yaml"), str(extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    jobs = {}
    for rule, job in re.findall(r"^rule (\w+):\n(?:    .*\n)*?    output: (\S+)", out, flags=re.MULTILINE):
        jobs.setdefault(rule, set()).add(job)
    runs = "runs/local-cpu-dc-edge"
    expected_tests = {
        *(f"{runs}/llama31_8b/infer/{s}/{m}" for s in ("Offline", "Server", "Interactive")
          for m in ("performance", "accuracy", "TEST06")),
        *(f"{runs}/llama31_8b_edge/infer/{s}/{m}" for s in ("SingleStream", "Offline")
          for m in ("performance", "accuracy")),
    }
    assert jobs.pop("infer") == expected_tests
    assert jobs.pop("calibrate") == {f"{runs}/llama31_8b/calibrate/{s}" for s in ("Offline", "Server", "Interactive")} \
        | {f"{runs}/llama31_8b_edge/calibrate/{s}" for s in ("SingleStream", "Offline")}
    assert jobs.pop("datasets") == {"data/llama31_8b", "data/llama31_8b_edge"}
    assert "train" not in jobs and "benchpipe train" not in out
    # The calibration serves the checkpoint: its folder and digest on the command line, its files as inputs.
    calibrate = [line for line in out.splitlines() if "benchpipe calibrate" in line]
    assert len(calibrate) == 5
    assert all(f"--model {checkpoint} --model-sha256 {sha}" in line and f"--input {checkpoint}/config.json" in line
               and "--train-runs" not in line for line in calibrate)
    parse = next(line for line in out.splitlines() if "benchpipe parse" in line)
    assert "--train-runs  --tests" in parse and all(test in parse for test in expected_tests)


def test_the_real_llm_config_runs_official_tests_of_the_given_checkpoint(repo_root, tmp_path, cli_env):
    """config/llama31_8b.yaml with what its header asks for (sha256s, the checkpoint entries, a
    checker) on a system of both categories: official runs of the checkpoint, TEST06 in closed."""
    checkpoint = tmp_path / "Llama-3.1-8B-Instruct"
    checkpoint.mkdir()
    for name in ("config.json", "model-00001-of-00004.safetensors", "generation_config.json"):
        (checkpoint / name).write_text(name)
    checker = tmp_path / "inference" / "tools" / "submission" / "submission_checker"
    checker.mkdir(parents=True)
    (checker / "main.py").write_text("")
    real = yaml.safe_load((repo_root / "config" / "llama31_8b.yaml").read_text())
    sha = "cd" * 32
    llms = real["benchmarks"]
    sources = {b: {name: {**entry, "sha256": sha} for name, entry in real["datasets"]["sources"][b].items()}
               for b in llms}
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({
        "targets": ["local-cpu-dc-edge"], "targets_dir": str(repo_root / ".test" / "config" / "targets"),
        "datasets": {"sources": sources},
        "inference": {"checker": str(tmp_path / "inference"),
                      "models": {b: {"checkpoint": str(checkpoint), "sha256": sha} for b in llms}},
    }))
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = snakemake(repo_root, workdir, cli_env, "-n", "-p", "submit", "--configfile",
                     str(repo_root / "config" / "llama31_8b.yaml"), str(extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    calibrate = [line for line in out.splitlines() if "benchpipe calibrate" in line]
    assert sorted(re.search(r"--benchmark (\w+) .*--scenario (\w+)", line).groups() for line in calibrate) == sorted(
        [("llama31_8b", s) for s in ("Offline", "Server", "Interactive")]
        + [("llama31_8b_edge", s) for s in ("SingleStream", "Offline")])
    assert all(f"--model {checkpoint} --model-sha256 {sha}" in line and "--official" in line
               and "--min-duration-ms" not in line for line in calibrate)
    tests = re.findall(r"benchpipe infer --benchmark (\w+) .*--scenario (\w+) --mode (\w+)", out)
    assert sorted(t for t in tests if t[2] == "TEST06") == sorted(
        ("llama31_8b", s, "TEST06") for s in ("Offline", "Server", "Interactive"))
    assert "benchpipe train" not in out


def test_the_real_llm_config_without_its_checkpoint_entries_stops_naming_them(repo_root, tmp_path, cli_env):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({
        "targets": ["local-cpu-dc-edge"], "targets_dir": str(repo_root / ".test" / "config" / "targets")}))
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = snakemake(repo_root, workdir, cli_env, "-n", "submit", "--configfile",
                     str(repo_root / "config" / "llama31_8b.yaml"), str(extra))
    assert proc.returncode != 0
    assert "inference.models.llama31_8b" in proc.stdout + proc.stderr
