import dataclasses
from pathlib import Path

import pytest
import yaml

from benchpipe.contracts import config as config_module
from benchpipe.contracts.config import (
    InferenceTest,
    benchmark_scenarios,
    check_config,
    inference_modes,
    inference_tests,
    load_target,
    read_yaml,
    training_benchmarks,
    training_runs,
)
from benchpipe.contracts.errors import ConfigError, ValidationError
from benchpipe.contracts.rounds import inference_round
from benchpipe.contracts.schemas import validate


def load_config(path: Path, base_dir: Path) -> dict:
    """As the Snakefile does: the schema with its defaults filled in, then the package's checks."""
    config = read_yaml(path) or {}
    try:
        validate(config, "config.schema.json", what=str(path), fill_defaults=True)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc
    check_config(config, base_dir)
    return config


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_filled_in(tmp_path, repo_root):
    config = load_config(write(tmp_path, {"submission": {"submitter": "acme"}}), repo_root)
    assert config["benchmarks"] == ["digits"]
    assert config["targets"] == ["local-cpu"]
    assert config["submission"]["division"] == "closed"
    assert config["training"] == {"ruleset": "4.0.0", "runs": None, "seed": 2026, "hyperparameters": {}}
    assert config["inference"]["round"] == "v6.1"
    assert config["inference"]["min_duration_ms"] == 5000
    assert config["inference"]["official"] is False and config["inference"]["accuracy_samples"] == 1000
    assert config["inference"]["scenarios"] == ["Offline", "SingleStream", "MultiStream", "Server"]
    assert config["inference"]["benchmarks"] is None  # every benchmark


def test_shipped_config_is_valid(repo_root):
    config = load_config(repo_root / "config" / "config.yaml", repo_root)
    assert config["submission"]["submitter"]


@pytest.mark.parametrize(
    "data, key",
    [
        ({"benchmarks": ["digits"]}, "submission"),
        ({"submission": {}}, "submission.submitter"),
        ({"submission": {"submitter": "a"}, "training": {"runs": "five"}}, "training.runs"),
        ({"submission": {"submitter": "a"}, "training": {"runs": 2}}, "training.runs"),
        ({"submission": {"submitter": "a", "division": "mixed"}}, "submission.division"),
        ({"submission": {"submitter": "a"}, "benchmarks": ["nope"]}, "benchmarks[0]"),
        ({"submission": {"submitter": "a"}, "targets": ["local-cpu", "moon"]}, "targets[1]"),
        ({"submission": {"submitter": "a"}, "colour": "red"}, "<top level>"),
    ],
)
def test_invalid_config_names_the_key(tmp_path, repo_root, data, key):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data), repo_root)
    assert f"'{key}'" in str(err.value)


def test_unknown_target_lists_available(tmp_path, repo_root):
    config = {"benchmarks": ["digits"], "targets": ["moon"], "targets_dir": "config/targets"}
    with pytest.raises(ConfigError, match="available: .*local-cpu"):
        check_config(config, repo_root)


def test_target_file_checked(tmp_path):
    bad = tmp_path / "gpu-box.yaml"
    bad.write_text(yaml.safe_dump({"name": "gpu-box", "runtime": "local", "devices": {"kind": "cpu", "count": "1"}}))
    with pytest.raises(ConfigError, match=r"gpu-box.yaml: key 'devices.count'"):
        load_target(bad)
    bad.write_text(yaml.safe_dump({"name": "other", "runtime": "local", "devices": {"kind": "cpu", "count": 1}}))
    with pytest.raises(ConfigError, match="key 'name' is 'other'"):
        load_target(bad)


def test_local_cpu_target(repo_root):
    target = load_target(repo_root / "config" / "targets" / "local-cpu.yaml")
    assert (target.name, target.runtime, target.device_kind) == ("local-cpu", "local", "cpu")


# --- Scenarios and modes per benchmark and system type -------------------------------------------

EVERY_SCENARIO = ["Offline", "SingleStream", "MultiStream", "Server", "Interactive"]


def settings(division: str = "closed", scenarios=EVERY_SCENARIO, **sections) -> dict:
    """A config as the Snakefile holds it: the schema's defaults filled in."""
    data = {"submission": {"submitter": "acme", "division": division}, "inference": {"scenarios": list(scenarios)},
            **sections}
    validate(data, "config.schema.json", what="config", fill_defaults=True)
    return data


