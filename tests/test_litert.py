"""The LiteRT backend (benchpipe.infer.litert): LiteRTPredictor on a tiny fp32 .tflite, input quantization,
LiteRTOutputsPredictor's rows of outputs, and the delegate a target names."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchpipe.contracts.errors import ConfigError, InferenceError
from benchpipe.infer.litert import (
    DELEGATE_NAMES,
    DelegateSpec,
    LiteRTOutputsPredictor,
    LiteRTPredictor,
    TensorInfo,
    delegate_call,
    dequantize,
    interpreter,
    quantize,
)

pytestmark = pytest.mark.slow  # trains and converts a (tiny) Keras model

SHAPE = (8, 8, 1)
CLASSES = 10


def trained_model(seed: int):
    """Input 8x8x1, Flatten, Dense(16, relu), Dense(10): fit a few steps on seeded random data."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(CLASSES)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    model.fit(rng.random((256, *SHAPE), dtype=np.float32), rng.integers(0, CLASSES, 256), epochs=2, batch_size=32,
              verbose=0)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SimpleNamespace:
    """The Keras model, its fp32 .tflite, and 50 samples."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("litert")
    model = trained_model(seed=0)
    model.export(str(root / "saved_model"), format="tf_saved_model", verbose=False)
    tflite = root / "fp32.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(root / "saved_model")).convert())
    samples = np.random.default_rng(1).random((50, *SHAPE), dtype=np.float32)
    return SimpleNamespace(keras=model, tflite=tflite, samples=samples)


@pytest.fixture(scope="module")
def predictor(tiny) -> LiteRTPredictor:
    return LiteRTPredictor(tiny.tflite, SHAPE, [4, 1, 4])


def test_top1_matches_keras(tiny, predictor):
    expected = np.argmax(np.asarray(tiny.keras(tiny.samples)), axis=1)
    assert len(set(expected.tolist())) > 1  # a model that answers one class would prove little
    got = predictor(tiny.samples)
    assert got.dtype == np.int32 and got.shape == (50,)
    np.testing.assert_array_equal(got, expected)


def test_tensor_infos(predictor):
    assert predictor.input == TensorInfo(SHAPE, "float32", 0.0, 0)
    assert predictor.output == TensorInfo((CLASSES,), "float32", 0.0, 0)


def test_padding_and_chunking(tiny, predictor):
    assert predictor.batch_sizes == [1, 4]
    assert (predictor.padded_size(3), predictor.padded_size(9)) == (4, 4)
    x = tiny.samples[:9]
    one_by_one = np.concatenate([predictor(x[i:i + 1]) for i in range(9)])
    np.testing.assert_array_equal(predictor(x[:3]), one_by_one[:3])  # padded to 4
    np.testing.assert_array_equal(predictor(x), one_by_one)  # chunked as 4 + 4 + 1
    scores = predictor.raw_scores(x[:3])
    assert scores.shape == (3, CLASSES)
    np.testing.assert_allclose(scores, np.concatenate([predictor.raw_scores(x[i:i + 1]) for i in range(3)]),
                               rtol=1e-5, atol=1e-6)


def test_batch_seconds(predictor):
    assert set(predictor.batch_seconds) == {1, 4}
    assert all(seconds > 0 for seconds in predictor.batch_seconds.values())


def test_warm_up_runs(predictor):
    predictor.warm_up(0.01)  # returns; the interpreters still answer
    assert predictor(np.zeros((2, *SHAPE), np.float32)).shape == (2,)


def test_wrong_sample_shape(tiny):
    with pytest.raises(InferenceError, match=re.escape(str(tiny.tflite)) + r".*input shape \[8, 8, 1\].*\[64\]"):
        LiteRTPredictor(tiny.tflite, (64,), [1])


def test_missing_model(tmp_path):
    path = tmp_path / "nowhere.tflite"
    with pytest.raises(InferenceError, match=re.escape(str(path))):
        LiteRTPredictor(path, SHAPE, [1])


def test_not_a_model(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"not a flatbuffer" * 16)
    with pytest.raises(InferenceError, match=re.escape(str(path)) + ".*cannot load the model"):
        LiteRTPredictor(path, SHAPE, [1])


@pytest.mark.parametrize("sizes", [[], [0], [2, -1]])
def test_bad_batch_sizes(tiny, sizes):
    with pytest.raises(InferenceError, match="batch sizes must be positive"):
        LiteRTPredictor(tiny.tflite, SHAPE, sizes)


# --- quantize -----------------------------------------------------------------------------


def test_quantize_int8():
    info = TensorInfo((4,), "int8", 0.5, -10)
    batch = np.array([[0.0, 1.0, 0.26, -0.74], [100.0, -100.0, 68.5, -59.0]], np.float32)
    got = quantize(batch, info)
    assert got.dtype == np.int8
    # round(x / 0.5) - 10, clipped to [-128, 127]
    np.testing.assert_array_equal(got, [[-10, -8, -9, -11], [127, -128, 127, -128]])


def test_quantize_uint8_clips_to_its_range():
    got = quantize(np.array([[-5.0, 0.0, 1.0, 9.0]]), TensorInfo((4,), "uint8", 0.1, 3))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, [[0, 3, 13, 93]])


def test_quantize_float32_passes_through():
    batch = np.array([[0.123456789, -7.5]], dtype=np.float64)
    got = quantize(batch, TensorInfo((2,), "float32", 0.0, 0))
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, batch.astype(np.float32))


def test_quantize_without_scale():
    with pytest.raises(InferenceError, match="int8 input without quantization parameters"):
        quantize(np.zeros((1, 2), np.float32), TensorInfo((2,), "int8", 0.0, 0))


def test_tensor_info_of():
    detail = {"shape": np.array([1, 8, 8, 1]), "dtype": np.int8, "quantization": (0.25, -3)}
    assert TensorInfo.of(detail) == TensorInfo((8, 8, 1), "int8", 0.25, -3)


# --- delegates ----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, says", [
    ({"kind": "tpu"}, "litert.delegate 'tpu' is not one of cpu, gpu, nnapi, vendor"),
    ({"kind": "gpu"}, "gpu needs litert.delegate_path"),
    ({"kind": "vendor", "options": {"a": "b"}}, "vendor needs litert.delegate_path"),
    ({"kind": "cpu", "path": "/usr/lib/libx.so"}, "takes no delegate_path"),
    ({"kind": "cpu", "options": {"threads": "2"}}, "takes no delegate_path or delegate_options"),
])
def test_delegate_spec_refused(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        DelegateSpec(**kwargs)


def test_delegate_spec_names():
    assert DelegateSpec().kind == "cpu" and DelegateSpec().name == "XNNPACK"
    assert {kind: DelegateSpec(kind, None if kind in ("cpu", "nnapi") else "/x.so").name
            for kind in DELEGATE_NAMES} == {"cpu": "XNNPACK", "gpu": "GPU", "nnapi": "NNAPI", "vendor": "vendor"}


def test_delegate_call():
    assert delegate_call(DelegateSpec()) is None
    gpu = DelegateSpec("gpu", "/opt/lib/libtensorflowlite_gpu_delegate.so", {"precision_loss_allowed": 1})
    assert delegate_call(gpu) == ("/opt/lib/libtensorflowlite_gpu_delegate.so", {"precision_loss_allowed": "1"})
    vendor = DelegateSpec("vendor", "/vendor/libtflitebackend.so", {"accelerator": "npu", "cores": 2, "fast": True})
    assert delegate_call(vendor) == ("/vendor/libtflitebackend.so", {"accelerator": "npu", "cores": "2",
                                                                      "fast": "True"})
    assert delegate_call(DelegateSpec("gpu", "/g.so")) == ("/g.so", {})


def test_delegate_call_nnapi_needs_a_device():
    with pytest.raises(ConfigError, match="runtime adb"):
        delegate_call(DelegateSpec("nnapi"))


@pytest.mark.parametrize("kind", ["vendor", "gpu"])
def test_delegate_library_missing(tiny, tmp_path, kind):
    library = tmp_path / "libmissing.so"
    spec = DelegateSpec(kind, str(library))
    with pytest.raises(ConfigError, match=re.escape(f"where: litert.delegate_path {library}: no such file")):
        interpreter(tiny.tflite.read_bytes(), 1, spec, "where")
    with pytest.raises(ConfigError, match="litert.delegate_path"):
        LiteRTPredictor(tiny.tflite, SHAPE, [1], delegate=spec)


# ai_edge_litert's Delegate.__del__ trips over the half-built object it leaves when loading fails.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", ["vendor", "gpu"])
def test_delegate_library_not_a_library(tiny, tmp_path, kind):
    library = tmp_path / "libjunk.so"
    library.write_bytes(b"\x00not an ELF shared object\x00" * 8)
    with pytest.raises(InferenceError, match=re.escape(f"model.tflite: cannot load the {kind} delegate {library}")):
        interpreter(tiny.tflite.read_bytes(), 1, DelegateSpec(kind, str(library), {"k": "v"}), "model.tflite")


def test_interpreter_cpu(tiny):
    it = interpreter(tiny.tflite.read_bytes(), 0, DelegateSpec(), "where")  # threads below 1 run as 1
    (inp,) = it.get_input_details()
    assert list(inp["shape"]) == [1, *SHAPE]


def test_predictor_keeps_its_settings(tiny):
    p = LiteRTPredictor(str(tiny.tflite), [8, 8, 1], (1,), threads=2)
    assert isinstance(p.model_path, Path) and p.sample_shape == SHAPE
    assert (p.threads, p.delegate, p.max_batch) == (2, DelegateSpec(), 1)


# --- LiteRTOutputsPredictor: a task scored from the outputs themselves -----------------------


def converted(path: Path, fn, *specs) -> Path:
    import tensorflow as tf

    function = tf.function(fn, input_signature=list(specs))
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()],
                                                                     function).convert())
    return path


def test_outputs_predictor_answers_every_output_row_in_the_models_order(tmp_path):
    import tensorflow as tf

    spec = tf.TensorSpec([1, 6], tf.int32)
    model = converted(tmp_path / "two.tflite", lambda a, b: (tf.cast(a * 2, tf.float32), tf.cast(a + b, tf.float32)),
                      spec, spec)
    predictor = LiteRTOutputsPredictor(model)
    assert predictor.sample_shape == (2, 6) and predictor.response == ("<f4", (2, 6))
    assert predictor.batch_sizes == [1] and predictor.batch_seconds[1] > 0
    batch = np.stack([np.stack([np.arange(6), np.full(6, 10)]), np.stack([np.ones(6), np.zeros(6)])]).astype(np.int32)
    answers = predictor(batch)
    assert answers.dtype == np.float32 and answers.shape == (2, 2, 6)
    np.testing.assert_array_equal(answers[0], [np.arange(6) * 2, np.arange(6) + 10])
    np.testing.assert_array_equal(answers[1], [np.full(6, 2), np.ones(6)])


def test_outputs_predictor_refuses_inputs_of_different_shapes_and_batches_above_one(tmp_path):
    import tensorflow as tf

    mixed = converted(tmp_path / "mixed.tflite", lambda a, b: tf.reduce_sum(a) + tf.reduce_sum(b) + tf.zeros([1, 3]),
                      tf.TensorSpec([1, 4], tf.float32), tf.TensorSpec([1, 5], tf.float32))
    with pytest.raises(InferenceError, match=re.escape(f"{mixed}: inputs [[4], [5]] and outputs [[3]]: each must "
                                                       "share one shape")):
        LiteRTOutputsPredictor(mixed)
    batched = converted(tmp_path / "batched.tflite", lambda a: a * 2, tf.TensorSpec([2, 4], tf.float32))
    with pytest.raises(InferenceError, match="takes batches of 2; these tasks run one sample at a time"):
        LiteRTOutputsPredictor(batched)


def test_dequantize_int8_outputs():
    info = TensorInfo((3,), "int8", 0.5, -2)
    np.testing.assert_allclose(dequantize(np.array([-2, 0, 8], np.int8), info), [0.0, 1.0, 5.0])
    plain = TensorInfo((3,), "float32", 0.0, 0)
    assert dequantize(np.array([1.5], np.float32), plain).dtype == np.float32


def test_quantize_passes_token_ids_into_an_integer_input_without_quantization():
    ids = np.array([[101, 2054, 102]], np.int32)
    out = quantize(ids, TensorInfo((3,), "int32", 0.0, 0))
    assert out.dtype == np.int32 and out.tolist() == ids.tolist()
