"""Provenance's config_sha256: what a job records, and that an auditor recomputes it from the tree."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from benchpipe import provenance
from benchpipe.contracts.errors import ParseError, RuntimeSetupError
from benchpipe.package.files import dump_json


def recomputed(config_json: Path, kind: str) -> str:
    """The hash as the provenance docstring tells an auditor to compute it, without benchpipe."""
    data = json.loads(config_json.read_text())
    sections = {"train": ("containers", "submission", "training"), "infer": ("containers", "inference", "submission"),
                "mobile": ("containers", "mobile", "submission")}
    part = {k: data.get(k) for k in sections[kind]}
    return hashlib.sha256(json.dumps(part, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_the_hash_is_recomputed_from_the_config_file_packaging_writes(tmp_path):
    settings = {"submission": {"round": "ci", "submitter": "Ünïcode Org"}, "inference": {"min_duration_ms": 1000},
                "training": {"seed": 11, "lr": 0.1}, "benchmarks": ["digits"], "containers": {"base_image": "b"}}
    dump_json(tmp_path / "config.json", settings)  # as `benchpipe package` writes benchpipe/config.json
    for kind in ("train", "infer"):
        assert provenance.config_sha256(settings, kind) == recomputed(tmp_path / "config.json", kind)
    train, infer = provenance.config_sha256(settings, "train"), provenance.config_sha256(settings, "infer")
    # Key order and whitespace do not count; a value of the job's sections does, and only those.
    assert provenance.config_sha256(dict(reversed(list(settings.items()))), "train") == train
    more_inference = dict(settings, inference={"min_duration_ms": 2000})
    assert provenance.config_sha256(more_inference, "train") == train
    assert provenance.config_sha256(more_inference, "infer") != infer
    assert provenance.config_sha256(dict(settings, training={"seed": 12, "lr": 0.1}), "train") != train
    assert provenance.config_sha256(dict(settings, benchmarks=["mnist"]), "infer") == infer
    assert [provenance.job_kind(j) for j in ("train/run_0", "infer/Server/TEST01", "calibrate/Server")] == [
        "train", "infer", "infer"]


def test_a_job_records_the_hash_the_workflow_hands_it(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCHPIPE_PROVENANCE", raising=False)
    monkeypatch.delenv(provenance.CONFIG_SHA256_ENV, raising=False)
    assert provenance.write(tmp_path)["config_sha256"] is None  # by hand, outside the workflow: no config
    monkeypatch.setenv(provenance.CONFIG_SHA256_ENV, "a" * 64)
    provenance.write(tmp_path)
    assert provenance.read(tmp_path)["config_sha256"] == "a" * 64
    monkeypatch.setenv(provenance.CONFIG_SHA256_ENV, "not-a-hash")
    with pytest.raises(RuntimeSetupError, match="BENCHPIPE_CONFIG_SHA256='not-a-hash': not a sha256"):
        provenance.write(tmp_path)


def test_a_provenance_file_without_the_hash_is_refused_by_name(tmp_path):
    old = {key: None for key in provenance.FIELDS if key != "config_sha256"}
    (tmp_path / "provenance.json").write_text(json.dumps(old))
    with pytest.raises(ParseError, match=f"{tmp_path / 'provenance.json'}: missing key\\(s\\) config_sha256: "
                                         f"re-run the job that wrote {tmp_path}"):
        provenance.read(tmp_path)


def test_every_result_of_the_workflows_tree_names_its_config(submitted):
    tree = submitted / "submissions" / "ci"
    rows = pq.read_table(tree / "benchpipe" / "tables" / "provenance").to_pylist()
    assert len(rows) == 3 + 16 + 4 + 2  # runs, LoadGen tests, digits' and the supplied model's Mobile runs
    config = tree / "benchpipe" / "config.json"
    for row in rows:
        assert row["config_sha256"] == recomputed(config, row["job"].split("/")[0]), row["job"]
    assert len({r["config_sha256"] for r in rows}) == 3  # one each for training, inference and Mobile


def test_a_job_records_the_slurm_job_it_ran_in(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCHPIPE_PROVENANCE", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert provenance.write(tmp_path)["slurm_job_id"] is None  # outside SLURM
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    provenance.write(tmp_path)
    assert provenance.read(tmp_path)["slurm_job_id"] == "4711"
    monkeypatch.setenv("SLURM_JOB_ID", "47 11")
    with pytest.raises(RuntimeSetupError, match="SLURM_JOB_ID='47 11': not a SLURM job id"):
        provenance.write(tmp_path)
    # A file from before jobs ran on clusters reads as made outside SLURM; other keys stay required.
    older = {key: None for key in provenance.FIELDS if key != "slurm_job_id"}
    (tmp_path / "provenance.json").write_text(json.dumps(older))
    assert provenance.read(tmp_path)["slurm_job_id"] is None


def test_a_job_without_tensorflow_loaded_records_the_version_tensorflow_reports():
    # A Mobile run serves LiteRT and leaves TensorFlow unimported; its record must still say
    # what the imported module would, on a CPU or a CUDA build alike.
    script = ("import json, sys; from benchpipe import provenance; before = provenance._tensorflow();"
              " loaded = 'tensorflow' in sys.modules; import tensorflow as tf;"
              " build = tf.sysconfig.get_build_info();"
              " print(json.dumps([before, loaded, tf.__version__, build.get('cuda_version') or None]))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, loaded, version, cuda = json.loads(proc.stdout.splitlines()[-1])
    assert not loaded
    assert before == {"tensorflow_version": version, "tensorflow_cuda_build": cuda}
