"""The system under test: a compiled predictor and LoadGen SUTs for the four scenarios.

``CompiledPredictor`` traces the SavedModel once per batch size at construction, so no
tracing happens inside a LoadGen test. The SUTs are LoadGen "fast" SUTs (the issue
callback receives response ids and sample indices as two lists, not QuerySample objects):

* ``BatchSUT`` answers inside the issue callback, in chunks of a fixed batch size: Offline
  (one query of many samples), SingleStream (one sample) and MultiStream (8 samples).
* ``ServerSUT`` queues what LoadGen issues and lets worker threads form batches under a
  latency budget (a dynamic batcher): Server.

Every SUT is a context manager: enter before StartTest (ServerSUT starts its workers),
leave after it returns (ServerSUT answers anything still queued and joins them); leaving
raises an InferenceError if a batch failed. A failed batch is still answered (empty
responses), so that LoadGen finishes instead of waiting forever. ``start_test`` does all
of it for one test: handles from ConstructFastSUT/ConstructQSL, the SUT entered around
StartTestWithLogSettings, DestroyQSL/DestroyFastSUT afterwards.
"""

from __future__ import annotations

import bisect
import itertools
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchpipe.contracts.errors import InferenceError
from benchpipe.infer.samples import SampleLibrary

__all__ = [
    "CLASS_RESPONSE", "RESPONSE_DTYPE", "Batching", "BatchSUT", "CompiledPredictor", "Dispatch", "Predictor",
    "Responses", "ResponseFormat", "SampleLibrary", "ServerSUT", "loadgen_handles", "powers_of_two_up_to",
    "predictor_batch_sizes", "start_test", "sut_for",
]

# Responses carry the predicted class as one little-endian int32: the accuracy script
# decodes exactly this from mlperf_log_accuracy.json.
RESPONSE_DTYPE = np.dtype("<i4")
# What a predictor answers each sample with, as LoadGen logs it: the dtype and the shape of one
# sample's answer. A classifier answers its top-1 class; a model whose task scores its raw outputs
# (MobileBERT's start and end logits) answers those.
ResponseFormat = tuple[str, tuple[int, ...]]
CLASS_RESPONSE: ResponseFormat = (RESPONSE_DTYPE.str, ())
MULTI_STREAM_SAMPLES = 8  # LoadGen's samples per MultiStream query
GATHER_BYTES = 4 << 20  # the most one Offline gather copies out of the QSL
BATCHES_PER_HAND_OVER = 8  # Offline batches the responder thread is woken for at once
SCENARIOS = ("Offline", "SingleStream", "MultiStream", "Server")


# --- the predictor -------------------------------------------------------------------------


def _load_serve(model_dir: Path):
    import tensorflow as tf

    if not Path(model_dir).is_dir():
        raise InferenceError(f"{model_dir}: SavedModel directory does not exist")
    try:
        loaded = tf.saved_model.load(str(model_dir))
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise InferenceError(f"{model_dir}: cannot load SavedModel: {exc}") from exc
    if not hasattr(loaded, "serve"):
        raise InferenceError(f"{model_dir}: SavedModel has no 'serve' endpoint (export with format='tf_saved_model')")
    return loaded


class Predictor:
    """What the SUTs and calibration call: the top-1 class (int32) of each sample of a batch, or
    what ``response`` says it answers instead.

    ``batch_sizes``: the sizes it runs at, ascending; ``batch_seconds``: what a batch of each
    size costs, the Server batcher's first estimate. ``CompiledPredictor`` computes with a
    SavedModel; ``benchpipe.infer.synthetic.SyntheticPredictor`` sleeps a known cost, so that
    the SUTs' own overheads can be measured against it.
    """

    batch_sizes: list[int]
    batch_seconds: dict[int, float]
    response: ResponseFormat = CLASS_RESPONSE
    # True where passes cannot overlap (one accelerator running one batch at a time): the
    # Server batcher then forms a batch when the running pass ends, not while it runs.
    one_pass_at_a_time: bool = False

    @property
    def max_batch(self) -> int:
        return self.batch_sizes[-1]

    def padded_size(self, count: int) -> int:
        """The size a batch of ``count`` samples runs at (the largest if none holds it)."""
        k = bisect.bisect_left(self.batch_sizes, count)
        return self.batch_sizes[min(k, len(self.batch_sizes) - 1)]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def warm_up(self, seconds: float) -> None:
        """Make the first calls of a timed test as fast as the later ones."""
        raise NotImplementedError


