"""The served model as LiteRT (benchpipe.mobile.convert): fp32 and full-integer int8 .tflite, the
conversion record, and the int8 calibration set drawn from the training split only."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchpipe.contracts.errors import BenchpipeError, InferenceError
from benchpipe.infer.litert import LiteRTPredictor
from benchpipe.mobile.convert import (
    CONVERSION,
    TFLITE,
    Conversion,
    Representative,
    check_model,
    convert,
    read_conversion,
    representative_rows,
)

pytestmark = pytest.mark.slow  # trains and converts a (tiny) Keras model

SHAPE = (8, 8, 1)
CLASSES = 10


def left_nothing(out: Path) -> bool:
    """Neither ``out`` nor a partial of it (contracts.atomic) exists."""
    return not out.exists() and not list(out.parent.glob(f".{out.name}.partial-*"))


def write_dataset(out: Path, train_ids: list[int], eval_ids: list[int], seed: int = 0) -> Path:
    """A prepared dataset folder as `benchpipe datasets prepare` writes it, from random samples."""
    from benchpipe.contracts.benchmark import Split
    from benchpipe.contracts.hashing import sha256_file
    from benchpipe.datasets.prepare import MANIFEST, _write_shards

    rng = np.random.default_rng(seed)
    (out / "shards").mkdir(parents=True)
    shards = []
    for name, ids in (("train", train_ids), ("eval", eval_ids)):
        split = Split(rng.random((len(ids), *SHAPE), dtype=np.float32),
                      rng.integers(0, CLASSES, len(ids)).astype(np.int32), np.asarray(ids, np.int32))
        shards += _write_shards(name, split, out / "shards")
    for entry in shards:
        entry["sha256"] = sha256_file(out / entry["path"])
    manifest = {"benchmark": "tiny", "sources": [], "sample_shape": list(SHAPE), "shards": shards}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> SimpleNamespace:
    """digits prepared (scikit-learn's bundled copy: no network), a tiny Keras model fit on its
    training split and exported as a SavedModel, converted once at each precision."""
    import keras

    from benchpipe.contracts import registry
    from benchpipe.datasets.prepare import load_split, prepare

    root = tmp_path_factory.mktemp("mobile-convert")
    data = root / "digits"
    prepare(registry.get("digits"), data, root / "cache")
    train, evaluation = load_split(data, "train"), load_split(data, "eval")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(CLASSES)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train.features, train.labels, epochs=8, batch_size=32, verbose=0)
    saved = root / "saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    sha = hashlib.sha256((saved / "saved_model.pb").read_bytes()).hexdigest()

    fp32 = convert(saved, sha, data, "fp32", root / "fp32")
    int8 = convert(saved, sha, data, "int8", root / "int8", representative_samples=20, seed=3)
    return SimpleNamespace(root=root, data=data, train=train, eval=evaluation, keras=model, saved=saved, sha=sha,
                           fp32=fp32, int8=int8, fp32_dir=root / "fp32", int8_dir=root / "int8")


def test_digits_splits_are_disjoint(setup):
    assert setup.train.features.shape[1:] == SHAPE and setup.train.features.dtype == np.float32
    assert len(setup.train.ids) > 1000 and len(setup.eval.ids) > 300
    assert not set(setup.train.ids.tolist()) & set(setup.eval.ids.tolist())


def test_fp32_record(setup):
    import tensorflow as tf

    from benchpipe import provenance
    from benchpipe.contracts.hashing import sha256_file

    out = setup.fp32_dir
    assert (out / TFLITE).is_file() and (out / CONVERSION).is_file()
    content = (out / TFLITE).read_bytes()
    assert setup.fp32 == Conversion(
        precision="fp32", converter="tf.lite.TFLiteConverter", tensorflow_version=tf.__version__,
        options={"from": "saved_model", "signature": "serving_default"}, source_model=str(setup.saved),
        source_sha256=setup.sha, tflite_sha256=hashlib.sha256(content).hexdigest(), tflite_bytes=len(content),
        representative=None,
    )
    assert read_conversion(out) == setup.fp32
    on_disk = json.loads((out / CONVERSION).read_text())
    assert on_disk["representative"] is None and on_disk["precision"] == "fp32"
    assert provenance.read(out)["dataset_manifest_sha256"] == sha256_file(setup.data / "manifest.json")


def test_fp32_model_answers_as_keras(setup):
    predictor = LiteRTPredictor(setup.fp32_dir / TFLITE, SHAPE, [64])
    assert predictor.input.dtype == "float32"
    expected = np.argmax(np.asarray(setup.keras(setup.eval.features)), axis=1)
    assert (predictor(setup.eval.features) == expected).mean() >= 0.99
    assert (expected == setup.eval.labels).mean() > 0.5  # the model learned something


def test_int8_representative_from_train_only(setup):
    rep = setup.int8.representative
    assert (rep.split, rep.seed, rep.count, rep.eval_overlap) == ("train", 3, 20, 0)
    assert len(rep.ids) == len(set(rep.ids)) == 20
    assert set(rep.ids) <= set(setup.train.ids.tolist())
    assert not set(rep.ids) & set(setup.eval.ids.tolist())
    assert read_conversion(setup.int8_dir) == setup.int8
    assert json.loads((setup.int8_dir / CONVERSION).read_text())["representative"]["ids"] == rep.ids


def test_int8_record(setup):
    record = setup.int8
    content = (setup.int8_dir / TFLITE).read_bytes()
    assert (record.precision, record.source_sha256, record.source_model) == ("int8", setup.sha, str(setup.saved))
    assert record.tflite_sha256 == hashlib.sha256(content).hexdigest() and record.tflite_bytes == len(content)
    assert record.options == {"from": "saved_model", "signature": "serving_default", "optimizations": ["DEFAULT"],
                              "supported_ops": ["TFLITE_BUILTINS_INT8"], "inference_input_type": "int8",
                              "inference_output_type": "int8"}
    assert record.tflite_bytes < setup.fp32.tflite_bytes


def test_representative_rows_seeded(setup):
    rows, rep = representative_rows(setup.data, 20, 3)
    assert rep == setup.int8.representative  # the same seed, the same samples
    position = {int(i): k for k, i in enumerate(setup.train.ids)}
    np.testing.assert_array_equal(rows, setup.train.features[[position[i] for i in rep.ids]])
    assert rows.dtype == np.float32 and rows.shape == (20, *SHAPE)
    _, other = representative_rows(setup.data, 20, 4)
    assert other.ids != rep.ids and other.seed == 4


def test_representative_rows_capped_and_checked(setup):
    rows, rep = representative_rows(setup.data, 10**6, 0)
    assert rep.count == len(rep.ids) == len(setup.train.ids) == len(rows)
    with pytest.raises(InferenceError, match="at least 1, not 0"):
        representative_rows(setup.data, 0, 0)


def test_int8_model_takes_int8(setup):
    predictor = LiteRTPredictor(setup.int8_dir / TFLITE, SHAPE, [64])
    assert predictor.input.dtype == "int8" and predictor.input.scale > 0
    assert predictor.output.dtype == "int8" and predictor.output.scale > 0


def test_int8_agrees_with_fp32(setup):
    fp32 = LiteRTPredictor(setup.fp32_dir / TFLITE, SHAPE, [64])(setup.eval.features)
    int8 = LiteRTPredictor(setup.int8_dir / TFLITE, SHAPE, [64])(setup.eval.features)
    assert (int8 == fp32).mean() >= 0.9


def test_shared_id_refused(setup, tmp_path):
    data = write_dataset(tmp_path / "shared-id", train_ids=list(range(10)), eval_ids=list(range(9, 15)))
    out = tmp_path / "out"
    # Every training row is picked (more asked for than there are), so id 9 is among them.
    with pytest.raises(InferenceError) as caught:
        convert(setup.saved, setup.sha, data, "int8", out, representative_samples=50, seed=0)
    message = str(caught.value)
    assert str(data) in message and "[9]" in message and "evaluation split" in message
    assert left_nothing(out)


def test_disjoint_tiny_dataset_accepted(tmp_path):
    data = write_dataset(tmp_path / "tiny", train_ids=list(range(100, 110)), eval_ids=list(range(10)))
    rows, rep = representative_rows(data, 4, 1)
    assert rep.split == "train" and rep.count == 4 and set(rep.ids) <= set(range(100, 110))
    assert rep == Representative("train", 1, 4, rep.ids, 0) and rows.shape == (4, *SHAPE)


def test_dataset_without_eval_split(setup, tmp_path):
    data = write_dataset(tmp_path / "no-eval", train_ids=list(range(10)), eval_ids=[])
    with pytest.raises(InferenceError, match="no 'eval' split"):
        representative_rows(data, 4, 0)


def test_check_model(setup, tmp_path):
    copy = tmp_path / "fp32"
    shutil.copytree(setup.fp32_dir, copy)
    path, record = check_model(copy)
    assert path == copy / TFLITE and record == setup.fp32

    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    changed = hashlib.sha256(bytes(content)).hexdigest()
    with pytest.raises(InferenceError, match=re.escape(str(path)) + f".*{changed}.*{setup.fp32.tflite_sha256}"):
        check_model(copy)

    path.unlink()
    with pytest.raises(BenchpipeError, match=re.escape(str(path)) + ": missing"):
        check_model(copy)
    (copy / CONVERSION).unlink()
    with pytest.raises(InferenceError, match="cannot read the conversion record"):
        check_model(copy)


def test_bad_precision(setup, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InferenceError, match="precision 'fp16' is not one of fp32, int8"):
        convert(setup.saved, setup.sha, setup.data, "fp16", out)
    assert left_nothing(out)


def test_missing_saved_model(setup, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InferenceError, match=re.escape(str(tmp_path / "nowhere")) + ".*cannot read the SavedModel"):
        convert(tmp_path / "nowhere", setup.sha, setup.data, "fp32", out)
    assert left_nothing(out)
