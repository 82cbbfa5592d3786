"""Models whose cost is known: a predictor and an LLM decoder that sleep instead of computing.

On two shared CPU cores a real model's compute is large against a latency bound and the
host's own stalls decide the tail, so what LoadGen and benchpipe's SUTs cost cannot be told
from what the model costs. These stand-ins cost what they say, on a device of their own:

* ``SyntheticPredictor``: a forward pass over ``n`` samples sleeps ``fixed_s + per_sample_s
  * n`` (by default 2 ms and 20 us: a GPU's launch cost and a small cost per sample), then
  answers top-1 classes that depend only on each sample's values.
* ``SyntheticDecoder``: ``benchpipe.infer.decoding.Decoder`` whose prefill sleeps
  ``prefill_fixed_s + prefill_per_token_s * prompt tokens`` and whose step sleeps
  ``step_fixed_s + step_per_slot_s * slots``; each sequence ends with an end-of-sequence
  token after a length decided by its prompt alone, so it is known before generation.

Both hold one lock while they sleep: a single accelerator runs one batch at a time, and two
threads calling at once wait for each other as they would for the device. Sleeping uses no
CPU, so the host's load moves the cost only by how late a sleeping thread wakes.

``best_server_rate`` says what a Server scenario could reach on such a predictor: the highest
Poisson arrival rate whose simulated p99 latency stays within a bound, for a batcher that
starts the next batch, of everything waiting, the moment the device is free.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchpipe.contracts.errors import InferenceError
from benchpipe.infer.decoding import TOKEN_DTYPE
from benchpipe.infer.sut import RESPONSE_DTYPE, Predictor, powers_of_two_up_to

# GPU-shaped defaults: a fixed cost per call (kernel launches, weights read once per batch)
# and a small cost per sample.
FIXED_S = 0.002
PER_SAMPLE_S = 20e-6
# time.sleep wakes about 70 us late on this kind of host (median; p90 200 us), 3.5 % of a 2 ms
# pass: the last SPIN_S are spun instead, holding the GIL for that long. With 100 us, a pass
# ended 1.4 us late at the median, but LoadGen's SingleStream p90 (its issue thread sleeping)
# came out 2 to 8 % above the raw calls'; with 200 us, 1 to 3 %.
SPIN_S = 200e-6
CLASSES = 1000  # ImageNet's, as ResNet-50 answers
# A class is a hash of a sample's first values: enough to tell samples apart, and cheap.
HASHED_VALUES = 16
_HASH_MULTIPLIERS = np.random.default_rng(0x5EED).integers(1, 2**32, HASHED_VALUES, dtype=np.uint64) | np.uint64(1)


def sleep_until(deadline: float, spin_s: float = SPIN_S) -> None:
    """Return at ``deadline`` (a ``time.perf_counter`` time), never before it."""
    remaining = deadline - time.perf_counter() - spin_s
    if remaining > 0:
        time.sleep(remaining)
    while time.perf_counter() < deadline:
        pass


def hashed_classes(batch: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """Each sample's class (int32), from the bits of its first HASHED_VALUES values."""
    rows = np.ascontiguousarray(batch.reshape(len(batch), -1)[:, :HASHED_VALUES], dtype=np.float32)
    bits = rows.view(np.uint32).astype(np.uint64)
    mixed = (bits * _HASH_MULTIPLIERS[: bits.shape[1]]).sum(axis=1)  # wraps modulo 2**64, deterministically
    return (mixed % np.uint64(classes)).astype(RESPONSE_DTYPE)


