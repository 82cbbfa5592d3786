"""What an LLM system under test drives: a greedy decoder over a fixed number of slots.

A slot holds one sequence's state (its KV cache, its position). The SUT schedules: it
prefills a query's prompt into a free slot, which yields the query's first token, then
advances every occupied slot by one token per ``step``. Stopping (an end-of-sequence token,
the output limit) is the SUT's decision, from ``GenerationLimits``, so that a decoder only
computes.

Implemented by the Keras Llama (``benchpipe.benchmarks.llama.generate``) and by the synthetic
cost model (``benchpipe.infer.synthetic``), whose cost per call is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from benchpipe.contracts.errors import InferenceError

# Output tokens travel to LoadGen, and into the accuracy log, as int32: the reference's
# llama3.1-8b SUT writes np.int32 and its accuracy script reads them back with --dtype int32.
TOKEN_DTYPE = np.int32


class Decoder(Protocol):
    """Greedy generation, one token per slot per call."""

    @property
    def slots(self) -> int:
        """How many sequences it holds at once."""

    def prefill(self, slots: Sequence[int], prompts: Sequence[np.ndarray]) -> np.ndarray:
        """Start each prompt (int32 token ids) in its slot, dropping what the slot held;
        return each one's first generated token, shape (len(slots),)."""

    def step(self, slots: Sequence[int], tokens: np.ndarray) -> np.ndarray:
        """Feed ``tokens[i]`` (the last token generated) to ``slots[i]``; return each slot's
        next token, shape (len(slots),)."""


@dataclass(frozen=True)
class GenerationLimits:
    """When a sequence stops: at an end-of-sequence token (kept in the output, as the
    reference's vLLM keeps it) or after ``max_output_tokens`` tokens, whichever comes first;
    never before ``min_output_tokens``.

    With token latencies on, LoadGen logs an error for a response of fewer than two tokens
    (it derives the time per output token from them): hence at least 2, as the reference's
    ``min_tokens``.
    """

    max_output_tokens: int
    eos_token_ids: tuple[int, ...] = ()
    min_output_tokens: int = 2

    def __post_init__(self) -> None:
        if self.max_output_tokens < 2:
            raise InferenceError(f"max_output_tokens is {self.max_output_tokens}: it must be at least 2")
        if not 2 <= self.min_output_tokens <= self.max_output_tokens:
            raise InferenceError(f"min_output_tokens is {self.min_output_tokens}: it must be in "
                                 f"[2, max_output_tokens = {self.max_output_tokens}]")

    def finished(self, token: int, generated: int) -> bool:
        """Whether a sequence that has ``generated`` tokens, the last of them ``token``, stops."""
        if generated >= self.max_output_tokens:
            return True
        return generated >= self.min_output_tokens and token in self.eos_token_ids
