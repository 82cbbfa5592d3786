import dataclasses
import gzip
import shutil

import numpy as np
import pytest

from benchpipe.benchmarks.digits import preprocess
from benchpipe.contracts import registry
from benchpipe.contracts.errors import DatasetError
from benchpipe.datasets.prepare import load_split, prepare, read_manifest


def test_digits_split_is_fixed_and_complete(digits_data):
    train = load_split(digits_data, "train")
    evaluation = load_split(digits_data, "eval")
    assert len(train.labels) + len(evaluation.labels) == 1797
    assert len(evaluation.labels) == 360
    assert set(train.ids).isdisjoint(evaluation.ids)
    assert (evaluation.ids % 5 == 0).all()
    assert train.features.shape[1:] == (8, 8, 1) and train.features.dtype == np.float32
    assert 0.0 <= train.features.min() and train.features.max() <= 1.0
    assert set(np.unique(train.labels)) == set(range(10))


def test_manifest_records_source_and_shard_hashes(digits_data):
    manifest = read_manifest(digits_data)
    source = manifest["sources"][0]
    assert source["sha256"] == registry.get("digits").sources[0].sha256
    assert (digits_data / source["path"]).is_file()
    assert sum(s["rows"] for s in manifest["shards"]) == 1797
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])


def test_preprocessing_is_deterministic(digits_data, tmp_path):
    again = tmp_path / "digits"
    prepare(registry.get("digits"), again)
    assert read_manifest(again) == read_manifest(digits_data)


def test_tampered_shard_is_refused(digits_data, tmp_path):
    copy = tmp_path / "digits"
    shutil.copytree(digits_data, copy)
    shard = copy / read_manifest(copy)["shards"][0]["path"]
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DatasetError, match=r"train-00000.parquet: sha256 .* does not match"):
        load_split(copy, "train")


def test_bad_csv_line_is_named(tmp_path):
    (tmp_path / "digits.csv.gz").write_bytes(gzip.compress(b"0,1,2\n"))
    with pytest.raises(DatasetError, match=r"digits.csv.gz: line 1: expected 65 values, found 3"):
        preprocess(tmp_path)


