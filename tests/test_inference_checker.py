"""MLCommons' inference submission checker, run for real on trees of real LoadGen logs.

The checker is the conftest's ``inference_checkout``, the unmodified copy in
../shared/third_party/mlcommons-inference (a user's own checkout in production); the trees come from tests/inference_tree.py: real mlperf_loadgen runs of
300 ms against a tiny numpy SUT. Official-mode passes need 600 s runs and are not run here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from inference_tree import TreeSpec, build_tree, copy_tree, run_performance

from benchpipe.contracts.errors import ConfigError, ValidationError
from benchpipe.mlcommons.inference_checker import (
    CONFIG_KEY,
    DURATION_ERROR,
    VERDICT_DEVELOPMENT,
    checker_commit,
    checker_dir,
    parse_output,
    run_inference_checker,
)

EDGE = TreeSpec(system_type="edge")
DATACENTER = TreeSpec(system_type="datacenter")


@pytest.fixture(autouse=True, scope="module")
def _checkout(inference_checkout):
    """The checker every test here runs (conftest: the copy in shared/, required in CI)."""
    global CHECKOUT
    CHECKOUT = inference_checkout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """One edge and one datacenter open tree, each the ``inference`` folder of a submission tree."""
    base = tmp_path_factory.mktemp("built")
    return {
        "edge": build_tree(base / "edge" / "inference", EDGE),
        "datacenter": build_tree(base / "datacenter" / "inference", DATACENTER),
    }


def _tree(built: dict[str, Path], tmp_path: Path, kind: str = "edge", division: str | None = None) -> Path:
    """A fresh copy of a built tree under tmp_path/tree/inference, for a test to change."""
    root = tmp_path / "tree" / "inference"
    copy_tree(built[kind], EDGE if kind == "edge" else DATACENTER, root, division)
    return root


def _check(root: Path, *, development: bool = True, subset_accuracy: bool = True, submitter: str = "acme"):
    return run_inference_checker(
        CHECKOUT, root, submitter=submitter, development=development, subset_accuracy=subset_accuracy,
        keep_dir=root.parent / "benchpipe" / "inference_checker",
    )


# ---------------------------------------------------------------------------------------------
# Development trees pass, with the allowed errors recorded


@pytest.mark.parametrize("kind", ["edge", "datacenter"])
def test_development_tree_passes_with_only_duration_errors(built, tmp_path, kind):
    root = _tree(built, tmp_path, kind)
    entry = _check(root)

    spec = EDGE if kind == "edge" else DATACENTER
    assert entry["verdict"] == VERDICT_DEVELOPMENT
    assert entry["mode"] == "development"
    assert entry["exit_code"] == 1 and entry["summary"] == "SUMMARY: submission has errors"
    assert entry["results"] == {"accepted": 0, "rejected": 2}
    # One duration error per scenario, quoted as the checker logged it, paths relative to the tree.
    assert len(entry["errors_allowed"]) == len(spec.scenarios)
    for line, scenario in zip(entry["errors_allowed"], sorted(spec.scenarios)):
        assert line.startswith("[performance_check.py:")
        assert f"inference/open/acme/results/tiny-numpy/resnet/{scenario}/performance/run_1/mlperf_log_detail.txt " in line
        assert f"{DURATION_ERROR}. expected=600000, found=300" in line
    assert entry["command"] == [
        "python", "-P", "-m", "submission_checker.main", "--input", "inference", "--version", "v6.1",
        "--submitter", "acme", "--csv", "benchpipe/inference_checker/summary.csv", "--skip-dataset-size-check",
    ]
    assert entry["version"] == "v6.1"
    # The copy is no git repository: its README's commit line names it.
    assert entry["checker_commit"] == "b66003e10e2db4b8c36a448b0545ec90fcc6e9e9"
    tree = root.parent
    log = tree / entry["log"]
    assert entry["log"] == "benchpipe/inference_checker/submission_checker.log"
    assert "SUMMARY: submission has errors" in log.read_text()
    assert (tree / entry["csv"]).is_file() and entry["csv_rows"] == 0  # no result passed
    json.dumps(entry)  # fit for checks.json
    # Nothing written into the root the checker reads.
    assert sorted(p.name for p in root.iterdir()) == ["open"]


def test_checker_line_format(built, tmp_path):
    """The records the checker logs: [date time,ms file.py:line LEVEL] message."""
    root = _tree(built, tmp_path)
    _check(root)
    output = (root.parent / "benchpipe" / "inference_checker" / "submission_checker.log").read_text()
    records = parse_output(output)
    assert len(records) == len([l for l in output.splitlines() if l.startswith("[")])
    errors = [r for r in records if r.is_error]
    assert {r.source.split(":")[0] for r in errors} == {"performance_check.py", "base.py", "main.py"}
    assert records[-1].quote() == "[main.py:361 ERROR] SUMMARY: submission has errors"
    # With --skip-dataset-size-check the dataset-size check is silent: one INFO line per accuracy run.
    skipped = [r for r in records if r.message.endswith("Skipping dataset size check")]
    assert len(skipped) == 2 and all(r.level == "INFO" for r in skipped)


# ---------------------------------------------------------------------------------------------
# What development mode does not accept


def test_full_dataset_check_rejects_a_subset_accuracy_run(built, tmp_path):
    root = _tree(built, tmp_path)
    with pytest.raises(ValidationError) as err:
        _check(root, subset_accuracy=False)
    message = str(err.value)
    assert "[accuracy_check.py:" in message
    assert "accurcy run does not cover all dataset, accuracy samples: 64, dataset size: 50000" in message
    assert "more offending line" in message


def test_wrong_seed_is_rejected(built, tmp_path):
    """A harness that sets its own qsl_rng_seed: LoadGen calls the run VALID, the checker does not."""
    root = _tree(built, tmp_path)
    run_dir = run_performance(root, EDGE, "Offline", {"qsl_rng_seed": 12345})
    assert "Result is : VALID" in (run_dir / "mlperf_log_summary.txt").read_text()
    with pytest.raises(ValidationError) as err:
        _check(root)
    assert "qsl_rng_seed is wrong, expected=2085463073848966840, found=12345" in str(err.value)
    assert "Offline/performance/run_1/mlperf_log_detail.txt" in str(err.value)


@pytest.mark.parametrize(
    ("field", "line"),
    [
        ("host_storage_capacity", "field host_storage_capacity is missing"),
        ("framework", "field framework is missing"),
    ],
)
def test_system_json_without_a_required_field_is_rejected(built, tmp_path, field, line):
    root = _tree(built, tmp_path)
    system_file = EDGE.system_file(root)
    description = json.loads(system_file.read_text())
    del description[field]
    system_file.write_text(json.dumps(description))
    with pytest.raises(ValidationError) as err:
        _check(root)
    assert "[system_check.py:" in str(err.value) and line in str(err.value)


def test_missing_measurements_json_is_rejected(built, tmp_path):
    root = _tree(built, tmp_path)
    (EDGE.scenario_dir(root, "SingleStream") / "measurements.json").unlink()
    with pytest.raises(ValidationError) as err:
        _check(root)
    assert "SingleStream/measurements.json measurements json file not found" in str(err.value)


def test_closed_division_needs_compliance_and_all_scenarios(built, tmp_path):
    root = _tree(built, tmp_path, division="closed")
    with pytest.raises(ValidationError) as err:
        _check(root)
    assert "does not have all required scenarios, missing ['multistream']" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Official mode


def test_official_mode_rejects_short_runs(built, tmp_path):
    root = _tree(built, tmp_path)
    with pytest.raises(ValidationError) as err:
        _check(root, development=False)
    message = str(err.value)
    assert "official" in message and "exit 1" in message
    assert f"{DURATION_ERROR}. expected=600000, found=300" in message
    assert "benchpipe/inference_checker/submission_checker.log" in message


def test_error_lines_count_even_where_the_checker_passes_the_check(built, tmp_path):
    """A hash-less accuracy.txt: in open the checker logs an error, passes the accuracy checks, and
    (with 600 s runs) exits 0 with "submission looks OK". The error line alone rejects the tree."""
    root = _tree(built, tmp_path)
    accuracy = EDGE.scenario_dir(root, "Offline") / "accuracy" / "accuracy.txt"
    accuracy.write_text(accuracy.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValidationError) as err:
        _check(root)
    assert "not hash value for accuracy.txt" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Crashes, configuration, layout


def test_missing_performance_folder_crashes_loudly(built, tmp_path):
    root = _tree(built, tmp_path)
    shutil.rmtree(EDGE.scenario_dir(root, "Offline") / "performance")
    with pytest.raises(ValidationError) as err:
        _check(root)
    message = str(err.value)
    assert "crashed (exit 1" in message
    assert "TypeError: 'NoneType' object is not subscriptable" in message
    assert "performance_check.py" in message  # the traceback's tail


def test_missing_checkout_names_the_config_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        run_inference_checker(tmp_path / "nowhere", tmp_path, submitter="acme", development=True,
                              subset_accuracy=True, keep_dir=tmp_path / "keep")
    assert CONFIG_KEY in str(err.value) and str(tmp_path / "nowhere") in str(err.value)


def test_checkout_with_the_old_single_file_checker(tmp_path):
    old = tmp_path / "inference" / "tools" / "submission"
    old.mkdir(parents=True)
    (old / "submission_checker.py").write_text("")
    with pytest.raises(ConfigError, match="old single-file checker"):
        checker_dir(tmp_path / "inference")


def test_checker_dir_of_the_copy():
    assert checker_dir(CHECKOUT) == CHECKOUT / "tools" / "submission"


def test_commit_of_a_git_checkout(tmp_path):
    import subprocess

    checkout = tmp_path / "inference"
    checkout.mkdir()
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], text=True, capture_output=True,
                          check=True).stdout.strip()
    assert checker_commit(checkout) == head
    # A folder inside some other repository is not that repository's checkout.
    inner = checkout / "sub"
    inner.mkdir()
    assert checker_commit(inner) is None


def test_unknown_submitter_is_refused_before_running(built, tmp_path):
    root = _tree(built, tmp_path)
    with pytest.raises(ValidationError, match="would check nothing"):
        _check(root, submitter="other")


def test_outputs_inside_the_root_are_refused(built, tmp_path):
    root = _tree(built, tmp_path)
    with pytest.raises(ValidationError, match="cannot be kept inside the root"):
        run_inference_checker(CHECKOUT, root, submitter="acme", development=True, subset_accuracy=True,
                              keep_dir=root / "checker")