class CompiledPredictor(Predictor):
    """Top-1 class (int32) of a batch, one traced graph per batch size.

    A batch is padded with zeros to the smallest traced size that holds it, and a batch
    larger than the largest size is answered in chunks of that size. ``batch_seconds``: the
    fastest of a few warm calls per size, measured at construction (the Server batcher's
    first estimate of what a batch costs). ``stop_above_s``: trace no size above the first one
    whose warm call takes longer (calibration's probe for the largest useful Server batch).
    """

    def __init__(self, model_dir: Path, sample_shape: Sequence[int], batch_sizes: Sequence[int],
                 *, stop_above_s: float | None = None) -> None:
        import tensorflow as tf

        self.model_dir = Path(model_dir)
        self.sample_shape = tuple(int(d) for d in sample_shape)
        sizes = sorted({int(b) for b in batch_sizes})
        if not sizes or sizes[0] < 1:
            raise InferenceError(f"{model_dir}: batch sizes must be positive integers, not {list(batch_sizes)}")
        self.batch_sizes = sizes
        self._loaded = _load_serve(self.model_dir)  # keeps the restored variables alive
        serve = self._loaded.serve
        self.trace_count = 0

        def top1(x):
            self.trace_count += 1  # runs only while tracing: counts traces, not calls
            return tf.argmax(serve(x), axis=1, output_type=tf.int32)

        self._calls: dict[int, Callable[[Any], Any]] = {}
        self.batch_seconds: dict[int, float] = {}
        for size in sizes:
            spec = tf.TensorSpec((size, *self.sample_shape), tf.float32)
            try:
                concrete = tf.function(top1, input_signature=[spec], jit_compile=False).get_concrete_function()
            except (ValueError, TypeError, tf.errors.OpError) as exc:
                raise InferenceError(
                    f"{model_dir}: 'serve' does not accept float32 batches of shape {(size, *self.sample_shape)}: {exc}"
                ) from exc
            self._calls[size] = _fast_call(concrete, np.zeros((size, *self.sample_shape), np.float32))
            self.batch_seconds[size] = self._time(size)
            if stop_above_s is not None and self.batch_seconds[size] > stop_above_s:
                break
        self.batch_sizes = sorted(self._calls)

    def _time(self, size: int, calls: int = 5, within_s: float = 0.2) -> float:
        """The fastest of a few warm calls: the first ones after tracing run slow (allocation)."""
        call, batch = self._calls[size], np.zeros((size, *self.sample_shape), np.float32)
        best, spent = float("inf"), 0.0
        for _ in range(calls):
            started = time.perf_counter()
            call(batch)
            took = time.perf_counter() - started
            best, spent = min(best, took), spent + took
            if spent > within_s:
                break  # a large model: its first calls already took long enough to be warm
        return best

    def warm_up(self, seconds: float) -> None:
        """Run every traced size for about ``seconds`` in all, before a timed test.

        A process's first second of calls runs slower (thread pools spinning up, allocator and
        caches filling): measured, that made whichever of two identical tests ran second look
        10-20 % faster, enough to fail TEST04's 10 % rule on a tiny model.
        """
        share = seconds / len(self.batch_sizes)
        for size in self.batch_sizes:
            call, batch = self._calls[size], np.zeros((size, *self.sample_shape), np.float32)
            until = time.perf_counter() + share
            while time.perf_counter() < until:
                call(batch)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[1:] != self.sample_shape:
            # The traced graph is fed without TensorFlow's own signature check (see _fast_call).
            raise InferenceError(
                f"{self.model_dir}: batch of shape {batch.shape}, the model takes {self.sample_shape} samples")
        count = len(batch)
        largest = self.batch_sizes[-1]
        if count > largest:
            return np.concatenate([self(batch[start : start + largest]) for start in range(0, count, largest)])
        if count == 0:
            return np.empty(0, RESPONSE_DTYPE)
        size = self.padded_size(count)
        if size != count or batch.dtype != np.float32 or not batch.flags.c_contiguous:
            padded = np.zeros((size, *self.sample_shape), np.float32)
            padded[:count] = batch
            batch = padded
        return self._calls[size](batch)[:count]


