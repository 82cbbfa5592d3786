"""The LiteRT backend: a ``.tflite`` model served through ai-edge-litert's interpreter.

The backend is the predictor, not a second harness: ``LiteRTPredictor`` answers the same calls as
``CompiledPredictor`` (the top-1 class of each sample of a batch), so LoadGen's SUTs, calibration
and the Mobile tasks drive it unchanged. ``LiteRTOutputsPredictor`` answers with the model's
outputs themselves, for a task scored from them (MobileBERT's logits), through the same SUTs.

A target chooses the delegate (``litert.delegate``):

    cpu      the interpreter's default op resolver, which applies the XNNPACK delegate to every
             op it supports, with the target's thread count
    gpu      TensorFlow Lite's GPU delegate, loaded from ``litert.delegate_path``
             (libtensorflowlite_gpu_delegate.so on Linux)
    nnapi    Android's NNAPI: only on a device, through the Mobile app's backend (runtime adb)
    vendor   a vendor's delegate library (``litert.delegate_path``) with its options
             (``litert.delegate_options``), as the Mobile app loads a libtflitebackend.so-style
             backend

``delegate_call`` spells out the ``load_delegate`` call a target makes, so that each is tested as
arguments where no such library exists.

A full-integer (int8) model takes int8 inputs: each float sample is quantized with the input
tensor's scale and zero point, as the converter recorded them; the top-1 class is the argmax of
the int8 outputs, which dequantization (a positive scale) does not reorder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchpipe.contracts.errors import ConfigError, InferenceError
from benchpipe.infer.sut import Predictor

DELEGATES = ("cpu", "gpu", "nnapi", "vendor")
# What the Mobile result's backend_settings say of each delegate.
DELEGATE_NAMES = {"cpu": "XNNPACK", "gpu": "GPU", "nnapi": "NNAPI", "vendor": "vendor"}


@dataclass(frozen=True)
class DelegateSpec:
    """A target's LiteRT delegate: which, the library it comes from, and that library's options."""

    kind: str = "cpu"
    path: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in DELEGATES:
            raise ConfigError(f"litert.delegate '{self.kind}' is not one of {', '.join(DELEGATES)}")
        if self.kind in ("gpu", "vendor") and not self.path:
            raise ConfigError(f"litert.delegate {self.kind} needs litert.delegate_path (the delegate's .so)")
        if self.kind == "cpu" and (self.path or self.options):
            raise ConfigError("litert.delegate cpu is the interpreter's own XNNPACK: it takes no "
                              "delegate_path or delegate_options")

    @property
    def name(self) -> str:
        return DELEGATE_NAMES[self.kind]


def delegate_call(spec: DelegateSpec) -> tuple[str, dict[str, str]] | None:
    """The ``ai_edge_litert.interpreter.load_delegate(library, options)`` arguments of ``spec``;
    None for cpu, whose XNNPACK the interpreter applies itself."""
    if spec.kind == "cpu":
        return None
    if spec.kind == "nnapi":
        raise ConfigError("litert.delegate nnapi exists only on an Android device: use a target with "
                          "runtime adb, whose Mobile app backend applies it")
    return str(spec.path), {str(k): str(v) for k, v in spec.options.items()}


def interpreter(model: bytes, threads: int, spec: DelegateSpec, where: str):
    """A LiteRT interpreter of ``model`` with ``spec``'s delegate."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    call = delegate_call(spec)
    delegates = []
    if call is not None:
        library, options = call
        if not Path(library).is_file():
            raise ConfigError(f"{where}: litert.delegate_path {library}: no such file")
        try:
            delegates = [load_delegate(library, options)]
        except (ValueError, RuntimeError, OSError) as exc:
            raise InferenceError(f"{where}: cannot load the {spec.kind} delegate {library}: {exc}") from exc
    try:
        return Interpreter(model_content=model, num_threads=max(1, threads), experimental_delegates=delegates)
    except (ValueError, RuntimeError) as exc:
        raise InferenceError(f"{where}: LiteRT cannot load the model: {exc}") from exc


