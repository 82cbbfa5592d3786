from pathlib import Path

import pytest
import yaml

from benchpipe.contracts.config import check_config, load_target, read_yaml
from benchpipe.contracts.errors import ConfigError, ValidationError
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
