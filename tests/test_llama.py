"""llama2_70b_lora: its data form, its hyperparameters under the rules, and one stand-in run's log."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from benchpipe.benchmarks.hyperparameters import resolve_hyperparameters
from benchpipe.benchmarks.llama import govreport
from benchpipe.benchmarks.llama.corpus import corpus_rows, write_corpus
from benchpipe.contracts import registry
from benchpipe.contracts.errors import ConfigError, DatasetError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.datasets.prepare import prepare
from benchpipe.datasets.source import override_sources
from benchpipe.mlcommons.checkers import run_compliance_checker
from benchpipe.mlcommons.rules import training_rules_file
from benchpipe.pipeline.checks import check_training_ruleset
from benchpipe.results.mllog_parser import parse_mllog
from benchpipe.train.finetune import eval_points

NAME = "llama2_70b_lora"
# The .test suite's stand-in settings (.test/config/llama2_70b_lora.yaml).
STAND_IN = {"model": "stand-in", "stand_in_vocabulary_size": 64, "sequence_length": 64, "global_batch_size": 8,
            "micro_batch_size": 4, "base_learning_rate": 0.02, "max_steps": 100, "eval_every_samples": 80,
            "eval_start_samples": 160}


def _write_table(path: Path, columns: dict[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({k: pa.array(list(v), pa.list_(pa.int64())) for k, v in columns.items()}), path)


def test_the_corpus_reads_back_as_the_reference_form(tmp_path):
    written = write_corpus(tmp_path, train_rows=32, eval_rows=8, length=48)
    split = govreport.read_split(written[govreport.TRAIN_FILE])
    assert split.features.shape == (32, 2, 48)
    ids, labels = split.features[:, 0], split.features[:, 1]
    counted = labels != govreport.IGNORE_INDEX
    assert (labels[counted] == ids[counted]).all()
    assert (split.labels == counted.sum(axis=1)).all() and (split.labels > 0).all()
    # The same arguments, the same bytes: a config can pin their sha256.
    again = write_corpus(tmp_path / "again", train_rows=32, eval_rows=8, length=48)
    assert sha256_file(again[govreport.TRAIN_FILE]) == sha256_file(written[govreport.TRAIN_FILE])


@pytest.mark.parametrize("damage, message", [
    (lambda c: c.pop("labels"), "no column labels"),
    (lambda c: c["labels"].__setitem__((0, -1), 5), "row 0: a label on a padding position"),
    (lambda c: c["attention_mask"].__setitem__((1, 0), 0), "row 1: attention_mask is not right-padded"),
    (lambda c: c["labels"].__setitem__((2, c["labels"][2].argmax()), 63), "row 2: a label that is not the input id"),
    (lambda c: c["labels"].__setitem__(3, -100), "row 3: no label to learn"),
])
def test_a_damaged_split_is_refused_naming_the_file_and_row(tmp_path, damage, message):
    columns = corpus_rows(8, 48, seed=1)
    damage(columns)
    path = tmp_path / govreport.TRAIN_FILE
    _write_table(path, columns)
    with pytest.raises(DatasetError, match=message) as raised:
        govreport.read_split(path)
    assert str(path) in str(raised.value)


def _resolve(division: str, **changes):
    return resolve_hyperparameters(NAME, {NAME: changes}, division, "6.1.0")


@pytest.mark.parametrize("changes, message", [
    (STAND_IN, r'model: "stand-in" is not the reference\'s "llama2-70b".*model must be the reference\'s'),
    ({"checkpoint": "/ckpt", "lora_rank": 8}, r'lora_rank: 8 logs lora_rank = 8, which .*closed_llama2_70b_lora.yaml.*'
                                               r'refuses: CHECK " v\[\'value\'\] == 16"'),
    ({"checkpoint": "/ckpt", "global_batch_size": 4, "micro_batch_size": 1},
     "global_batch_size: 4 has no reference convergence point for closed llama2_70b_lora.*RCPs at 8, 16, 32"),
    ({}, "checkpoint: null must name the folder of your Llama-2-70B checkpoint"),
])
def test_the_closed_division_refuses_what_its_rules_refuse(changes, message):
    with pytest.raises(ConfigError, match=message):
        _resolve("closed", **changes)


def test_the_closed_division_takes_the_reference_with_a_checkpoint_and_the_open_takes_the_stand_in():
    assert _resolve("closed", checkpoint="/ckpt").hyperparameters.lora_rank == 16
    assert _resolve("closed", checkpoint="/ckpt", global_batch_size=24).hyperparameters.global_batch_size == 24
    assert _resolve("open", **STAND_IN).hyperparameters.model == "stand-in"


def test_each_benchmark_is_held_to_the_round_its_rules_come_from():
    with pytest.raises(ConfigError, match="resnet was retired after training 4.0.0; set training.ruleset: 4.0.0"):
        check_training_ruleset({"training": {"ruleset": "6.1.0"}, "benchmarks": ["resnet"]})
    with pytest.raises(ConfigError, match="follows the rules of training 6.1.0.*set training.ruleset: 6.1.0"):
        check_training_ruleset({"training": {"ruleset": "4.0.0"}, "benchmarks": [NAME]})
    check_training_ruleset({"training": {"ruleset": "6.1.0"}, "benchmarks": [NAME, "digits"]})


def test_evaluations_follow_the_sample_cadence_and_end_at_the_last_step():
    hp = _resolve("open", **STAND_IN).hyperparameters
    assert eval_points(hp) == [160, 240, 320, 400, 480, 560, 640, 720, 800]
    reference = registry.get(NAME).hyperparameters
    points = eval_points(reference)
    assert points[:3] == [1536, 1920, 2304] and points[-1] == 1024 * 8


def test_the_schedule_counts_optimizer_steps_not_forward_passes():
    from benchpipe.benchmarks.llama.benchmark import StepCosine

    schedule = StepCosine(0.02, 100, 4)
    assert float(schedule(0)) == float(schedule(3)) == pytest.approx(0.02)
    assert float(schedule(200)) == pytest.approx(0.01, rel=1e-5)  # pass 200 is step 50 of 100: half way


@pytest.fixture(scope="module")
def stand_in_run(tmp_path_factory):
    """One run of the .test suite's stand-in on the generated corpus: (run folder, benchmark)."""
    from benchpipe.train.harness import Submission, train_run

    root = tmp_path_factory.mktemp("llama")
    files = write_corpus(root / "corpus")
    bench = registry.get(NAME)
    sources = override_sources(NAME, bench.sources, {n: {"urls": [p.as_uri()], "sha256": sha256_file(p)}
                                                      for n, p in files.items()})
    prepare(dataclasses.replace(bench, sources=sources), root / "data", root / "cache")
    used = _resolve("open", **STAND_IN)
    outcome = train_run(used, root / "data", root / "run_0", seed=3, threads=2,
                        submission=Submission("benchpipe", "local-cpu", "open", "research"))
    return root / "run_0", outcome