class SyntheticPredictor(Predictor):
    """A ``Predictor`` whose pass over ``n`` samples costs ``fixed_s + per_sample_s * n``.

    The cost is of the samples given, not of a padded size: an engine with dynamic shapes. A
    batch above the largest size runs in passes of that size, as ``CompiledPredictor`` does.
    ``batch_seconds`` holds the nominal cost of each size. ``passes`` counts the passes by size,
    ``contended`` those that found another pass running and waited for it.
    """

    one_pass_at_a_time = True  # one device: a pass waits for the one running

    def __init__(self, batch_sizes: Sequence[int] = tuple(powers_of_two_up_to(256)), *, fixed_s: float = FIXED_S,
                 per_sample_s: float = PER_SAMPLE_S, sample_shape: Sequence[int] | None = None,
                 classes: int = CLASSES, spin_s: float = SPIN_S) -> None:
        sizes = sorted({int(b) for b in batch_sizes})
        if not sizes or sizes[0] < 1:
            raise InferenceError(f"synthetic predictor: batch sizes must be positive integers, not {list(batch_sizes)}")
        if fixed_s < 0 or per_sample_s < 0 or classes < 1:
            raise InferenceError(f"synthetic predictor: costs must not be negative and classes at least 1, not "
                                 f"{fixed_s}, {per_sample_s}, {classes}")
        self.batch_sizes = sizes
        self.fixed_s, self.per_sample_s = float(fixed_s), float(per_sample_s)
        self.sample_shape = None if sample_shape is None else tuple(int(d) for d in sample_shape)
        self.classes, self.spin_s = int(classes), float(spin_s)
        self.batch_seconds = {size: self.cost(size) for size in sizes}
        self.passes: Counter[int] = Counter()
        self.contended = 0
        self._device = threading.Lock()

    def cost(self, count: int) -> float:
        """Seconds one pass over ``count`` samples sleeps."""
        return self.fixed_s + self.per_sample_s * count

    def describe(self) -> str:
        return (f"synthetic predictor: a pass over n samples sleeps {self.fixed_s * 1e3:g} ms + "
                f"{self.per_sample_s * 1e6:g} us x n, one pass at a time")

    def warm_up(self, seconds: float) -> None:
        pass  # nothing to warm: the first pass costs what every pass costs

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.sample_shape is not None and batch.shape[1:] != self.sample_shape:
            raise InferenceError(f"synthetic predictor: batch of shape {batch.shape}, it takes {self.sample_shape} "
                                 "samples")
        largest = self.batch_sizes[-1]
        if len(batch) > largest:
            return np.concatenate([self(batch[start : start + largest]) for start in range(0, len(batch), largest)])
        if len(batch) == 0:
            return np.empty(0, RESPONSE_DTYPE)
        if not self._device.acquire(blocking=False):
            self._device.acquire()
            self.contended += 1
        try:
            started = time.perf_counter()
            predictions = hashed_classes(batch, self.classes)
            sleep_until(started + self.cost(len(batch)), self.spin_s)
            self.passes[len(batch)] += 1
        finally:
            self._device.release()
        return predictions


# --- the Server scenario's reference: a work-conserving batcher, simulated -----------------------


def simulate_server_p99(rate: float, fixed_s: float, per_sample_s: float, max_batch: int, *, queries: int = 20_000,
                        seed: int = 0) -> float:
    """p99 latency (s) of ``queries`` Poisson arrivals at ``rate``/s on one device that, whenever
    it is free, runs everything waiting (up to ``max_batch``) as one pass.

    No batcher serves a single device with less waiting: it never idles while a sample waits
    and never holds a sample back for a fuller batch. The host adds nothing here.
    """
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, queries))
    latencies = np.empty(queries)
    free_at, k = 0.0, 0
    while k < queries:
        start = max(free_at, arrivals[k])
        # Everything that arrived by the start, up to max_batch, goes in this pass.
        end = min(int(np.searchsorted(arrivals, start, side="right")), k + max_batch)
        end = max(end, k + 1)
        free_at = start + fixed_s + per_sample_s * (end - k)
        latencies[k:end] = free_at - arrivals[k:end]
        k = end
    return float(np.percentile(latencies, 99))


def best_server_rate(fixed_s: float, per_sample_s: float, max_batch: int, p99_s: float, *, queries: int = 20_000,
                     precision: float = 0.002, seed: int = 0) -> float:
    """The highest Poisson rate (queries/s) whose simulated p99 (``simulate_server_p99``) is at
    most ``p99_s``, by bisection between 0 and the device's capacity at ``max_batch``."""
    if fixed_s + per_sample_s > p99_s:
        return 0.0
    low, high = 0.0, max_batch / (fixed_s + per_sample_s * max_batch)
    while high - low > precision * high:
        middle = (low + high) / 2
        if simulate_server_p99(middle, fixed_s, per_sample_s, max_batch, queries=queries, seed=seed) <= p99_s:
            low = middle
        else:
            high = middle
    return low


# --- LLM: lengths like the reference's CNN/DailyMail workload ----------------------------------


@dataclass(frozen=True)
class ClippedLognormal:
    """Integer lengths drawn from a lognormal (``median``, ``sigma`` of its log), clipped to
    [``low``, ``high``]: long-tailed like text lengths, never empty nor past a context limit."""

    median: float
    sigma: float
    low: int
    high: int

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        values = rng.lognormal(math.log(self.median), self.sigma, count)
        return np.clip(np.rint(values), self.low, self.high).astype(np.int64)

    def mean(self) -> float:
        """The clipped distribution's mean, in closed form (before rounding to integers)."""
        mu, s = math.log(self.median), self.sigma

        def below(x: float) -> float:  # P(X <= x)
            return 0.5 * (1 + math.erf((math.log(x) - mu) / (s * math.sqrt(2))))

        def partial(x: float) -> float:  # E[X; X <= x]
            return math.exp(mu + s * s / 2) * 0.5 * (1 + math.erf((math.log(x) - mu - s * s) / (s * math.sqrt(2))))

        return (self.low * below(self.low) + partial(self.high) - partial(self.low)
                + self.high * (1 - below(self.high)))


