"""The mnist plug-in: its download through the real CLI from a local server, its checks, its model."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from http_server import Served

from benchpipe.benchmarks.mnist import ORIGIN, RAW_FILE, SHA256, SIZE, preprocess
from benchpipe.contracts import registry
from benchpipe.contracts.errors import DatasetError
from benchpipe.datasets.prepare import load_split, read_manifest

MNIST = registry.get("mnist")
TRAIN, TEST = 600, 100  # the published file has 60000 and 10000


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random images and labels in the published file's layout and dtypes."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(TRAIN, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=TRAIN, dtype=np.uint8),
        "x_test": rng.integers(0, 256, size=(TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=TEST, dtype=np.uint8),
    }


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _sources_json(urls: list[str], data: bytes) -> str:
    return json.dumps({RAW_FILE: {"urls": urls, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}})


def _prepare(out: Path, cache: Path, sources_json: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchpipe.cli", "datasets", "prepare", "--benchmark", "mnist",
         "--out", str(out), "--cache-dir", str(cache), "--sources-json", sources_json],
        env=env, capture_output=True, text=True, timeout=120,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("benchpipe datasets: error:")]


@pytest.fixture(scope="module")
def served_arrays() -> dict[str, np.ndarray]:
    return _arrays()


def test_declared_source_is_the_keras_file_over_https():
    (source,) = MNIST.sources
    assert source.name == RAW_FILE and source.url == ORIGIN
    assert all(url.startswith("https://") for url in source.urls) and len(source.urls) == 2
    assert source.sha256 == SHA256 and source.size == SIZE == 11_490_434
    # The pin is Keras's own: read from its source without importing TensorFlow.
    keras_dir = Path(importlib.util.find_spec("keras").origin).parent
    keras_loader = (keras_dir / "src" / "datasets" / "mnist.py").read_text()
    assert SHA256 in keras_loader and ORIGIN.rsplit("/", 1)[0] in keras_loader


def test_download_prepares_verified_shards(served: Served, served_arrays, tmp_path, cli_env):
    data = _npz(served_arrays)
    served.state.data = data
    out = tmp_path / "data" / "mnist"
    proc = _prepare(out, tmp_path / "cache", _sources_json([served.url], data), cli_env)
    assert proc.returncode == 0, proc.stderr
    assert f"prepared mnist: {TRAIN} train, {TEST} eval samples" in proc.stderr

    manifest = read_manifest(out)
    assert manifest["benchmark"] == "mnist" and manifest["sample_shape"] == [28, 28, 1]
    assert manifest["sources"] == [{"name": RAW_FILE, "url": served.url, "path": f"raw/{RAW_FILE}",
                                    "sha256": hashlib.sha256(data).hexdigest()}]
    assert (out / "raw" / RAW_FILE).read_bytes() == data
    rows = {s: sum(e["rows"] for e in manifest["shards"] if e["split"] == s) for s in ("train", "eval")}
    assert rows == {"train": TRAIN, "eval": TEST}

    train, evaluation = load_split(out, "train"), load_split(out, "eval")
    for split, x, y, first_id in ((train, "x_train", "y_train", 0), (evaluation, "x_test", "y_test", TRAIN)):
        assert split.features.shape[1:] == (28, 28, 1) and split.features.dtype == np.float32
        np.testing.assert_array_equal(split.features[..., 0], served_arrays[x].astype(np.float32) / 255.0)
        np.testing.assert_array_equal(split.labels, served_arrays[y])
        np.testing.assert_array_equal(split.ids, np.arange(first_id, first_id + len(served_arrays[y])))


def test_second_mirror_serves_when_the_first_has_other_bytes(served: Served, mirror: Served, served_arrays,
                                                             tmp_path, cli_env):
    data = _npz(served_arrays)
    # Same length, one byte changed: only the sha256 can tell.
    served.state.data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
    mirror.state.data = data
    out = tmp_path / "mnist"
    proc = _prepare(out, tmp_path / "cache", _sources_json([served.url, mirror.url], data), cli_env)
    assert proc.returncode == 0, proc.stderr
    assert served.state.requests == 1 and mirror.state.requests == 1
    assert "trying the next mirror" in proc.stderr
    assert (out / "raw" / RAW_FILE).read_bytes() == data
    assert len(load_split(out, "eval").labels) == TEST


def _without(arrays: dict[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if k != key}


def _with(arrays: dict[str, np.ndarray], key: str, value: np.ndarray) -> dict[str, np.ndarray]:
    return {**arrays, key: value}


BASE = _arrays(1)
MALFORMED = {
    "missing key": (_without(BASE, "y_test"), "key 'y_test' is missing"),
    "float images": (_with(BASE, "x_train", BASE["x_train"].astype(np.float32)),
                     "key 'x_train': dtype must be uint8, found float32"),
    "label 10": (_with(BASE, "y_train", np.where(np.arange(TRAIN) == 7, 10, BASE["y_train"]).astype(np.uint8)),
                 "key 'y_train': labels must be 0..9, found 10"),
    "wrong image size": (_with(BASE, "x_test", np.zeros((TEST, 32, 32), np.uint8)),
                         "key 'x_test': shape must be (N, 28, 28)"),
    "labels not matching images": (_with(BASE, "y_test", BASE["y_test"][:-1]),
                                   f"key 'y_test': shape must be ({TEST},) to match the images"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file_fails_with_one_line_naming_file_and_key(case, served: Served, tmp_path, cli_env):
    arrays, expected = MALFORMED[case]
    data = _npz(arrays)
    served.state.data = data
    out = tmp_path / "mnist"
    proc = _prepare(out, tmp_path / "cache", _sources_json([served.url], data), cli_env)
    assert proc.returncode == 1
    (line,) = _error_lines(proc.stderr)
    assert f"mnist: raw/{RAW_FILE}: " in line and expected in line, line
    assert ".partial" not in line, "names a temporary path that no longer exists"
    assert not out.exists()


def test_non_npz_and_pickled_arrays_are_refused(tmp_path):
    raw = tmp_path / RAW_FILE
    raw.write_bytes(b"not a zip archive at all")
    with pytest.raises(DatasetError, match=r"mnist.npz: cannot read as .npz"):
        preprocess(tmp_path)

    buffer = io.BytesIO()
    np.save(buffer, BASE["x_train"])
    raw.write_bytes(buffer.getvalue())
    with pytest.raises(DatasetError, match=r"mnist.npz: not an .npz archive of named arrays"):
        preprocess(tmp_path)

    # An object array would run code from the file when unpickled: it is never loaded.
    labels = np.empty(TRAIN, dtype=object)
    labels[:] = list(BASE["y_train"])
    raw.write_bytes(_npz(_with(BASE, "y_train", labels)))
    with pytest.raises(DatasetError, match=r"mnist.npz: key 'y_train': cannot read the array: .*pickle"):
        preprocess(tmp_path)


def test_preprocessing_is_deterministic(tmp_path):
    (tmp_path / RAW_FILE).write_bytes(_npz(BASE))
    (train_a, eval_a), (train_b, eval_b) = preprocess(tmp_path), preprocess(tmp_path)
    for a, b in ((train_a, train_b), (eval_a, eval_b)):
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.ids, b.ids)
    assert set(train_a.ids).isdisjoint(eval_a.ids)
    assert 0.0 <= train_a.features.min() and train_a.features.max() <= 1.0


@pytest.mark.slow
def test_model_maps_images_to_ten_logits():
    from benchpipe.train.harness import configure_tensorflow

    # TensorFlow's thread pools are fixed by the first op: set them as the training runs do.
    configure_tensorflow(seed=0, threads=2)
    model = MNIST.build_model()
    assert tuple(model.input_shape) == (None, 28, 28, 1)
    assert tuple(model.output_shape) == (None, 10)
    assert model.predict_on_batch(np.zeros((3, 28, 28, 1), np.float32)).shape == (3, 10)


@pytest.mark.slow
def test_short_training_run_is_logged_and_compliant(served: Served, served_arrays, tmp_path, cli_env):
    from benchpipe.mlcommons.checkers import run_compliance_checker
    from benchpipe.results.mllog_parser import parse_mllog, read_run
    from benchpipe.train.harness import Submission, train_run

    data = _npz(served_arrays)
    served.state.data = data
    data_dir = tmp_path / "data" / "mnist"
    assert _prepare(data_dir, tmp_path / "cache", _sources_json([served.url], data), cli_env).returncode == 0

    out = tmp_path / "run_0"
    outcome = train_run(MNIST, data_dir, out, seed=5, threads=2, max_epochs=1,
                        submission=Submission("benchpipe", "local-cpu", "closed", "research"))
    # Random labels: nothing to learn, so one epoch ends below the target and says so.
    assert outcome.status == "aborted" and outcome.epochs == 1
    assert outcome.best_accuracy < MNIST.quality_target
    run = read_run(out)
    assert run.status == "aborted" and run.seed == 5 and run.time_to_train_min is None
    values = {e.key: e.value for e in parse_mllog(out / "mllog.txt")}
    assert values["submission_benchmark"] == "mnist"
    assert values["train_samples"] == TRAIN and values["eval_samples"] == TEST
    assert values["global_batch_size"] == MNIST.hyperparameters.global_batch_size
    assert (out / "model" / "saved_model.pb").is_file()
    # The benchmark's own rules accept an honest aborted log.
    result = run_compliance_checker(out / "mllog.txt", MNIST.rules_file, tmp_path / "cc.log")
    assert result.passed, result.output
