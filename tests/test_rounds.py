"""The MLPerf rounds as data: the inference table generated from the official checker, the
training rulesets from mlperf-logging, both chosen by the config and refused where a benchmark
is not in them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchpipe.contracts import rounds
from benchpipe.contracts.errors import ConfigError, ValidationError
from benchpipe.contracts.schemas import validate
from benchpipe.mlcommons import training

SCRIPT = Path("scripts", "inference_round_table.py")
TABLE = Path("workflow", "benchpipe", "contracts", rounds.INFERENCE_TABLE)


def test_the_committed_inference_table_is_the_checkers(repo_root, inference_checkout):
    rounds_args = [arg for name in rounds.inference_rounds() for arg in ("--round", name)]
    proc = subprocess.run(
        [sys.executable, str(repo_root / SCRIPT), "--checkout", str(inference_checkout), *rounds_args],
        capture_output=True, text=True, cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (repo_root / TABLE).read_text(), (
        f"{TABLE} differs from what {SCRIPT} makes of {inference_checkout}: regenerate it"
    )


def test_the_script_refuses_a_round_the_checker_does_not_have(repo_root, inference_checkout):
    proc = subprocess.run(
        [sys.executable, str(repo_root / SCRIPT), "--checkout", str(inference_checkout), "--round", "v0.1"],
        capture_output=True, text=True, cwd=repo_root,
    )
    assert proc.returncode != 0 and "no MODEL_CONFIG entry for round v0.1" in proc.stderr


def test_the_v61_round_as_the_reference_states_it():
    v61 = rounds.inference_round("v6.1")
    assert v61.categories_of("resnet") == ("edge",)
    assert v61.scenarios["edge"]["resnet"]["required"] == ["SingleStream", "MultiStream", "Offline"]
    assert v61.categories_of("llama3.1-8b") == ("datacenter",)
    assert v61.categories_of("llama3.1-8b-edge") == ("edge",)
    assert v61.llm_latency_limits_ns["llama3.1-8b"] == {
        "Server": {"ttft": 2_000_000_000, "tpot": 100_000_000},
        "Interactive": {"ttft": 500_000_000, "tpot": 30_000_000},
    }
    assert v61.latency_constraint_ns["resnet"] == {"Server": 15_000_000}
    assert v61.min_duration_ms == rounds.OFFICIAL_MIN_DURATION_MS
    assert "resnet" in v61.compliance_tests["TEST01"] and "resnet" in v61.compliance_tests["TEST04"]


def test_an_unknown_round_names_the_key():
    with pytest.raises(ConfigError, match=r"inference.round: 'v9.9' is not a round benchpipe knows \(v6.1\)"):
        rounds.inference_round("v9.9")


def test_the_schemas_offer_exactly_the_supported_rounds(repo_root):
    schemas = repo_root / "workflow" / "benchpipe" / "jsonschemas"
    config = json.loads((schemas / "config.schema.json").read_text())["properties"]
    assert config["training"]["properties"]["ruleset"]["enum"] == list(rounds.TRAINING_RULESETS)
    assert config["training"]["properties"]["ruleset"]["default"] == rounds.TRAINING_RULESET
    assert config["inference"]["properties"]["round"]["enum"] == list(rounds.inference_rounds())
    assert config["inference"]["properties"]["round"]["default"] == rounds.ROUND
    for name, column, supported in (("training_run", "training_ruleset", rounds.TRAINING_RULESETS),
                                    ("score", "training_ruleset", rounds.TRAINING_RULESETS),
                                    ("inference_result", "inference_round", rounds.inference_rounds())):
        row = json.loads((schemas / f"{name}.schema.json").read_text())
        assert row["properties"][column]["enum"] == list(supported) and column in row["required"]


def test_every_supported_ruleset_is_known_to_mlperf_logging():
    for ruleset in rounds.TRAINING_RULESETS:
        assert training.ruleset_benchmarks(ruleset)
    assert training.rulesets_with("resnet")[-1] == "4.0.0"


def test_the_config_defaults_to_the_rounds_of_today_and_refuses_others():
    config = {"submission": {"submitter": "acme"}}
    validate(config, "config.schema.json", what="config", fill_defaults=True)
    assert (config["training"]["ruleset"], config["inference"]["round"]) == ("4.0.0", "v6.1")
    with pytest.raises(ValidationError, match=r"key 'training.ruleset': '5.0.0' is not one of \['4.0.0', '6.1.0'\]"):
        validate({"submission": {"submitter": "acme"}, "training": {"ruleset": "5.0.0"}}, "config.schema.json",
                 what="config")


def test_snakemake_refuses_resnet_under_ruleset_610_before_any_job(repo_root, tmp_path, cli_env):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "submission": {"submitter": "acme", "division": "open"},
        "benchmarks": ["resnet"],
        "training": {"ruleset": "6.1.0"},
        "inference": {"benchmarks": []},
    }))
    proc = subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(tmp_path), "-n", "submit",
         "--configfile", str(config)],
        env=cli_env, capture_output=True, text=True, timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "resnet was retired after training 4.0.0; set training.ruleset: 4.0.0" in output, output[-3000:]
    assert "Building DAG" not in output


@pytest.mark.parametrize("ruleset", rounds.TRAINING_RULESETS)
def test_a_digits_log_passes_the_official_checker_under_every_supported_ruleset(trained_run, tmp_path, ruleset):
    # benchpipe's own benchmarks are allowed under any ruleset: their own rules judge them, and
    # the ruleset only picks the checker's log parser.
    from benchpipe.contracts import registry
    from benchpipe.mlcommons.checkers import run_compliance_checker

    result = run_compliance_checker(trained_run / "mllog.txt", registry.get("digits").rules_file,
                                    tmp_path / "cc.log", ruleset=ruleset)
    assert result.passed, result.output


def test_the_tables_record_the_ruleset_and_the_audit_path_re_derives_it(trained_run, tmp_path):
    from benchpipe.results.tables import read_table, training_log_rows, write_tables

    runs = trained_run.parents[3]
    written = write_tables(runs, tmp_path / "tables", [trained_run], [], training_ruleset="6.1.0",
                           inference_round="v6.1")
    assert written["runs.parquet"] == written["scores.parquet"] == 1
    [run] = read_table(tmp_path / "tables", "runs.parquet")
    [score] = read_table(tmp_path / "tables", "scores.parquet")
    assert run["training_ruleset"] == score["training_ruleset"] == "6.1.0"
    # The audit's path, from the log alone and the tree's config, gives the same row.
    _, derived = training_log_rows("local-cpu", "digits", 0, trained_run / "mllog.txt", "6.1.0")
    assert derived == run