@pytest.mark.parametrize(
    "benchmark, system_type, expected",
    [
        # The round's datacenter model: Offline required, Server and Interactive optional.
        ("llama31_8b", "datacenter", ["Offline", "Server", "Interactive"]),
        ("llama31_8b", "edge", []),
        ("llama31_8b", "datacenter,edge", ["Offline", "Server", "Interactive"]),
        # The round's edge model, in the config's order.
        ("llama31_8b_edge", "edge", ["Offline", "SingleStream"]),
        ("llama31_8b_edge", "datacenter", []),
        ("llama31_8b_edge", "edge,datacenter", ["Offline", "SingleStream"]),
        # Classifiers: every configured scenario on any system, Interactive (an LLM's) aside.
        ("digits", "edge", ["Offline", "SingleStream", "MultiStream", "Server"]),
        ("resnet", "datacenter", ["Offline", "SingleStream", "MultiStream", "Server"]),
        ("mnist", None, ["Offline", "SingleStream", "MultiStream", "Server"]),
    ],
)
def test_scenarios_follow_the_round_for_an_llm_and_the_config_for_a_classifier(benchmark, system_type, expected):
    assert benchmark_scenarios(settings(), benchmark, system_type) == expected


def test_an_llm_runs_only_the_configured_scenarios_the_round_allows():
    assert benchmark_scenarios(settings(scenarios=["Server", "SingleStream"]), "llama31_8b", "datacenter") == ["Server"]
    assert benchmark_scenarios(settings(scenarios=["Server"]), "llama31_8b_edge", "edge") == []


@pytest.mark.parametrize("system_type", ["cloud", "datacenter, edge", None])
def test_an_unknown_system_type_is_refused_for_an_llm(system_type):
    with pytest.raises(ConfigError, match="system_type"):
        benchmark_scenarios(settings(), "llama31_8b", system_type)


@pytest.mark.parametrize(
    "benchmark, division, expected",
    [
        ("resnet", "closed", ["performance", "accuracy", "TEST01", "TEST04"]),  # the round's, as before
        ("llama31_8b", "closed", ["performance", "accuracy", "TEST06"]),
        ("llama31_8b_edge", "closed", ["performance", "accuracy"]),  # the round requires none of it
        ("digits", "closed", ["performance", "accuracy", "TEST01", "TEST04"]),  # benchpipe's own: a classifier's
        ("mnist", "closed", ["performance", "accuracy", "TEST01", "TEST04"]),
        (None, "closed", ["performance", "accuracy", "TEST01", "TEST04"]),
        ("llama31_8b", "open", ["performance", "accuracy"]),
        ("resnet", "open", ["performance", "accuracy"]),
    ],
)
def test_compliance_tests_are_the_rounds_for_each_model(benchmark, division, expected):
    assert inference_modes(settings(division), benchmark) == expected


def test_a_compliance_test_benchpipe_does_not_run_is_a_config_error(monkeypatch):
    real = inference_round()
    tests = dict(real.compliance_tests, TEST07=[*real.compliance_tests["TEST07"], "llama3.1-8b-edge"])
    changed = dataclasses.replace(real, compliance_tests=tests)
    monkeypatch.setattr(config_module, "inference_round", lambda name: changed)
    with pytest.raises(ConfigError, match="inference.round: v6.1 requires TEST07 of llama3.1-8b-edge, which benchpipe "
                                          "does not run"):
        inference_modes(settings(), "llama31_8b_edge")


def test_the_tests_are_an_explicit_list_per_target_benchmark_scenario_and_mode():
    config = settings(benchmarks=["digits", "llama31_8b", "llama31_8b_edge"], targets=["box", "gpu"],
                      scenarios=["Offline", "Server", "Interactive", "SingleStream"])
    tests = inference_tests(config, {"box": "edge", "gpu": "datacenter"})
    # Each LLM on the targets of its category only; digits everywhere, without Interactive.
    assert {(t.target, t.benchmark, t.scenario) for t in tests} == {
        *(("box", "digits", s) for s in ("Offline", "Server", "SingleStream")),
        *(("gpu", "digits", s) for s in ("Offline", "Server", "SingleStream")),
        *(("gpu", "llama31_8b", s) for s in ("Offline", "Server", "Interactive")),
        *(("box", "llama31_8b_edge", s) for s in ("Offline", "SingleStream")),
    }
    assert len(tests) == len(set(tests)) == 6 * 4 + 3 * 3 + 2 * 2
    assert InferenceTest("gpu", "llama31_8b", "Interactive", "TEST06") in tests
    assert not any(t.mode == "TEST06" and t.benchmark != "llama31_8b" for t in tests)
    assert tests[0] == InferenceTest("box", "digits", "Offline", "performance")  # targets, then scenarios, then modes


