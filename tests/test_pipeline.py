"""What the workflow asks of the package (benchpipe.pipeline): the config checked before any
job, each rule's command-line options, per-target resources, and the Snakemake hook."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from benchpipe.contracts.errors import ConfigError, DatasetError, RuntimeSetupError
from benchpipe.contracts.schemas import validate
from benchpipe.pipeline import options
from benchpipe.pipeline.checks import check_workflow
from benchpipe.pipeline.resources import job_resources, job_threads, slurm_requests
from benchpipe.pipeline.snakemake_hooks import sign_rule_functions


def config(**sections) -> dict:
    """A config as the Snakefile holds it: the schema's defaults filled in."""
    data = {"submission": {"submitter": "acme"}, **sections}
    validate(data, "config.schema.json", what="config", fill_defaults=True)
    return data


@pytest.fixture
def workdir(tmp_path, monkeypatch, cli_env) -> Path:
    """An empty working directory with `benchpipe` on PATH, as a workflow run has."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", cli_env["PATH"])
    return tmp_path


def test_a_checked_config_gives_the_rules_what_they_read(workdir, repo_root):
    workflow = check_workflow(config(), repo_root, main_process=True, dry_run=False)
    assert list(workflow.targets) == ["local-cpu"] and workflow.targets["local-cpu"].runtime == "local"
    assert workflow.infer_benchmarks == ["digits"]
    assert workflow.modes == ["performance", "accuracy", "TEST01", "TEST04"]  # closed by default
    assert [s.name for s in workflow.sources["digits"]] == ["digits.csv.gz"]
    # The process that drives the run holds the lock: another run in this directory is refused
    # (a lock is per process, so the other run is another process).
    assert workflow.lock is not None
    probe = ("import sys; from pathlib import Path; from benchpipe.pipeline.lock import hold_workflow_lock; "
             "hold_workflow_lock(Path('.snakemake'))")
    refused = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=workdir)
    assert refused.returncode != 0 and "WorkflowRunning: " in refused.stderr and "already running" in refused.stderr
    workflow.lock.close()
    # A cluster job's process and a dry run take no lock.
    assert check_workflow(config(), repo_root, main_process=False).lock is None
    assert check_workflow(config(), repo_root, main_process=True, dry_run=True).lock is None


def test_a_benchmark_outside_the_training_ruleset_is_refused(workdir, repo_root):
    # Refused before its data is looked at: resnet under 6.1.0 has no ImageNet copy configured either.
    with pytest.raises(ConfigError) as err:
        check_workflow(config(benchmarks=["resnet"], training={"ruleset": "6.1.0"}), repo_root,
                       main_process=True, dry_run=True)
    assert str(err.value) == "benchmarks: resnet was retired after training 4.0.0; set training.ruleset: 4.0.0"


def test_benchpipes_own_benchmarks_go_with_any_ruleset(workdir, repo_root):
    for ruleset in ("4.0.0", "6.1.0"):
        workflow = check_workflow(config(benchmarks=["digits", "mnist"], training={"ruleset": ruleset}),
                                  repo_root, main_process=True, dry_run=True)
        assert sorted(workflow.sources) == ["digits", "mnist"]


def test_open_division_runs_no_compliance_tests(workdir, repo_root):
    workflow = check_workflow(config(submission={"submitter": "acme", "division": "open"}), repo_root,
                              main_process=False)
    assert workflow.modes == ["performance", "accuracy"]


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"benchmarks": ["nope"]}, "config key 'benchmarks[0]': unknown benchmark 'nope'"),
        ({"targets": ["moon"]}, "config key 'targets[0]': unknown target 'moon'"),
        ({"training": {"hyperparameters": {"mnist": {}}}}, "training.hyperparameters: mnist is not in benchmarks"),
        ({"training": {"hyperparameters": {"digits": {"momentum": 0.5}}}},
         "training.hyperparameters.digits.momentum"),
        ({"inference": {"benchmarks": ["mnist"]}}, "inference.benchmarks: mnist is not in benchmarks"),
        ({"datasets": {"sources": {"mnist": {}}}}, "datasets.sources: 'mnist' is not among the benchmarks digits"),
        ({"benchmarks": ["resnet"]}, "benchmarks: resnet trains on data/imagenet, which is never downloaded"),
    ],
)
def test_a_bad_config_is_refused_naming_its_key(workdir, repo_root, sections, message):
    with pytest.raises(ConfigError) as err:
        check_workflow(config(**sections), repo_root, main_process=True, dry_run=True)
    assert message in str(err.value)


def test_an_mlperf_model_needs_the_inference_checker(workdir, repo_root):
    (workdir / "data" / "imagenet").mkdir(parents=True)
    (workdir / "data" / "imagenet" / "manifest.json").write_text("{}")
    settings = config(benchmarks=["resnet"], submission={"submitter": "acme", "division": "open"})
    with pytest.raises(ConfigError, match="inference.checker: resnet goes into MLPerf's inference tree"):
        check_workflow(settings, repo_root, main_process=True, dry_run=True)
    settings["inference"]["checker"] = str(workdir / "no-checkout")
    with pytest.raises(ConfigError, match="no-checkout"):
        check_workflow(settings, repo_root, main_process=True, dry_run=True)


def test_an_offline_run_needs_every_source_in_the_cache(workdir, repo_root):
    settings = config(datasets={"offline": True, "cache_dir": str(workdir / "cache")})
    with pytest.raises(DatasetError, match="digits.csv.gz"):
        check_workflow(settings, repo_root, main_process=False)
    # A dataset already prepared needs nothing from the cache.
    (workdir / "data" / "digits").mkdir(parents=True)
    (workdir / "data" / "digits" / "manifest.json").write_text("{}")
    assert "digits" in check_workflow(settings, repo_root, main_process=False).sources


def test_without_the_command_line_on_path_nothing_runs(workdir, repo_root, monkeypatch):
    monkeypatch.setenv("PATH", str(workdir))
    with pytest.raises(RuntimeSetupError, match="`benchpipe` command is not on PATH"):
        check_workflow(config(), repo_root, main_process=False)


def test_options_quote_what_the_config_says():
    settings = config(
        training={"hyperparameters": {"digits": {"momentum": 0.8}}},
        datasets={"cache_dir": "/c d", "offline": True,
                  "sources": {"digits": {"digits.csv.gz": {"urls": ["file:///x y"]}}}},
        inference={"min_duration_ms": 1500, "accuracy_samples": 100, "checker": "/inf"},
    )
    assert shlex.split(options.hyperparameters(settings, "digits")) == ["--hyperparameters-json", '{"momentum": 0.8}']
    assert options.hyperparameters(settings, "mnist") == ""
    assert shlex.split(options.datasets(settings, "digits")) == [
        "--cache-dir", "/c d", "--offline", "--sources-json", '{"digits.csv.gz": {"urls": ["file:///x y"]}}']
    assert shlex.split(options.run_kind(settings)) == ["--min-duration-ms", "1500", "--accuracy-samples", "100"]
    assert options.audit(settings) == "--inference-checker /inf"
    assert shlex.split(options.served_model(settings, "digits", ["runs/a b/run_0"])) == ["--train-runs", "runs/a b/run_0"]
    settings["inference"]["models"] = {"digits": {"savedmodel": "/m", "sha256": "ab"}}
    assert options.served_model(settings, "digits", []) == "--model /m --model-sha256 ab"
    settings["inference"]["official"] = True
    assert options.run_kind(settings) == "--official"


def test_imagenet_options_carry_the_subset():
    settings = config(datasets={"imagenet": {"train_dir": "/t", "val_dir": "/v", "val_map": "/m", "synsets": 10,
                                             "subset": {"train_per_class": 5}}})
    assert shlex.split(options.imagenet(settings)) == [
        "--train-dir", "/t", "--val-dir", "/v", "--val-map", "/m", "--synsets", "10", "--train-per-class", "5"]


def test_per_target_resources_and_threads(tmp_path):
    from benchpipe.contracts.config import load_target

    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump({"name": "gpu", "runtime": "local", "devices": {"kind": "gpu", "count": 2},
                                    "slurm": {"cpus_per_task": 8, "runtime_min": 30}}))
    targets = {"gpu": load_target(path)}
    requests = slurm_requests(targets, training=False)
    resources = job_resources(targets, requests, training=False, scratch={"tmpdir": "/scratch"})
    job = SimpleNamespace(target="gpu")
    assert resources["gpu"](job) == 2 and resources["cpus_per_task"](job) == 8
    # A job killed at its time limit gets twice, then three times the time.
    assert [resources["runtime"](job, attempt) for attempt in (1, 2, 3)] == [30, 60, 90]
    assert resources["tmpdir"] == "/scratch"
    assert job_threads(requests, 2)(job) == 8
    assert job_threads({"gpu": {}}, 2)(job) == 2 and job_threads({"gpu": {}}, None)(job) == 1


def test_rule_functions_are_signed_once():
    from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR

    def data(wildcards):
        return "x"

    def threads(wildcards, attempt):
        return 1

    rule = SimpleNamespace(input=[data, "plain"], params=[data],
                           resources={"runtime": SimpleNamespace(_evaluator=threads)})
    assert sign_rule_functions([rule]) == 2
    assert list(getattr(data, FUNC_OVERWRITE_PARAMS_ATTR)) == ["wildcards"]
    assert list(getattr(threads, FUNC_OVERWRITE_PARAMS_ATTR)) == ["wildcards", "attempt"]
    assert sign_rule_functions([rule]) == 0


# --- The LLM benchmarks: nothing trained, a checkpoint served, scenarios per system type ----------

SHA = "ab" * 32
LLMS = ["llama31_8b", "llama31_8b_edge"]


@pytest.fixture
def llm_config(workdir):
    """A config of the two LLM benchmarks on a target of both system types, with what they need:
    sources with their sha256, a checkpoint folder each, a checker checkout."""
    targets = workdir / "targets"
    targets.mkdir()
    for name, devices, system in (("dc-edge", "cpu", {"system_type": "datacenter,edge"}), ("box", "cpu", {}),
                                  ("gpu", "gpu", {})):
        (targets / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "runtime": "local", "devices": {"kind": devices, "count": 1}, "system": system}))
    checkpoint = workdir / "checkpoint"
    (checkpoint / "original").mkdir(parents=True)
    for name in ("model-00002-of-00002.safetensors", "config.json", "model-00001-of-00002.safetensors",
                 "generation_config.json", "original/params.json"):
        (checkpoint / name).write_text(name)
    checker = workdir / "inference" / "tools" / "submission" / "submission_checker"
    checker.mkdir(parents=True)
    (checker / "main.py").write_text("")
    sources = {"cnn_eval.json": {"urls": ["file:///e"], "sha256": SHA},
               "tokenizer.json": {"urls": ["file:///t"], "sha256": SHA}}

    def make(benchmarks=LLMS, targets=("dc-edge",), models=None, **sections) -> dict:
        inference = {"scenarios": ["Offline", "SingleStream", "MultiStream", "Server", "Interactive"],
                     "checker": str(workdir / "inference"),
                     "models": {b: {"checkpoint": str(checkpoint), "sha256": SHA} for b in benchmarks}
                     if models is None else models}
        return config(**{"benchmarks": list(benchmarks), "targets": list(targets),
                         "targets_dir": str(workdir / "targets"),
                         "datasets": {"sources": {b: {k: dict(v) for k, v in sources.items()} for b in benchmarks}},
                         "inference": inference, **sections})

    make.checkpoint = checkpoint
    return make


def test_llm_benchmarks_train_nothing_and_run_their_rounds_scenarios(llm_config, repo_root):
    workflow = check_workflow(llm_config(), repo_root, main_process=True, dry_run=True)
    tests = {(t.benchmark, t.scenario, t.mode) for t in workflow.tests}
    assert tests == {
        *((("llama31_8b", s, m) for s in ("Offline", "Server", "Interactive")
           for m in ("performance", "accuracy", "TEST06"))),
        *((("llama31_8b_edge", s, m) for s in ("Offline", "SingleStream") for m in ("performance", "accuracy"))),
    }
    assert {t.target for t in workflow.tests} == {"dc-edge"}
    assert workflow.modes == ["performance", "accuracy", "TEST06"]
    assert workflow.scenarios == ["Offline", "Server", "Interactive", "SingleStream"]
    assert workflow.infer_benchmarks == LLMS
    # Their sources are the configured ones; llama31_8b is also a training benchmark name of
    # training 5.1.0 on, which does not make the default ruleset refuse it.
    assert [s.sha256 for s in workflow.sources["llama31_8b"]] == [SHA, SHA]


def test_each_llm_runs_on_the_targets_of_its_system_type(llm_config, repo_root):
    workflow = check_workflow(llm_config(targets=["box", "gpu"]), repo_root, main_process=True, dry_run=True)
    assert {(t.target, t.benchmark) for t in workflow.tests} == {("gpu", "llama31_8b"), ("box", "llama31_8b_edge")}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": {}}, "inference.models.llama31_8b: llama31_8b trains nothing and serves your Llama checkpoint: "
                         "set inference.models.llama31_8b.checkpoint to its folder"),
        ({"models": {"llama31_8b": {"savedmodel": "/m", "sha256": SHA}}},
         "(a SavedModel is given: llama31_8b serves a Llama checkpoint)"),
        ({"benchmarks": ["digits"], "models": {"digits": {"checkpoint": "/c", "sha256": SHA}}},
         "inference.models.digits.checkpoint: digits serves a SavedModel, not a Llama checkpoint"),
        ({"models": {"llama31_8b": {"checkpoint": "no-such-folder", "sha256": SHA}}},
         "inference.models.llama31_8b.checkpoint: no-such-folder is not a folder"),
        ({"targets": ["box"], "benchmarks": ["llama31_8b"]},
         "inference.scenarios: llama31_8b may run none of Offline, SingleStream, MultiStream, Server, Interactive "
         "on box (edge)"),
        ({"training": {"hyperparameters": {"llama31_8b": {"lora_rank": 8}}}},
         "training.hyperparameters.llama31_8b: llama31_8b trains nothing"),
    ],
)
def test_an_llm_config_error_names_its_key_before_any_job(llm_config, repo_root, change, message):
    change = dict(change)
    settings = llm_config(benchmarks=change.pop("benchmarks", LLMS), targets=change.pop("targets", ["dc-edge"]),
                          models=change.pop("models", None), training=change.pop("training", {}))
    with pytest.raises(ConfigError) as err:
        check_workflow(settings, repo_root, main_process=True, dry_run=True)
    assert message in str(err.value)


def test_an_llm_left_out_of_inference_is_refused(llm_config, repo_root):
    settings = llm_config()
    settings["inference"]["benchmarks"] = ["llama31_8b_edge"]
    del settings["inference"]["models"]["llama31_8b"]
    with pytest.raises(ConfigError, match="inference.benchmarks: leaves out llama31_8b, which trains nothing: "
                                          "nothing would run for it"):
        check_workflow(settings, repo_root, main_process=True, dry_run=True)


def test_a_checkpoint_without_weights_is_refused_before_any_job(llm_config, repo_root):
    for shard in llm_config.checkpoint.glob("*.safetensors"):
        shard.unlink()
    with pytest.raises(ConfigError, match=r"inference.models.llama31_8b.checkpoint: .* has no \*.safetensors"):
        check_workflow(llm_config(), repo_root, main_process=True, dry_run=True)


def test_an_llm_source_without_its_sha256_is_refused(llm_config, repo_root):
    settings = llm_config()
    del settings["datasets"]["sources"]["llama31_8b_edge"]["tokenizer.json"]
    with pytest.raises(ConfigError, match=r"datasets.sources.llama31_8b_edge.tokenizer.json: set urls and sha256"):
        check_workflow(settings, repo_root, main_process=True, dry_run=True)


def test_a_served_checkpoint_reaches_the_jobs_as_its_folder_and_its_files(llm_config):
    settings = llm_config()
    folder = llm_config.checkpoint
    assert shlex.split(options.served_model(settings, "llama31_8b", [])) == [
        "--model", str(folder), "--model-sha256", SHA]
    # Every file, in the order the model's digest reads them: a changed shard reruns the tests.
    assert options.supplied_model_inputs(settings, "llama31_8b") == [
        str(folder / name) for name in ("config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors", "original/params.json")]
    assert options.supplied_model_inputs(config(), "digits") == []
    saved = config(inference={"models": {"digits": {"savedmodel": "/m", "sha256": SHA}}})
    assert options.supplied_model_inputs(saved, "digits") == ["/m"]


def test_model_sha256_hashes_a_checkpoint_folder_as_its_calibration_checks_it(llm_config, capsys):
    from benchpipe.cli import main
    from benchpipe.contracts.errors import InferenceError
    from benchpipe.infer.models import supplied_checkpoint

    folder = llm_config.checkpoint
    assert main(["model-sha256", str(folder)]) == 0
    digest = capsys.readouterr().out.strip()
    assert supplied_checkpoint(folder, digest, "llama31_8b").sha256 == digest
    (folder / "original" / "params.json").write_text("changed")  # every file counts, in sub-folders too
    with pytest.raises(InferenceError, match=r"inference.models.llama31_8b.sha256: .* has sha256 [0-9a-f]{64}, "
                                             f"the config says {digest}"):
        supplied_checkpoint(folder, digest, "llama31_8b")
    assert main(["model-sha256", str(folder / "original")]) == 1
    assert "neither a SavedModel (no saved_model.pb) nor a Llama checkpoint" in capsys.readouterr().err