def test_failed_prepare_leaves_nothing(tmp_path):
    bench = registry.get("digits")

    def broken(raw_dir):
        raise DatasetError("boom")

    out = tmp_path / "digits"
    with pytest.raises(DatasetError, match="boom"):
        prepare(dataclasses.replace(bench, preprocess=broken), out, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_missing_manifest_says_what_to_run(tmp_path):
    with pytest.raises(DatasetError, match="run `benchpipe datasets prepare` first"):
        read_manifest(tmp_path)


def test_verified_download_is_kept_for_a_rerun(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    bench = registry.get("digits")
    out = tmp_path / "data" / "digits"
    prepare(bench, out)
    cached = tmp_path / "home-cache" / "benchpipe" / "sha256" / bench.sources[0].sha256
    assert cached.is_file()
    shutil.rmtree(out)  # what Snakemake does before re-running the job
    # The source is now unreachable; the verified copy in the cache is used instead, by
    # this benchmark or any other that names the same bytes, under any name.
    source = dataclasses.replace(bench.sources[0], url="http://127.0.0.1:9/digits.csv.gz")
    again = prepare(dataclasses.replace(bench, sources=(source,)), out)
    assert again["shards"] == read_manifest(out)["shards"]
    assert (out / "raw" / "digits.csv.gz").read_bytes() == cached.read_bytes()


def test_archive_source_is_verified_then_unpacked(tmp_path):
    import hashlib
    import io
    import tarfile

    bench = registry.get("digits")
    prepare(bench, tmp_path / "seed" / "digits")
    payload = (tmp_path / "seed" / "digits" / "raw" / "digits.csv.gz").read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("digits.csv.gz")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    cache = tmp_path / "cache"
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    (cache / "sha256").mkdir(parents=True)
    (cache / "sha256" / digest).write_bytes(buffer.getvalue())
    source = dataclasses.replace(bench.sources[0], name="digits.tar.gz", url="http://127.0.0.1:9/digits.tar.gz",
                                 sha256=digest)
    archived = dataclasses.replace(bench, sources=(source,), preprocess=lambda raw: preprocess(raw / "digits"))
    manifest = prepare(archived, tmp_path / "digits", cache_dir=cache)
    assert manifest["sources"][0]["unpacked"] == "raw/digits"
    assert (tmp_path / "digits" / "raw" / "digits" / "digits.csv.gz").read_bytes() == payload
    # The same bytes, archived: the same shards.
    assert manifest["shards"] == read_manifest(tmp_path / "seed" / "digits")["shards"]


def _digits_bytes() -> bytes:
    import importlib.resources

    return importlib.resources.files("sklearn.datasets").joinpath("data/digits.csv.gz").read_bytes()


def _tree_hashes(root):
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_killed_at_random_points_then_rerun_gives_the_clean_result(served, tmp_path, cli_env):
    """SIGKILL mid-download or mid-preprocessing; the same command then finishes the job."""
    import json
    import os
    import random
    import signal
    import subprocess
    import time

    from benchpipe.contracts.hashing import sha256_file

    data = _digits_bytes()
    served.state.data = data
    served.state.default = "slow"  # about 0.6 s of download, after 0.5 s of start-up
    served.state.slow_piece, served.state.slow_delay = 2048, 0.02
    sources = json.dumps({"digits.csv.gz": {"urls": [served.url]}})

    def prepare_cmd(out, cache):
        return ["benchpipe", "datasets", "prepare", "--benchmark", "digits", "--out", str(out),
                "--cache-dir", str(cache), "--sources-json", sources]

    clean = tmp_path / "clean"
    subprocess.run(prepare_cmd(clean / "digits", clean / "cache"), env=cli_env, check=True, capture_output=True)
    expected = _tree_hashes(clean / "digits")

    out, cache = tmp_path / "work" / "digits", tmp_path / "work" / "cache"
    rng = random.Random(2026)
    # Start-up, download, preprocessing: each attempt starts over, so early kills keep
    # landing in the download until one gets past it.
    for delay in [rng.uniform(0.3, 1.0) for _ in range(3)] + [rng.uniform(1.0, 1.6)]:
        proc = subprocess.Popen(prepare_cmd(out, cache), env=cli_env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # Whatever survived a kill is complete and verified, or absent.
        if out.exists():
            assert _tree_hashes(out) == expected
        for entry in (cache / "sha256").glob("[0-9a-f]*"):
            assert sha256_file(entry) == entry.name
    subprocess.run(prepare_cmd(out, cache), env=cli_env, check=True, capture_output=True)
    assert _tree_hashes(out) == expected

    # A second checkout with the same cache downloads nothing.
    requests = served.state.requests
    subprocess.run(prepare_cmd(tmp_path / "checkout2" / "digits", cache), env=cli_env, check=True,
                   capture_output=True)
    assert served.state.requests == requests
    assert _tree_hashes(tmp_path / "checkout2" / "digits") == expected


# --- A benchmark that prepares its own folder (an LLM's prompts) ---------------------------------


def test_a_benchmark_with_its_own_preparation_gets_the_sources_and_the_cache(tmp_path):
    calls = []

    def own(sources, out_dir, cache_dir, *, offline):
        calls.append((sources, out_dir, cache_dir, offline))
        return {"benchmark": "own", "shards": []}

    bench = dataclasses.replace(registry.get("llama31_8b"), prepare_dataset=own)
    manifest = prepare(bench, tmp_path / "out", tmp_path / "cache", offline=True)
    assert manifest == {"benchmark": "own", "shards": []}
    assert calls == [(bench.sources, tmp_path / "out", tmp_path / "cache", True)]
    assert not (tmp_path / "out").exists()  # the Splits path wrote nothing of its own


def test_llm_data_is_prepared_from_the_configured_sources(tmp_path, capsys):
    import json

    from benchpipe.benchmarks.llama.cnndm_stand_in import StandInShape, write_stand_in
    from benchpipe.cli import main
    from benchpipe.contracts.hashing import sha256_file

    written = write_stand_in(tmp_path / "stand-in", shape=StandInShape(records=12), seed=1)
    overrides = {name: {"urls": [f"file://{path.resolve()}"], "sha256": sha256_file(path)}
                 for name, path in written.items()}
    out = tmp_path / "data" / "llama31_8b_edge"
    assert main(["datasets", "prepare", "--benchmark", "llama31_8b_edge", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--sources-json", json.dumps(overrides)]) == 0
    manifest = read_manifest(out)
    assert manifest["benchmark"] == "llama3.1-8b-edge" and manifest["records"] == 12
    assert {s["name"]: s["sha256"] for s in manifest["sources"]} == {n: o["sha256"] for n, o in overrides.items()}
    # Another sha256 than the file's: the override is what the download is verified against.
    overrides["tokenizer.json"]["sha256"] = "0" * 64
    capsys.readouterr()
    assert main(["datasets", "prepare", "--benchmark", "llama31_8b_edge", "--out", str(tmp_path / "again"),
                 "--cache-dir", str(tmp_path / "cache"), "--sources-json", json.dumps(overrides)]) == 1
    assert f"source 'tokenizer.json' from {overrides['tokenizer.json']['urls'][0]}: sha256 mismatch: expected " \
           f"{'0' * 64}" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()