def _fast_call(concrete, warm_batch: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A call of the traced function that returns int32 predictions as numpy.

    ConcreteFunction.__call__ binds its arguments through a generic signature check that
    costs about as much as a small model's whole forward pass (~100 us per call, measured
    with TF 2.21); ``_call_flat`` skips it. It is private API, so it is used only if it gives
    the same answer as the public call on the warm-up batch, else the public call is kept.
    """
    import tensorflow as tf

    public = concrete(tf.constant(warm_batch)).numpy()
    flat_call = getattr(concrete, "_call_flat", None)
    captured = getattr(concrete, "captured_inputs", None)
    if flat_call is not None and captured is not None:
        try:
            fast = flat_call([tf.constant(warm_batch)], captured)
            if isinstance(fast, tf.Tensor) and fast.dtype == tf.int32 and np.array_equal(fast.numpy(), public):
                return lambda batch: flat_call([tf.constant(batch)], captured).numpy()
        except Exception:  # noqa: BLE001 -- any failure of the private path means: use the public one
            pass
    return lambda batch: concrete(tf.constant(batch)).numpy()


# --- batching settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Batching:
    """How a scenario's SUT batches: what calibration chose and calibration.json records.

    ``batch_size``: BatchSUT's chunk (Offline B, SingleStream 1, MultiStream 8). The rest is
    the Server batcher's: at most ``max_batch`` samples, formed within ``max_wait_s`` of the
    oldest one's arrival by ``workers`` threads, dispatched early when waiting longer would
    take the oldest past ``latency_budget_s``.
    """

    scenario: str
    batch_size: int = 1
    max_batch: int = 1
    max_wait_s: float = 0.0
    workers: int = 1
    latency_budget_s: float | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise InferenceError(f"batching.scenario: '{self.scenario}' is not one of {', '.join(SCENARIOS)}")
        for key in ("batch_size", "max_batch", "workers"):
            if int(getattr(self, key)) < 1:
                raise InferenceError(f"batching.{key}: must be at least 1, not {getattr(self, key)}")
        if self.max_wait_s < 0:
            raise InferenceError(f"batching.max_wait_s: must not be negative, not {self.max_wait_s}")
        if self.scenario == "Server" and not (self.latency_budget_s or 0) > 0:
            raise InferenceError("batching.latency_budget_s: the Server batcher needs a positive latency budget")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batching:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InferenceError(f"batching: unknown keys {', '.join(sorted(unknown))}")
        if "scenario" not in data:
            raise InferenceError("batching: key 'scenario' missing")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InferenceError(f"batching: {exc}") from exc

    @classmethod
    def for_scenario(cls, scenario: str, offline_batch_size: int = 1) -> Batching:
        """The fixed batching of the three BatchSUT scenarios."""
        sizes = {"Offline": offline_batch_size, "SingleStream": 1, "MultiStream": MULTI_STREAM_SAMPLES}
        if scenario not in sizes:
            raise InferenceError(f"scenario '{scenario}': its batching comes from calibration, not a fixed size")
        return cls(scenario, batch_size=sizes[scenario], max_batch=sizes[scenario])


def powers_of_two_up_to(limit: int) -> list[int]:
    return [1 << k for k in range(max(limit, 1).bit_length()) if 1 << k <= limit]


def predictor_batch_sizes(batching: Batching) -> list[int]:
    """The sizes to trace: the fixed chunk, or for Server every power of two up to max_batch."""
    if batching.scenario == "Server":
        return sorted({*powers_of_two_up_to(batching.max_batch), batching.max_batch})
    return [batching.batch_size]


# --- answering LoadGen ---------------------------------------------------------------------


class Responses:
    """Reusable ``QuerySampleResponse`` objects for one answering thread.

    pybind builds a response in about 480 ns (it resolves the constructor's overloads on
    every call); setting the id of one built earlier takes about 165 ns. LoadGen copies the
    responses, and any data it logs, before ``QuerySamplesComplete`` returns, so one thread's
    next call may reuse both the objects and the buffer they point at. Each answering thread
    needs its own: a call reuses the objects of the one before it.
    """

    _buffer: np.ndarray  # each response's data: one row of it
    _pool: list[Any]  # the QuerySampleResponse objects, one per row of _buffer

    def __init__(self, capacity: int, response: ResponseFormat = CLASS_RESPONSE) -> None:
        self.dtype, self.shape = np.dtype(response[0]), tuple(response[1])
        self._grow(max(capacity, 1))

    def _grow(self, capacity: int) -> None:
        import mlperf_loadgen as lg

        self._buffer = np.zeros((capacity, *self.shape), self.dtype)
        base, size = self._buffer.ctypes.data, self.dtype.itemsize * int(np.prod(self.shape))
        self._pool = [lg.QuerySampleResponse(0, base + k * size, size) for k in range(capacity)]

    def complete(self, response_ids: Sequence[int], predictions: np.ndarray) -> None:
        """Answer each id with its prediction (a row of ``predictions``)."""
        import mlperf_loadgen as lg

        count = len(response_ids)
        if len(predictions) != count:
            raise InferenceError(f"{len(predictions)} predictions for {count} samples")
        if count > len(self._pool):
            self._grow(count)
        self._buffer[:count] = predictions
        pool = self._pool if count == len(self._pool) else self._pool[:count]
        for response, response_id in zip(pool, response_ids):
            response.id = response_id
        lg.QuerySamplesComplete(pool)


def _complete_empty(response_ids: Sequence[int]) -> None:
    """Answer without data: LoadGen must not wait forever for samples whose batch failed."""
    import mlperf_loadgen as lg

    lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in response_ids])


class _Failures:
    """The first error of a SUT's callbacks, raised once the LoadGen test is over.

    An exception escaping a callback into LoadGen's C++ thread would abort the process,
    so callbacks record it here and answer the samples empty.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: BaseException | None = None
        self.count = 0

    def record(self, exc: BaseException) -> None:
        with self._lock:
            self.count += 1
            if self.first is None:
                self.first = exc

    def reset(self) -> None:
        with self._lock:
            self.first, self.count = None, 0

    def raise_first(self, what: str) -> None:
        first, count = self.first, self.count
        if first is None:
            return
        self.reset()
        more = f" ({count} failed batches)" if count > 1 else ""
        raise InferenceError(f"{what} failed{more}: {type(first).__name__}: {first}") from first