@pytest.mark.parametrize(
    "benchmarks, scenarios, system_types, message",
    [
        (["llama31_8b"], EVERY_SCENARIO, {"box": "edge"},
         "inference.scenarios: llama31_8b may run none of Offline, SingleStream, MultiStream, Server, Interactive "
         "on box (edge): round v6.1 has llama3.1-8b for datacenter: Offline, Interactive, Server"),
        (["llama31_8b_edge"], EVERY_SCENARIO, {"a": "datacenter", "b": "datacenter"},
         "llama31_8b_edge may run none of Offline, SingleStream, MultiStream, Server, Interactive on a (datacenter), "
         "b (datacenter): round v6.1 has llama3.1-8b-edge for edge: SingleStream, Offline"),
        (["digits"], ["Interactive"], {"box": "datacenter"},
         "inference.scenarios: digits may run none of Interactive on box (datacenter): Interactive is a scenario "
         "of LLMs only"),
    ],
)
def test_a_benchmark_with_no_scenario_on_any_target_is_named(benchmarks, scenarios, system_types, message):
    config = settings(scenarios=scenarios, benchmarks=benchmarks, targets=list(system_types))
    with pytest.raises(ConfigError) as err:
        inference_tests(config, system_types)
    assert message in str(err.value)


def test_an_inference_only_benchmark_has_no_training_runs():
    config = settings(benchmarks=["digits", "llama31_8b"], training={"runs": 5})
    assert training_benchmarks(config) == ["digits"]
    assert training_runs(config, "llama31_8b") == 0 and training_runs(config, "digits") == 5
    assert training_runs(settings(), "digits") == 5  # digits' own count


def test_a_targets_system_type_defaults_by_its_devices_and_may_be_set(tmp_path):
    target = tmp_path / "box.yaml"
    cpu, gpu = {"kind": "cpu", "count": 1}, {"kind": "gpu", "count": 2}
    for devices, system, expected in ((cpu, {}, "edge"), (gpu, {}, "datacenter"),
                                      (cpu, {"system_type": "datacenter,edge"}, "datacenter,edge")):
        target.write_text(yaml.safe_dump({"name": "box", "runtime": "local", "devices": devices, "system": system}))
        assert load_target(target).system_type == expected
    target.write_text(yaml.safe_dump({"name": "box", "runtime": "local", "devices": {"kind": "cpu", "count": 1},
                                      "system": {"system_type": "cloud"}}))
    with pytest.raises(ConfigError, match=r"box.yaml: key 'system.system_type'"):
        load_target(target)


@pytest.mark.parametrize(
    "models, key",
    [
        ({"llama31_8b": {"sha256": "ab" * 32}}, "inference.models.llama31_8b"),  # neither folder
        ({"llama31_8b": {"checkpoint": "/c", "savedmodel": "/s", "sha256": "ab" * 32}}, "inference.models.llama31_8b"),
        ({"llama31_8b": {"checkpoint": "/c"}}, "inference.models.llama31_8b.sha256"),
        ({"llama31_8b": {"checkpoint": "", "sha256": "ab" * 32}}, "inference.models.llama31_8b.checkpoint"),
    ],
)
def test_a_served_model_names_one_folder_and_its_digest(tmp_path, repo_root, models, key):
    data = {"submission": {"submitter": "a"}, "inference": {"models": models}}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data), repo_root)
    assert f"'{key}'" in str(err.value)


def test_interactive_and_a_checkpoint_are_valid_config(tmp_path, repo_root):
    config = load_config(write(tmp_path, {
        "submission": {"submitter": "a"}, "benchmarks": ["llama31_8b"],
        "inference": {"scenarios": ["Offline", "Interactive"],
                      "models": {"llama31_8b": {"checkpoint": "/c", "sha256": "ab" * 32}}},
    }), repo_root)
    assert config["inference"]["scenarios"] == ["Offline", "Interactive"]