# Prompts: CNN/DailyMail articles average about 780 words (See et al., 2017, table 1 of "Get
# to the point"), about 800 Llama 3 tokens with the reference's chat template around them;
# the reference tokenizes with model_max_length 2048. Median 730 and sigma 0.45 give a clipped
# mean of about 800; the spread is an assumption (news articles run from a few paragraphs to
# several pages), not a fit to the dataset.
CNN_DAILYMAIL_PROMPT_TOKENS = ClippedLognormal(median=730.0, sigma=0.45, low=64, high=2048)
# Outputs: the reference's accuracy targets for llama3.1-8b list gen_len 8,167,644 characters
# over 13,368 summaries, 611 a summary, about 130 tokens at 4.7 characters a token. Median 122
# and sigma 0.35 give a mean of about 130 with summaries mostly of 70 to 220 tokens; the
# reference generates at least 2 tokens (min_tokens) and stops at 2,000 (max_tokens).
CNN_DAILYMAIL_OUTPUT_TOKENS = ClippedLognormal(median=122.0, sigma=0.35, low=2, high=2000)
# Llama 3's vocabulary: ids from 128,000 up are special tokens; 128,009 (<|eot_id|>) ends an
# assistant's turn, the token the reference's outputs end with.
LLAMA3_VOCAB = 128_256
LLAMA3_FIRST_SPECIAL = 128_000
LLAMA3_EOS = 128_009


def prompt_seed(prompt: np.ndarray) -> int:
    """A 64-bit seed from a prompt's token ids, the same in every process."""
    data = np.ascontiguousarray(prompt, dtype=TOKEN_DTYPE).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def cnn_dailymail_output_length(prompt: np.ndarray) -> int:
    """The output length (EOS included) the synthetic decoder gives ``prompt``: drawn from
    CNN_DAILYMAIL_OUTPUT_TOKENS with the prompt's own seed."""
    return int(CNN_DAILYMAIL_OUTPUT_TOKENS.draw(np.random.default_rng(prompt_seed(prompt)), 1)[0])


def cnn_dailymail_prompts(count: int, seed: int = 0, vocab: int = LLAMA3_FIRST_SPECIAL) -> list[np.ndarray]:
    """``count`` prompts of random ordinary token ids, their lengths from CNN_DAILYMAIL_PROMPT_TOKENS."""
    rng = np.random.default_rng(seed)
    lengths = CNN_DAILYMAIL_PROMPT_TOKENS.draw(rng, count)
    return [rng.integers(0, vocab, int(n)).astype(TOKEN_DTYPE) for n in lengths]


# --- LLM: the decoder ------------------------------------------------------------------------------

# The defaults: an 8B model on one accelerator. Prefill is compute-bound, about 16 GFLOP a
# token, 25 us at the 600 TFLOP/s a large accelerator sustains in bf16; a decode step reads
# the weights once for every slot, a fixed cost, plus a little per slot for its KV cache.
PREFILL_FIXED_S = 0.002
PREFILL_PER_TOKEN_S = 25e-6
STEP_FIXED_S = 0.002
STEP_PER_SLOT_S = 20e-6