class _Running:
    """``with sut:`` starts it before a LoadGen test and stops it after, raising what failed."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _fail(self, response_ids: Sequence[int], exc: BaseException) -> None:
        """Record ``exc`` and answer the samples empty: LoadGen must not wait for them."""
        self.failures.record(exc)
        try:
            _complete_empty(response_ids)
        except BaseException as again:  # noqa: BLE001 -- never into LoadGen's thread
            self.failures.record(again)


class BatchSUT(_Running):
    """Answers each query inside LoadGen's issue callback, ``batch_size`` samples at a time.

    A query of one batch (SingleStream, MultiStream) is answered before the callback returns:
    the lowest latency. A query of several (Offline) gathers its samples several batches at
    a time and hands the predictions to a responder thread, BATCHES_PER_HAND_OVER batches at
    a time, so that building LoadGen's responses overlaps the next batches' compute, which
    runs with the GIL released (measured on digits: about 7 % more samples/s), and the
    responder is woken once for several batches.
    """

    def __init__(self, predictor: Predictor, qsl: SampleLibrary, batch_size: int) -> None:
        if batch_size < 1:
            raise InferenceError(f"BatchSUT: batch size must be at least 1, not {batch_size}")
        self.predictor = predictor
        self.qsl = qsl
        self.batch_size = batch_size
        self.failures = _Failures()
        self._answers: queue.SimpleQueue[list[tuple[Sequence[int], np.ndarray]] | None] = queue.SimpleQueue()
        self._responder: threading.Thread | None = None
        # LoadGen's issue thread answers inline, the responder thread what is handed over.
        self._inline = Responses(batch_size, predictor.response)
        self._handed = Responses(batch_size, predictor.response)
        # Offline gathers several batches at once, up to GATHER_BYTES: one gather per batch
        # cost about 6 % of digits' samples/s through LoadGen: 100 us of wall time a batch,
        # against 4 us of copying, waiting on the GIL and the scheduler between compute calls.
        batch_bytes = batch_size * np.dtype(np.float32).itemsize * int(np.prod(qsl.source.sample_shape))
        self._batches_per_gather = max(1, GATHER_BYTES // max(batch_bytes, 1))

    def issue_queries(self, response_ids: list[int], sample_indices: list[int]) -> None:
        size = self.batch_size
        if len(response_ids) <= size or self._responder is None:
            self._answer(response_ids, sample_indices)
            return
        indices = np.asarray(sample_indices, dtype=np.int64)
        step = size * self._batches_per_gather
        group: list[tuple[Sequence[int], np.ndarray]] = []
        for start in range(0, len(response_ids), step):
            ids = response_ids[start : start + step]
            block = self._gather(indices[start : start + step])
            for k in range(0, len(ids), size):
                group.append(self._predict(ids[k : k + size], None if block is None else block[k : k + size]))
                if len(group) >= BATCHES_PER_HAND_OVER:
                    self._answers.put(group)
                    group = []
        if group:
            self._answers.put(group)

    def _answer(self, response_ids: Sequence[int], indices: Sequence[int] | np.ndarray) -> None:
        if self.failures.first is not None:
            _complete_empty(response_ids)
            return
        try:
            predictions = self.predictor(self.qsl.batch(indices))
            self._inline.complete(response_ids, predictions)
        except BaseException as exc:  # noqa: BLE001 -- recorded, raised by stop()
            self._fail(response_ids, exc)

    def _gather(self, indices: np.ndarray) -> np.ndarray | None:
        """Several batches' samples in one gather; None (the failure recorded) if it failed."""
        if self.failures.first is not None:
            return None
        try:
            return self.qsl.batch(indices)
        except BaseException as exc:  # noqa: BLE001 -- recorded, raised by stop()
            self.failures.record(exc)
            return None

    def _predict(self, response_ids: Sequence[int], batch: np.ndarray | None) -> tuple[Sequence[int], np.ndarray]:
        if batch is None or self.failures.first is not None:
            return response_ids, _NO_ANSWER
        try:
            return response_ids, self.predictor(batch)
        except BaseException as exc:  # noqa: BLE001 -- recorded, raised by stop()
            self.failures.record(exc)
            return response_ids, _NO_ANSWER

    def _respond(self) -> None:
        while (group := self._answers.get()) is not None:
            for response_ids, predictions in group:
                try:
                    if predictions is _NO_ANSWER:
                        _complete_empty(response_ids)
                    else:
                        self._handed.complete(response_ids, predictions)
                except BaseException as exc:  # noqa: BLE001 -- never into LoadGen's thread
                    self._fail(response_ids, exc)

    def flush_queries(self) -> None:
        pass  # every batch was computed before its issue call returned

    def start(self) -> None:
        self.failures.reset()
        if self._responder is None:
            self._responder = threading.Thread(target=self._respond, name="benchpipe-responder", daemon=True)
            self._responder.start()

    def stop(self) -> None:
        if self._responder is not None:
            self._answers.put(None)
            self._responder.join()
            self._responder = None
        self.failures.raise_first("BatchSUT")


