"""The LLM system under test: greedy generation scheduled at every decode step.

One scheduler thread owns a ``Decoder`` (``benchpipe.infer.decoding``) of a fixed number of
slots. Between two decode steps it admits waiting queries into free slots (their prompts
prefilled together), reports each new query's first token to LoadGen with
``FirstTokenComplete``, advances every occupied slot by one token, and completes each
sequence that stopped with its tokens and their count (``QuerySampleResponse``'s fourth
argument), from which LoadGen derives TTFT, TPOT and tokens/s.

* ``continuous`` (the default): a query joins the running batch as soon as a slot frees up.
* ``static``: a batch is admitted only when the previous one has finished entirely, as a
  server that batches whole requests does; kept to measure what continuous batching gains.

The same SUT serves every scenario: Offline issues all its samples at once, Server and
Interactive one at a time on LoadGen's schedule, SingleStream one after the other.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from benchpipe.contracts.errors import InferenceError
from benchpipe.infer.decoding import TOKEN_DTYPE, Decoder, GenerationLimits
from benchpipe.infer.sut import _Failures, _Running

POLICIES = ("continuous", "static")


class PromptLibrary:
    """The QSL of an LLM benchmark: each sample's prompt token ids, all in memory.

    Prompts are small against images (13,368 CNN/DailyMail prompts of about 800 tokens are
    43 MB as int32), so LoadGen's load and unload only record what it asked for.
    """

    def __init__(self, prompts: Sequence[np.ndarray], description: str = "prompts") -> None:
        if not prompts:
            raise InferenceError(f"{description}: no prompts")
        self._prompts = [np.ascontiguousarray(p, dtype=TOKEN_DTYPE) for p in prompts]
        for n, prompt in enumerate(self._prompts):
            if prompt.ndim != 1 or prompt.size == 0:
                raise InferenceError(f"{description}: prompt {n} is not a non-empty list of token ids")
        self.description = description
        self.loaded: set[int] = set()

    @property
    def total(self) -> int:
        return len(self._prompts)

    def performance_count(self, requested: int) -> int:
        return min(requested, self.total)

    def load(self, indices: list[int]) -> None:
        self.loaded.update(indices)

    def unload(self, indices: list[int]) -> None:
        self.loaded.difference_update(indices)

    def prompt(self, index: int) -> np.ndarray:
        return self._prompts[index]


@dataclass
class _Sequence:
    response_id: int
    slot: int
    tokens: list[int] = field(default_factory=list)


@dataclass
class SchedulerStats:
    """What the scheduler did, for calibration and the benches."""

    steps: int = 0
    step_slots: int = 0  # occupied slots summed over steps: / steps is the mean batch
    prefills: int = 0
    prefilled: int = 0
    completed: int = 0
    tokens: int = 0
    shed: int = 0  # answered empty, unstarted, past shed_after_s (calibration's overloaded runs)

    @property
    def mean_batch(self) -> float:
        return self.step_slots / self.steps if self.steps else 0.0


class LLMSUT(_Running):
    """Schedules LoadGen's queries onto a decoder's slots, one decode step at a time."""

    def __init__(self, decoder: Decoder, prompts: PromptLibrary, limits: GenerationLimits, *,
                 policy: str = "continuous", max_prefill: int | None = None,
                 shed_after_s: float | None = None) -> None:
        if policy not in POLICIES:
            raise InferenceError(f"batching policy '{policy}' is not one of {', '.join(POLICIES)}")
        if decoder.slots < 1:
            raise InferenceError(f"the decoder has {decoder.slots} slots: it needs at least 1")
        self.decoder = decoder
        self.prompts = prompts
        self.limits = limits
        self.policy = policy
        # Prefilling stalls every running sequence: bounding how many prompts join at once
        # bounds the longest gap between two of their tokens (TPOT).
        self.max_prefill = max_prefill or decoder.slots
        # Calibration only: a query that waited this long is answered at once, empty, so that
        # a search run far above capacity ends on schedule instead of generating its backlog.
        self.shed_after_s = shed_after_s
        self.failures = _Failures()
        self.stats = SchedulerStats()
        self._waiting: deque[tuple[int, int, float]] = deque()  # (response id, sample index, issued at)
        self._running: dict[int, _Sequence] = {}  # by slot
        self._free = list(range(decoder.slots - 1, -1, -1))
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- LoadGen's callbacks -------------------------------------------------------------

    def issue_queries(self, response_ids: list[int], sample_indices: list[int]) -> None:
        now = time.perf_counter()
        with self._cond:
            self._waiting.extend((r, i, now) for r, i in zip(response_ids, sample_indices))
            self._cond.notify()

    def flush_queries(self) -> None:
        pass

    # --- the scheduler -------------------------------------------------------------------

    def start(self) -> None:
        self.failures.reset()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="llm-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.failures.raise_first(f"LLM SUT ({self.policy} batching)")

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._running and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._waiting and not self._running:
                    return
                shed = self._shed()
                admitted = self._admit()
            try:
                if shed:
                    _answer_shed(shed)
                    self.stats.shed += len(shed)
                if admitted:
                    self._prefill(admitted)
                if self._running:
                    self._step()
            except BaseException as exc:  # noqa: BLE001 -- LoadGen must not wait for these samples
                self._abandon(exc)

    def _admit(self) -> list[tuple[int, int, int]]:
        """(response id, sample index, slot) of the queries that start now (the lock is held)."""
        if self.policy == "static" and self._running:
            return []
        count = min(len(self._waiting), len(self._free), self.max_prefill)
        return [(*self._waiting.popleft()[:2], self._free.pop()) for _ in range(count)]

    def _shed(self) -> list[int]:
        """Response ids of the waiting queries past shed_after_s, taken off the queue (the lock is held)."""
        if self.shed_after_s is None or not self._waiting:
            return []
        limit = time.perf_counter() - self.shed_after_s
        shed = []
        while self._waiting and self._waiting[0][2] < limit:
            shed.append(self._waiting.popleft()[0])
        return shed

    def _prefill(self, admitted: list[tuple[int, int, int]]) -> None:
        slots = [slot for _, _, slot in admitted]
        for response_id, _, slot in admitted:
            self._running[slot] = _Sequence(response_id, slot)
        firsts = np.asarray(self.decoder.prefill(slots, [self.prompts.prompt(i) for _, i, _ in admitted]),
                            dtype=TOKEN_DTYPE)
        self.stats.prefills += 1
        self.stats.prefilled += len(admitted)
        _first_tokens([r for r, _, _ in admitted], firsts)
        self._advance(slots, firsts)

    def _step(self) -> None:
        slots = list(self._running)
        last = np.fromiter((self._running[s].tokens[-1] for s in slots), dtype=TOKEN_DTYPE, count=len(slots))
        following = np.asarray(self.decoder.step(slots, last), dtype=TOKEN_DTYPE)
        self.stats.steps += 1
        self.stats.step_slots += len(slots)
        self._advance(slots, following)

    def _advance(self, slots: Sequence[int], tokens: np.ndarray) -> None:
        """Append each slot's new token; complete the sequences that stop with it."""
        if len(tokens) != len(slots):
            raise InferenceError(f"the decoder returned {len(tokens)} tokens for {len(slots)} slots")
        done = []
        for slot, token in zip(slots, tokens.tolist()):
            sequence = self._running[slot]
            sequence.tokens.append(token)
            if self.limits.finished(token, len(sequence.tokens)):
                done.append(sequence)
        if done:
            _complete(done)
            with self._cond:
                for sequence in done:
                    del self._running[sequence.slot]
                    self._free.append(sequence.slot)
            self.stats.completed += len(done)
            self.stats.tokens += sum(len(s.tokens) for s in done)

    def _abandon(self, exc: BaseException) -> None:
        """Answer every running sequence empty and free its slot: the decoder failed."""
        with self._cond:
            running = list(self._running.values())
            self._running.clear()
            self._free = list(range(self.decoder.slots - 1, -1, -1))
        self._fail([s.response_id for s in running], exc)