class SyntheticDecoder:
    """A ``Decoder`` of known cost whose sequences end where ``output_length(prompt)`` says.

    A slot's sequence emits ordinary tokens (below ``first_special``, from the prompt's seed
    and the position), and ``eos_token_id`` as its ``output_length(prompt)``-th token and at
    every position after it, so that with ``GenerationLimits(max_output_tokens, (eos,),
    min_output_tokens)`` a sequence holds ``min(max(length, min_output_tokens),
    max_output_tokens)`` tokens (``expected_tokens``). ``prefills`` and ``steps`` count the
    calls; ``busy_s`` sums what they slept.
    """

    def __init__(self, slots: int, *, output_length: Callable[[np.ndarray], int] = cnn_dailymail_output_length,
                 eos_token_id: int = LLAMA3_EOS, first_special: int = LLAMA3_FIRST_SPECIAL,
                 prefill_fixed_s: float = PREFILL_FIXED_S, prefill_per_token_s: float = PREFILL_PER_TOKEN_S,
                 step_fixed_s: float = STEP_FIXED_S, step_per_slot_s: float = STEP_PER_SLOT_S,
                 spin_s: float = SPIN_S) -> None:
        if slots < 1:
            raise InferenceError(f"synthetic decoder: slots must be at least 1, not {slots}")
        if min(prefill_fixed_s, prefill_per_token_s, step_fixed_s, step_per_slot_s) < 0:
            raise InferenceError("synthetic decoder: costs must not be negative")
        if first_special < 1 or (0 <= eos_token_id < first_special):
            raise InferenceError(f"synthetic decoder: the EOS token {eos_token_id} must not be an ordinary token "
                                 f"(below {first_special})")
        self._slots = int(slots)
        self.output_length = output_length
        self.eos_token_id, self.first_special = int(eos_token_id), int(first_special)
        self.prefill_fixed_s, self.prefill_per_token_s = float(prefill_fixed_s), float(prefill_per_token_s)
        self.step_fixed_s, self.step_per_slot_s = float(step_fixed_s), float(step_per_slot_s)
        self.spin_s = float(spin_s)
        self.prefills = self.steps = 0
        self.busy_s = 0.0
        self._seed = np.zeros(slots, np.uint64)
        self._length = np.zeros(slots, np.int64)  # where each slot's EOS falls (1-based)
        self._generated = np.zeros(slots, np.int64)  # tokens each slot has emitted; 0: empty
        self._device = threading.Lock()

    @property
    def slots(self) -> int:
        return self._slots

    def prefill_cost(self, prompt_tokens: int) -> float:
        return self.prefill_fixed_s + self.prefill_per_token_s * prompt_tokens

    def step_cost(self, slots: int) -> float:
        return self.step_fixed_s + self.step_per_slot_s * slots

    def expected_tokens(self, prompt: np.ndarray, max_output_tokens: int, min_output_tokens: int = 1) -> int:
        """How many tokens a sequence of ``prompt`` holds under those limits (EOS included)."""
        return min(max(self._checked_length(prompt), min_output_tokens), max_output_tokens)

    def prefill(self, slots: Sequence[int], prompts: Sequence[np.ndarray]) -> np.ndarray:
        picked = self._checked_slots(slots, "prefill")
        if len(prompts) != len(picked):
            raise InferenceError(f"synthetic decoder: {len(prompts)} prompts for {len(picked)} slots")
        tokens = sum(len(p) for p in prompts)
        with self._device:
            started = time.perf_counter()
            for slot, prompt in zip(picked, prompts):
                self._seed[slot] = np.uint64(prompt_seed(prompt))
                self._length[slot] = self._checked_length(prompt)
                self._generated[slot] = 1
            first = self._tokens(picked)
            self._sleep(started, self.prefill_cost(tokens))
            self.prefills += 1
        return first

    def step(self, slots: Sequence[int], tokens: np.ndarray) -> np.ndarray:
        picked = self._checked_slots(slots, "step")
        if len(tokens) != len(picked):
            raise InferenceError(f"synthetic decoder: {len(tokens)} tokens for {len(picked)} slots")
        if picked.size and (self._generated[picked] == 0).any():
            raise InferenceError("synthetic decoder: step on a slot that was never prefilled")
        with self._device:
            started = time.perf_counter()
            self._generated[picked] += 1
            following = self._tokens(picked)
            self._sleep(started, self.step_cost(len(picked)))
            self.steps += 1
        return following

    def _tokens(self, picked: np.ndarray) -> np.ndarray:
        """The token each picked slot emits at its current position (the lock is held)."""
        position = self._generated[picked].astype(np.uint64)
        ordinary = (self._seed[picked] + position * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)
        ordinary %= np.uint64(self.first_special)
        ended = self._generated[picked] >= self._length[picked]
        return np.where(ended, self.eos_token_id, ordinary).astype(TOKEN_DTYPE)

    def _sleep(self, started: float, seconds: float) -> None:
        sleep_until(started + seconds, self.spin_s)
        self.busy_s += seconds

    def _checked_slots(self, slots: Sequence[int], what: str) -> np.ndarray:
        picked = np.asarray(slots, dtype=np.int64).reshape(-1)
        if picked.size and (picked.min() < 0 or picked.max() >= self._slots):
            raise InferenceError(f"synthetic decoder: {what} on slot outside 0..{self._slots - 1}")
        if len(np.unique(picked)) != len(picked):
            raise InferenceError(f"synthetic decoder: {what} names a slot twice")
        return picked

    def _checked_length(self, prompt: np.ndarray) -> int:
        length = int(self.output_length(prompt))
        if length < 1:
            raise InferenceError(f"synthetic decoder: output length {length} for a prompt: it must be at least 1")
        return length