# Marks a handed-over batch whose predictions failed: answered empty, in its turn.
_NO_ANSWER = np.empty(0, RESPONSE_DTYPE)


class Dispatch(NamedTuple):
    """One batch the Server batcher formed."""

    size: int
    waited_s: float  # age of its oldest sample when dispatched
    reason: str  # full | max_wait | deadline | late | flush | stop | shed (calibration only)


class ServerSUT(_Running):
    """A dynamic batcher: LoadGen's issue callback only enqueues; worker threads answer.

    A worker takes the queued samples when ``max_batch`` are waiting, when the oldest has
    waited ``max_wait_s``, or earlier when waiting for one more sample would take the oldest
    past ``latency_budget_s`` given what a batch of that size is expected to cost (first the
    predictor's measured ``batch_seconds``, then a moving average of observed times).
    TensorFlow releases the GIL while it computes, so workers' batches overlap.

    A predictor whose passes cannot overlap (``one_pass_at_a_time``: one accelerator) would
    leave a batch taken while another pass runs waiting for that pass, and the samples
    arriving meanwhile for the pass after it. For such a predictor a worker takes its batch
    once no pass is running (or when the oldest sample's budget says it must go): the batch
    holds everything that arrived during the last pass, and forms while the worker that ran
    that pass answers it.

    What it did, for tests and benches: ``dispatches`` (the first RECORD_LIMIT batches),
    ``size_counts`` (batches computed, by size), ``computed_span_s``.

    ``shed_after_s`` is for calibration's rate search only, never for a result: samples
    already older than that (over the latency bound whatever happens next) are answered at
    once without data, so that a rate far above capacity ends on schedule instead of
    draining a backlog for many times its duration. Samples younger than that are computed
    as usual, so a run is not made to look faster than it is: every shed sample is late.
    """

    COST_SMOOTHING = 0.2  # weight of the newest observation in the moving average
    RECORD_LIMIT = 100_000  # dispatches kept in ``dispatches``; counters keep counting after

    def __init__(self, predictor: Predictor, qsl: SampleLibrary, max_batch: int, max_wait_s: float,
                 workers: int, latency_budget_s: float, *, shed_after_s: float | None = None) -> None:
        if max_batch < 1 or workers < 1:
            raise InferenceError(f"ServerSUT: max_batch and workers must be at least 1, not {max_batch}, {workers}")
        if max_wait_s < 0 or latency_budget_s <= 0:
            raise InferenceError(
                f"ServerSUT: max_wait_s must be >= 0 and latency_budget_s > 0, not {max_wait_s}, {latency_budget_s}")
        self.predictor = predictor
        self.qsl = qsl
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.workers = workers
        self.latency_budget_s = latency_budget_s
        self.shed_after_s = shed_after_s
        self.failures = _Failures()
        self.dispatches: list[Dispatch] = []
        self.size_counts: Counter[int] = Counter()  # batches computed, by size
        # The traced size each count runs at, and what a batch of each traced size costs.
        self._padded = [predictor.padded_size(max(count, 1)) for count in range(max_batch + 1)]
        self._cost = {size: predictor.batch_seconds.get(size, 0.0) for size in set(self._padded)}
        self._cond = threading.Condition(threading.Lock())
        self._ids: deque[int] = deque()
        self._indices: deque[int] = deque()
        self._arrivals: deque[float] = deque()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._flushing = False
        self._serial = bool(getattr(predictor, "one_pass_at_a_time", False))
        self._passes_running = 0  # batches taken and not yet computed; counted for a serial predictor only
        self._first_arrival: float | None = None
        self._last_computed = 0.0

    # LoadGen's side

    def issue_queries(self, response_ids: list[int], sample_indices: list[int]) -> None:
        now = time.perf_counter()
        with self._cond:
            if self._first_arrival is None:
                self._first_arrival = now
            self._ids.extend(response_ids)
            self._indices.extend(sample_indices)
            self._arrivals.extend(itertools.repeat(now, len(response_ids)))
            self._cond.notify()

    def flush_queries(self) -> None:
        # No more samples are coming in this series: waiting to fill a batch only adds latency.
        with self._cond:
            self._flushing = True
            self._cond.notify_all()

    # lifecycle

    def start(self) -> None:
        if self._threads:
            raise InferenceError("ServerSUT: already started")
        self.failures.reset()
        self._stopping = self._flushing = False
        self.dispatches, self.size_counts = [], Counter()
        self._first_arrival, self._last_computed = None, 0.0
        self._threads = [threading.Thread(target=self._work, name=f"server-sut-{k}", daemon=True)
                         for k in range(self.workers)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Answer what is still queued, join the workers, raise the first worker error."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads = []
        self.failures.raise_first("ServerSUT worker")


    # the workers

    def expected_cost(self, count: int) -> float:
        return self._cost[self._padded[min(count, self.max_batch)]]

    def _due(self, now: float) -> tuple[float, str]:
        """When the queued samples must go at the latest, and why (the lock is held)."""
        oldest = self._arrivals[0]
        by_wait = oldest + self.max_wait_s
        by_budget = oldest + self.latency_budget_s - self.expected_cost(len(self._ids) + 1)
        if self._passes_running:
            return by_budget, "deadline"  # until the running pass ends (_pass_done wakes the worker)
        return (by_wait, "max_wait") if by_wait <= by_budget else (by_budget, "deadline")

    def _take(self) -> tuple[list[int], list[int], Dispatch] | None:
        """The next batch, waiting as the policy allows; None once stopping with nothing queued."""
        cond = self._cond
        with cond:
            while True:
                while not self._ids:
                    if self._stopping:
                        return None
                    cond.wait()
                now = time.perf_counter()
                if self.shed_after_s is not None and now - self._arrivals[0] > self.shed_after_s:
                    waited = now - self._arrivals[0]
                    shed = self._shed()
                    if self._ids:
                        cond.notify()
                    dispatch = Dispatch(len(shed), waited, "shed")
                    self._record(dispatch)
                    return shed, [], dispatch
                due, reason = self._due(now)
                if now >= due:
                    reason = "late"  # due before this worker was free: a backlog
                while len(self._ids) < self.max_batch and not (self._flushing or self._stopping) and now < due:
                    cond.wait(due - now)
                    if not self._ids:
                        break  # another worker took them
                    now = time.perf_counter()
                    due, reason = self._due(now)
                if self._ids:
                    break
            if len(self._ids) >= self.max_batch:
                reason = "full"
            elif now < due:
                reason = "flush" if self._flushing else "stop"
            count = min(len(self._ids), self.max_batch)
            waited = now - self._arrivals[0]
            ids = [self._ids.popleft() for _ in range(count)]
            indices = [self._indices.popleft() for _ in range(count)]
            for _ in range(count):
                self._arrivals.popleft()
            if self._ids:
                cond.notify()  # a backlog: let an idle worker start on it
            dispatch = Dispatch(count, waited, reason)
            self._record(dispatch)
            if self._serial:
                self._passes_running += 1
        return ids, indices, dispatch

    def _shed(self) -> list[int]:
        """Drop the queued samples older than ``shed_after_s`` (the lock is held)."""
        limit = time.perf_counter() - self.shed_after_s
        shed = []
        while self._arrivals and self._arrivals[0] < limit:
            shed.append(self._ids.popleft())
            self._indices.popleft()
            self._arrivals.popleft()
        return shed

    def _work(self) -> None:
        responses = Responses(self.max_batch, self.predictor.response)
        while (taken := self._take()) is not None:
            ids, indices, dispatch = taken
            if dispatch.reason == "shed":
                _complete_empty(ids)
                continue
            if self.failures.first is not None:
                self._pass_done()
                _complete_empty(ids)
                continue
            try:
                started = time.perf_counter()
                try:
                    predictions = self.predictor(self.qsl.batch(np.asarray(indices, dtype=np.int64)))
                finally:
                    self._pass_done()  # before answering: the next batch forms and runs meanwhile
                done = time.perf_counter()
                self._observe(len(ids), done - started)
                self._last_computed = max(self._last_computed, done)
                responses.complete(ids, predictions)
            except BaseException as exc:  # noqa: BLE001 -- recorded, raised by stop()
                self._fail(ids, exc)

    def _pass_done(self) -> None:
        """A serial predictor's pass ended: a worker holding back its batch may take it now."""
        if self._serial:
            with self._cond:
                self._passes_running -= 1
                self._cond.notify_all()

    @property
    def computed_span_s(self) -> float:
        """Seconds from the first sample's arrival to the end of the last batch computed (0 if none was)."""
        if self._first_arrival is None:
            return 0.0
        return max(0.0, self._last_computed - self._first_arrival)

    def _observe(self, count: int, seconds: float) -> None:
        # Observed under the real load (other workers, LoadGen): what the budget must allow for.
        padded = self._padded[count]
        self._cost[padded] += self.COST_SMOOTHING * (seconds - self._cost[padded])

    def _record(self, dispatch: Dispatch) -> None:
        """Count a dispatch (the lock is held)."""
        if dispatch.reason != "shed":
            self.size_counts[dispatch.size] += 1
        if len(self.dispatches) < self.RECORD_LIMIT:
            self.dispatches.append(dispatch)


def sut_for(
    scenario: str, predictor: Predictor, qsl: SampleLibrary, settings: Batching
) -> BatchSUT | ServerSUT:
    """The SUT of ``scenario`` with the batching calibration chose."""
    if settings.scenario != scenario:
        raise InferenceError(f"batching is for scenario {settings.scenario}, the test is {scenario}")
    if scenario == "Server":
        return ServerSUT(predictor, qsl, settings.max_batch, settings.max_wait_s, settings.workers,
                         float(settings.latency_budget_s or 0.0))
    return BatchSUT(predictor, qsl, settings.batch_size)


# --- one LoadGen test ------------------------------------------------------------------------


@contextmanager
def loadgen_handles(sut: BatchSUT | ServerSUT, qsl: SampleLibrary, performance_count: int) -> Iterator[tuple[int, int]]:
    """(SUT handle, QSL handle), destroyed afterwards; the SUT is started and stopped around them."""
    import mlperf_loadgen as lg

    sut_handle = lg.ConstructFastSUT(sut.issue_queries, sut.flush_queries)
    qsl_handle = lg.ConstructQSL(qsl.total, qsl.performance_count(performance_count), qsl.load, qsl.unload)
    try:
        with sut:
            yield sut_handle, qsl_handle
    finally:
        lg.DestroyQSL(qsl_handle)
        lg.DestroyFastSUT(sut_handle)


def start_test(sut: BatchSUT | ServerSUT, qsl: SampleLibrary, settings, log_dir: Path, performance_count: int,
               audit_config: Path | None = None) -> None:
    """One LoadGen test, logs into ``log_dir`` (created if missing); raises if a batch failed.

    ``audit_config``: the compliance test's audit.config; by default a path that does not
    exist, since an audit.config in the working directory would silently make this a
    compliance run.
    """
    import mlperf_loadgen as lg

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)  # LoadGen aborts the process without it
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    audit = audit_config if audit_config is not None else log_dir / "no-audit.config"
    with loadgen_handles(sut, qsl, performance_count) as (sut_handle, qsl_handle):
        lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings, str(audit))
