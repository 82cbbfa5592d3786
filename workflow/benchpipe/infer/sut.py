"""The system under test: LoadGen's QSL and SUT callbacks around an exported SavedModel."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchpipe.benchmarks.base import Split
from benchpipe.errors import InferenceError

# Responses carry the predicted class as one little-endian int32: the accuracy script
# decodes exactly this from mlperf_log_accuracy.json.
RESPONSE_DTYPE = np.dtype("<i4")


class SavedModelPredictor:
    """Top-1 class of a batch, through the SavedModel's ``serve`` endpoint."""

    def __init__(self, model_dir: Path, sample_shape: tuple[int, ...]) -> None:
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(str(model_dir))
        except (OSError, ValueError) as exc:
            raise InferenceError(f"{model_dir}: cannot load SavedModel: {exc}") from exc
        if not hasattr(loaded, "serve"):
            raise InferenceError(f"{model_dir}: SavedModel has no 'serve' endpoint")
        self._loaded = loaded  # keeps the restored variables alive
        self._serve = loaded.serve
        self._tf = tf
        # Trace once up front so that tracing is not timed inside a LoadGen test.
        self(np.zeros((1, *sample_shape), np.float32))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        logits = self._serve(self._tf.constant(batch))
        return np.argmax(logits.numpy(), axis=1).astype(RESPONSE_DTYPE)


class SampleLibrary:
    """The QSL: samples loaded on LoadGen's request, kept as one contiguous array."""

    def __init__(self, split: Split) -> None:
        self.split = split
        self.loaded: np.ndarray | None = None
        self._index: dict[int, int] = {}

    @property
    def total(self) -> int:
        return len(self.split.labels)

    def load(self, indices: list[int]) -> None:
        self._index = {int(i): k for k, i in enumerate(indices)}
        self.loaded = np.ascontiguousarray(self.split.features[np.asarray(indices, dtype=np.int64)])

    def unload(self, indices: list[int]) -> None:
        self.loaded, self._index = None, {}

    def batch(self, indices: list[int]) -> np.ndarray:
        if self.loaded is None:
            raise InferenceError("LoadGen issued a query before loading samples")
        return self.loaded[[self._index[i] for i in indices]]


class ClassifierSUT:
    """Answers each query in batches of at most ``batch_size``, synchronously.

    Synchronous answering suits Offline (one query of many samples) and SingleStream
    (one sample, the next issued only after the answer).
    """

    def __init__(self, predictor, qsl: SampleLibrary, batch_size: int) -> None:
        self.predictor = predictor
        self.qsl = qsl
        self.batch_size = batch_size

    def issue_queries(self, query_samples) -> None:
        import mlperf_loadgen as lg

        for start in range(0, len(query_samples), self.batch_size):
            chunk = query_samples[start : start + self.batch_size]
            predictions = self.predictor(self.qsl.batch([q.index for q in chunk]))
            base = predictions.ctypes.data
            size = RESPONSE_DTYPE.itemsize
            responses = [
                lg.QuerySampleResponse(q.id, base + k * size, size) for k, q in enumerate(chunk)
            ]
            # `predictions` stays referenced until this call returns, as LoadGen requires.
            lg.QuerySamplesComplete(responses)

    def flush_queries(self) -> None:
        pass
