"""resnet through the whole workflow: ImageNet-layout tree in; out, a training folder that
MLCommons' own package checker and result summarizer accept, and an inference folder that
MLCommons' submission checker accepts under the development rule."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from imagenet_tree import SUBSET, SYNSETS, make_tree

from benchpipe.mlcommons.training import run_package_checker
from benchpipe.package.manifest import verify_manifest

ORG = "acme"
# Small images and batches: 12 train images in batches of 4, 3 steps an epoch; 2 epochs end
# with the cadence's first evaluation (offset 2).
TINY_HYPERPARAMETERS = {"image_size": 32, "global_batch_size": 4, "max_epochs": 2, "warmup_epochs": 1}


def snakemake(repo_root: Path, workdir: Path, env, *args: str, timeout: int = 1800):
    return subprocess.run(
        ["snakemake", "-s", str(repo_root / "Snakefile"), "--directory", str(workdir), *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


# Offline and SingleStream: an edge system's runs, short (development) on the tiny val set.
INFERENCE = {"scenarios": ["Offline", "SingleStream"], "min_duration_ms": 1000}


def resnet_config(tmp_path: Path, checker: Path | None = None, **overrides) -> dict:
    tree = make_tree(tmp_path / "ilsvrc")
    config = {
        "submission": {"submitter": ORG, "division": "open", "round": "resnet"},
        "benchmarks": ["resnet"],
        "targets": ["local-cpu"],
        "datasets": {"imagenet": {
            **{key: str(path) for key, path in tree.items()},
            "synsets": len(SYNSETS),
            "subset": {"train_per_class": SUBSET.train_per_class, "val_images": SUBSET.val_images},
        }},
        "training": {"hyperparameters": {"resnet": dict(TINY_HYPERPARAMETERS)}},
        "inference": dict(INFERENCE, checker=str(checker)) if checker else {"benchmarks": []},
    }
    for key, value in overrides.items():
        config[key] = value
    return config


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
@pytest.mark.resnet
@pytest.mark.timing
def test_open_resnet_tree_passes_the_official_training_and_inference_checkers(
    repo_root, tmp_path, cli_env, inference_checkout
):
    config = write(tmp_path, resnet_config(tmp_path, inference_checkout))
    proc = snakemake(repo_root, tmp_path, cli_env, "--cores", "2", "submit", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-5000:]
    tree = tmp_path / "submissions" / "resnet"
    assert verify_manifest(tree) > 10

    # The organization folder the official tools read, in the layout they expect.
    org = tree / "training" / ORG
    system = json.loads((org / "systems" / "local-cpu.json").read_text())
    assert system["division"] == "open" and all(isinstance(v, str) for v in system.values())
    results = org / "results" / "local-cpu" / "resnet"
    assert sorted(p.name for p in results.iterdir()) == [f"result_{i}.txt" for i in range(5)]
    impl = org / "benchmarks" / "resnet" / "implementations" / "benchpipe"
    assert (impl / "README.md").is_file() and (impl / "run_and_time.sh").is_file()
    assert not (tree / "benchpipe" / "training").exists()  # nothing of benchpipe's own benchmarks

    # Seeds are distinct per run, from one source line; every log is an open ResNet log.
    seeds, lines = set(), set()
    for path in results.iterdir():
        events = [json.loads(l.split(":::MLLOG ", 1)[1]) for l in path.read_text().splitlines() if ":::MLLOG" in l]
        seed = [e for e in events if e["key"] == "seed"]
        assert len(seed) == 1
        seeds.add(seed[0]["value"])
        lines.add((seed[0]["metadata"]["file"], seed[0]["metadata"]["lineno"]))
        assert {e["key"]: e["value"] for e in events}["submission_division"] == "open"
    assert len(seeds) == 5 and len(lines) == 1

    # The package checker passed inside `benchpipe package`; the tree as moved into place passes too.
    checks = json.loads((tree / "benchpipe" / "checks.json").read_text())
    tools = checks["official_tools"]
    assert tools["ruleset"] == "training 4.0.0"
    assert tools["package_checker"]["verdict"] == "PACKAGE CHECKER FOUND NO ERRORS, SUCCESS !"
    again = run_package_checker(org, tmp_path / "package_checker.log")
    assert again.passed, again.problems()

    # The summarizer's CSV stays in the tree, its resnet cell filled with the score in minutes.
    summary = tree / tools["result_summarizer"]["resnet"]["csv"]
    with summary.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["system"] for r in rows] == ["local-cpu"]
    minutes = float(rows[0]["resnet"])
    assert minutes > 0 and tools["result_summarizer"]["resnet"]["minutes"] == {"local-cpu": minutes}

    # The tree records each departure from the closed reference.
    departures = checks["hyperparameters"]["resnet"]["departures_from_reference"]
    assert departures["image_size"] == {"reference": 224, "used": 32}
    assert departures["global_batch_size"] == {"reference": 3264, "used": 4}
    assert "optimizer" not in departures
    assert checks["datasets"]["resnet"]["subset"]
    assert (tree / "benchpipe" / "datasets" / "imagenet" / "manifest.json").is_file()

    # Inference: MLPerf's folder `resnet`, LoadGen's key resnet50, judged by the official checker.
    inf = tree / "inference" / "open" / ORG
    assert json.loads((inf / "systems" / "local-cpu.json").read_text())["system_type"] == "edge"
    for scenario in INFERENCE["scenarios"]:
        sdir = inf / "results" / "local-cpu" / "resnet" / scenario
        assert "resnet50." + scenario in (sdir / "user.conf").read_text()
        measurements = json.loads((sdir / "measurements.json").read_text())
        assert measurements["retraining"] == "yes" and "sha256" in measurements["starting_weights_filename"]
        assert (sdir / "accuracy" / "accuracy.txt").read_text().startswith("accuracy=")
        assert not (sdir / "TEST01").exists()  # the open division has no compliance tests
    verdict = checks["inference"]["official_checker"]
    assert verdict["verdict"].startswith("passed")
    # The development rule: nothing but the short duration (and, skipped, the dataset size).
    assert verdict["errors_allowed"] and all("Test duration less than 600s" in e for e in verdict["errors_allowed"])
    assert (tree / verdict["csv"]).is_file() and (tree / verdict["log"]).is_file()
    assert not (tree / "benchpipe" / "inference").exists()  # no benchpipe model was tested

    # The auditor's command, from the tree alone: MLCommons' training tools and its inference
    # checker re-run on a copy, every item passing.
    report = tmp_path / "resnet.audit.json"
    audited = subprocess.run(["benchpipe", "audit", str(tree), "--report", str(report),
                              "--inference-checker", str(inference_checkout)],
                             env=cli_env, capture_output=True, text=True, timeout=900)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    items = {i["name"]: i for i in json.loads(report.read_text())["items"]}
    assert all(i["status"] == "pass" for i in items.values()), items
    # 5 logs + 1 system through the compliance and system checkers, the package checker, the
    # summarizer, 4 LoadGen tests (2 scenarios x performance, accuracy), the summary and detail
    # logs of the 2 performance runs held against each other, and the inference checker.
    assert items["checkers"]["checked"] == 5 + 1 + 1 + 1 + 4 + 2 + 1


def test_closed_hyperparameter_outside_the_rules_fails_before_any_job(repo_root, tmp_path, cli_env):
    config = resnet_config(tmp_path)
    config["submission"]["division"] = "closed"
    config["training"]["hyperparameters"]["resnet"] = {"weight_decay": 0.0003}
    proc = snakemake(repo_root, tmp_path, cli_env, "--cores", "1", "submit", "--configfile", str(write(tmp_path, config)))
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "training.hyperparameters.resnet.weight_decay" in output
    assert "is_integer(math.log2(v['value'] / 0.0001))" in output  # the rule, quoted
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_closed_batch_size_without_a_reference_convergence_point_fails_before_any_job(repo_root, tmp_path, cli_env):
    config = resnet_config(tmp_path)
    config["submission"]["division"] = "closed"
    config["training"]["hyperparameters"]["resnet"] = {"global_batch_size": 100_000}
    proc = snakemake(repo_root, tmp_path, cli_env, "-n", "submit", "--configfile", str(write(tmp_path, config)))
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "training.hyperparameters.resnet.global_batch_size" in output and "reference convergence point" in output
    assert "Building DAG" not in output


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"datasets": {}}, "resnet trains on data/imagenet, which is never downloaded"),
        ({"inference": {}}, "inference.checker: resnet goes into MLPerf's inference tree"),
        ({"training": {"hyperparameters": {"resnet": {"image_sise": 32}}}}, "training.hyperparameters.resnet.image_sise"),
        ({"training": {"hyperparameters": {"digits": {}}}}, "training.hyperparameters: digits is not in benchmarks"),
    ],
)
def test_resnet_config_errors_are_named_before_any_job(repo_root, tmp_path, cli_env, change, expected):
    config = resnet_config(tmp_path, **change)
    proc = snakemake(repo_root, tmp_path, cli_env, "-n", "submit", "--configfile", str(write(tmp_path, config)))
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert expected in output, output[-3000:]
    assert "Building DAG" not in output


def test_resnet_dry_run_trains_five_runs_on_data_imagenet(repo_root, tmp_path, cli_env, inference_checkout):
    config = write(tmp_path, resnet_config(tmp_path, inference_checkout))
    proc = snakemake(repo_root, tmp_path, cli_env, "-n", "-p", "submit", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.MULTILINE))
    assert (jobs["imagenet"], jobs["train"]) == ("1", "5") and "datasets" not in jobs
    # Two scenarios, each calibrated once, then its performance and accuracy runs (open: no TEST0x).
    assert (jobs["calibrate"], jobs["infer"]) == ("2", "4")
    assert "--data data/imagenet" in out and "--hyperparameters-json" in out