def test_a_stand_in_run_learns_and_logs_in_samples(stand_in_run):
    run_dir, outcome = stand_in_run
    events = parse_mllog(run_dir / "mllog.txt")
    losses = [e.value for e in events if e.key == "eval_accuracy"]
    assert outcome.status == "success" and losses[-1] <= 0.925 < losses[0]
    assert all(e.metadata["samples_count"] % 8 == 0 for e in events if e.key in ("eval_accuracy", "block_stop"))
    stop = next(e for e in events if e.key == "run_stop")
    assert stop.metadata == {**stop.metadata, "status": "success", "samples_count": outcome.epochs * 8}
    logged = {e.key: e.value for e in events}
    assert logged["gradient_accumulation_steps"] == 2 and logged["micro_batch_size"] == 4
    assert logged["lowest_numerical_precision_in_linear"] == "fp32" and logged["tensor_parallelism"] == 1
    assert not (run_dir / "model").exists()  # nothing serves a training-only benchmark's model


@pytest.mark.parametrize("division", ["open", "closed"])
def test_the_official_compliance_checker_passes_the_log_in_either_division(stand_in_run, tmp_path, division):
    """Open rules entirely; closed ones too, the stand-in having reached the loss target: the model
    (which no log shows) is what the closed division refuses, before any job."""
    text = (stand_in_run[0] / "mllog.txt").read_text()
    log = tmp_path / "result_0.txt"
    log.write_text(text.replace('"submission_division", "value": "open"', f'"submission_division", "value": "{division}"'))
    result = run_compliance_checker(log, training_rules_file("common.yaml", "6.1.0"), tmp_path / "out.log",
                                    ruleset="6.1.0")
    assert result.passed, result.output[-3000:]
    assert f"training_6.1.0/{division}_llama2_70b_lora.yaml" in result.output


def test_the_log_of_a_run_that_misses_the_target_fails_the_closed_quality_rule(stand_in_run, tmp_path):
    lines = [l for l in (stand_in_run[0] / "mllog.txt").read_text().splitlines()]
    raised = [json.loads(l.split(":::MLLOG ", 1)[1]) for l in lines]
    for record in raised:
        if record["key"] == "eval_accuracy":
            record["value"] = 1.5
        if record["key"] == "submission_division":
            record["value"] = "closed"
    log = tmp_path / "result_0.txt"
    log.write_text("".join(f":::MLLOG {json.dumps(r)}\n" for r in raised))
    result = run_compliance_checker(log, training_rules_file("common.yaml", "6.1.0"), tmp_path / "out.log",
                                    ruleset="6.1.0")
    assert not result.passed and "0.925" in result.output


def test_rows_of_different_lengths_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [[1, 4, 9, 2, 5, 3], [1, 4, 9, 2, 5]]
    path = tmp_path / govreport.EVAL_FILE
    pq.write_table(pa.table({"input_ids": rows, "labels": rows, "attention_mask": [[1] * len(r) for r in rows]}), path)
    with pytest.raises(DatasetError, match=r"column input_ids: rows of different lengths \(\[5, 6\]\)"):
        govreport.read_split(path)
