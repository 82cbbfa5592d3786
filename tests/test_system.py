import json

import pytest

from benchpipe.contracts.config import Target
from benchpipe.contracts.errors import ValidationError
from benchpipe.contracts.schemas import load_schema
from benchpipe.package.system import describe_system, write_description

TARGET = Target("local-cpu", "local", "cpu", 1, system={"cooling": "liquid", "host_storage_type": "NVMe"})


def test_detected_and_user_fields_merge(tmp_path):
    desc = describe_system(TARGET, submitter="acme", division="open", status="onprem")
    assert set(desc) == set(load_schema("system_desc.schema.json")["required"])
    assert all(isinstance(v, str) and v for v in desc.values())
    assert desc["cooling"] == "liquid" and desc["host_storage_type"] == "NVMe"  # user wins
    assert desc["submitter"] == "acme" and desc["division"] == "open"
    assert int(desc["host_processor_vcpu_count"]) >= 1
    assert desc["framework"].startswith("TensorFlow 2.")
    assert desc["accelerators_per_node"] == "0"
    out = tmp_path / "system.json"
    write_description(desc, out)
    assert json.loads(out.read_text()) == desc


def test_user_field_must_be_nonempty():
    bad = Target("local-cpu", "local", "cpu", 1, system={"cooling": ""})
    with pytest.raises(ValidationError, match="key 'cooling'"):
        describe_system(bad, submitter="acme", division="open", status="onprem")


def test_official_system_desc_checker_verdict(tmp_path):
    from benchpipe.mlcommons.checkers import run_system_desc_checker
    from benchpipe.package.tree import INFERENCE_ONLY, TRAINING_STATUS

    desc = describe_system(TARGET, submitter="acme", division="closed", status="research")
    training = {k: v for k, v in desc.items() if k not in INFERENCE_ONLY}
    training["status"] = TRAINING_STATUS[desc["status"]]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(training))
    assert run_system_desc_checker(good, tmp_path / "good.log").passed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(training, status="research")))  # the MLLOG word, not the checker's
    result = run_system_desc_checker(bad, tmp_path / "bad.log")
    assert not result.passed
    assert "Field status contains a non valid value" in result.problems()