def _first_tokens(response_ids: Sequence[int], tokens: np.ndarray) -> None:
    """LoadGen's first-token report: each query's first token, as its response data."""
    import mlperf_loadgen as lg

    tokens = np.ascontiguousarray(tokens, dtype=TOKEN_DTYPE)
    base, size = tokens.ctypes.data, tokens.itemsize
    # LoadGen copies the data it logs before FirstTokenComplete returns.
    lg.FirstTokenComplete([lg.QuerySampleResponse(r, base + k * size, size) for k, r in enumerate(response_ids)])


def _complete(done: Sequence[_Sequence]) -> None:
    """Complete each sequence with its int32 tokens and their count."""
    import mlperf_loadgen as lg

    arrays = [np.asarray(s.tokens, dtype=TOKEN_DTYPE) for s in done]
    lg.QuerySamplesComplete([lg.QuerySampleResponse(s.response_id, a.ctypes.data, a.nbytes, a.size)
                             for s, a in zip(done, arrays)])


def _answer_shed(response_ids: Sequence[int]) -> None:
    """Answer unstarted queries at once with placeholder tokens (calibration's shedding).

    With token latencies on, LoadGen counts a response without a first token, or with fewer
    than two tokens, as an error: a shed query reports 0 as its first token, then 0, 0.
    """
    import mlperf_loadgen as lg

    placeholder = np.zeros(2 * len(response_ids), dtype=TOKEN_DTYPE)
    _first_tokens(response_ids, placeholder[: len(response_ids)])
    base, size = placeholder.ctypes.data, 2 * placeholder.itemsize
    lg.QuerySamplesComplete([lg.QuerySampleResponse(r, base + k * size, size, 2) for k, r in enumerate(response_ids)])