@dataclass(frozen=True)
class TensorInfo:
    """A model's one input or output: shape without the batch, dtype, and (int8) quantization."""

    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def of(cls, detail: dict[str, Any]) -> TensorInfo:
        scale, zero = detail["quantization"]
        return cls(tuple(int(d) for d in detail["shape"][1:]), np.dtype(detail["dtype"]).name, float(scale), int(zero))


def quantize(batch: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Samples as the model's input dtype: int8/uint8 through its scale and zero point; integers
    into an input without quantization (MobileBERT's token ids), and samples already of the input's
    dtype, as they are."""
    if info.dtype == "float32":
        return np.ascontiguousarray(batch, dtype=np.float32)
    if (not info.scale and np.issubdtype(batch.dtype, np.integer)) or batch.dtype == np.dtype(info.dtype):
        # Token ids, or samples already in the input's type (the app feeds an int8 model pixel - 128).
        return np.ascontiguousarray(batch, dtype=info.dtype)
    limits = np.iinfo(info.dtype)
    if not info.scale:
        raise InferenceError(f"a {info.dtype} input without quantization parameters cannot take float samples")
    return np.clip(np.round(batch / info.scale + info.zero_point), limits.min, limits.max).astype(info.dtype)


class LiteRTPredictor(Predictor):
    """Top-1 class (int32) of a batch through LiteRT: one interpreter per batch size, whose input
    is resized to it once. Batches are padded and chunked as CompiledPredictor's are."""

    def __init__(self, model_path: Path, sample_shape: Sequence[int], batch_sizes: Sequence[int], *,
                 threads: int = 1, delegate: DelegateSpec | None = None) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise InferenceError(f"{self.model_path}: no such .tflite model")
        self.sample_shape = tuple(int(d) for d in sample_shape)
        sizes = sorted({int(b) for b in batch_sizes})
        if not sizes or sizes[0] < 1:
            raise InferenceError(f"{model_path}: batch sizes must be positive integers, not {list(batch_sizes)}")
        self.batch_sizes = sizes
        self.delegate = delegate or DelegateSpec()
        self.threads = threads
        content = self.model_path.read_bytes()
        self._interpreters: dict[int, Any] = {}
        self.batch_seconds: dict[int, float] = {}
        for size in sizes:
            it = interpreter(content, threads, self.delegate, str(self.model_path))
            (inp,), outputs = it.get_input_details(), it.get_output_details()
            self.input, self.output = TensorInfo.of(inp), TensorInfo.of(outputs[0])
            if self.input.shape != self.sample_shape:
                raise InferenceError(f"{model_path}: input shape {list(self.input.shape)} per sample, the samples "
                                     f"are {list(self.sample_shape)}")
            try:
                it.resize_tensor_input(inp["index"], [size, *self.sample_shape])
                it.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise InferenceError(f"{model_path}: cannot run batches of {size}: {exc}") from exc
            # An interpreter runs one invoke at a time; the SUTs may call from several threads.
            self._interpreters[size] = (it, inp["index"], outputs[0]["index"], threading.Lock())
            self.batch_seconds[size] = self._time(size)

    def _invoke(self, size: int, batch: np.ndarray) -> np.ndarray:
        it, inp, out, lock = self._interpreters[size]
        quantized = quantize(batch, self.input)
        with lock:
            it.set_tensor(inp, quantized)
            it.invoke()
            return it.get_tensor(out)

    def _time(self, size: int, calls: int = 5) -> float:
        zeros = np.zeros((size, *self.sample_shape), self.input.dtype)  # as the input takes them, unconverted
        best = float("inf")
        for _ in range(calls):
            start = time.perf_counter()
            self._invoke(size, zeros)
            best = min(best, time.perf_counter() - start)
        return best

    def raw_scores(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch`` (at most the largest size), as its dtype holds it."""
        size = self.padded_size(len(batch))
        padded = batch if len(batch) == size else np.concatenate(
            [batch, np.zeros((size - len(batch), *self.sample_shape), batch.dtype)])
        return self._invoke(size, padded)[: len(batch)]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        largest = self.max_batch
        parts = [self.raw_scores(batch[i:i + largest]) for i in range(0, len(batch), largest)]
        scores = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.argmax(scores.reshape(len(batch), -1), axis=1).astype(np.int32)

    def warm_up(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        zeros = {size: np.zeros((size, *self.sample_shape), self.input.dtype) for size in self.batch_sizes}
        while time.perf_counter() < deadline:
            for size, batch in zeros.items():
                self._invoke(size, batch)


def dequantize(values: np.ndarray, info: TensorInfo) -> np.ndarray:
    """An output as float32: an int8/uint8 one through its scale and zero point."""
    if info.dtype == "float32" or not info.scale:
        return values.astype(np.float32, copy=False)
    return ((values.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)


class LiteRTOutputsPredictor(Predictor):
    """Each sample answered with the model's outputs themselves, float32, stacked in the model's
    output order: for tasks that score raw outputs, as the app logs MobileBERT's end and start
    logits per sample (squad.cc ``ProcessOutput``) and scores them after the run.

    A sample holds one row per model input, fed to the inputs in the model's order (the app's
    backend feeds its dataset's inputs so): ``sample_shape`` is (inputs, *one input's shape), and
    every input takes that shape. Batches of one only: the app's tasks that score outputs run
    SingleStream, on models of a fixed batch of one.

    ``answer=False``: each sample is answered empty, as the app answers a performance run of a task
    it scores as it goes (EDSR's ``ProcessOutput``): the outputs need not share a shape then, and
    no copy of them (EDSR's is 24 MB) lies in the timed path.
    """

    def __init__(self, model_path: Path, *, threads: int = 1, delegate: DelegateSpec | None = None,
                 answer: bool = True) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise InferenceError(f"{self.model_path}: no such .tflite model")
        self.delegate = delegate or DelegateSpec()
        self.threads = threads
        it = interpreter(self.model_path.read_bytes(), threads, self.delegate, str(self.model_path))
        inputs, outputs = it.get_input_details(), it.get_output_details()
        self.inputs = [TensorInfo.of(d) for d in inputs]
        self.outputs = [TensorInfo.of(d) for d in outputs]
        if len({info.shape for info in self.inputs}) != 1 or (answer and len({o.shape for o in self.outputs}) != 1):
            raise InferenceError(f"{model_path}: inputs {[list(i.shape) for i in self.inputs]} and outputs "
                                 f"{[list(o.shape) for o in self.outputs]}: each must share one shape")
        for detail in inputs:
            if int(detail["shape"][0]) != 1:
                raise InferenceError(f"{model_path}: input {detail['name']} takes batches of "
                                     f"{int(detail['shape'][0])}; these tasks run one sample at a time")
        it.allocate_tensors()
        self.sample_shape = (len(self.inputs), *self.inputs[0].shape)
        self.answer = answer
        self.response = ("<f4", (len(self.outputs), *self.outputs[0].shape) if answer else (0,))
        self.batch_sizes = [1]
        self._it = it
        self._in = [d["index"] for d in inputs]
        self._out = [d["index"] for d in outputs]
        self._lock = threading.Lock()
        zeros = np.zeros((1, *self.sample_shape), self.sample_dtype)
        self.batch_seconds = {1: min(self._timed(zeros) for _ in range(5))}

    @property
    def sample_dtype(self) -> np.dtype:
        """What samples hold: integers for an integer input without quantization (token ids, raw
        pixels), which it takes as they are; float32 otherwise."""
        first = self.inputs[0]
        integer = np.issubdtype(np.dtype(first.dtype), np.integer) and not first.scale
        return np.dtype(np.int32) if integer else np.dtype(np.float32)

    def _timed(self, batch: np.ndarray) -> float:
        start = time.perf_counter()
        self(batch)
        return time.perf_counter() - start

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        answers = np.empty((len(batch), *self.response[1]), np.float32)
        for row, sample in enumerate(batch):
            with self._lock:  # one invoke at a time, whichever SUT thread calls
                for index, info, values in zip(self._in, self.inputs, sample):
                    self._it.set_tensor(index, quantize(values[None], info))
                self._it.invoke()
                if self.answer:
                    for k, (index, info) in enumerate(zip(self._out, self.outputs)):
                        answers[row, k] = dequantize(self._it.get_tensor(index)[0], info)
        return answers

    def warm_up(self, seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        zeros = np.zeros((1, *self.sample_shape), self.sample_dtype)
        while time.perf_counter() < deadline:
            self(zeros)
