"""A decoder whose outputs are known, for the LLM SUT's and calibration's tests."""

from __future__ import annotations

import time

import numpy as np

from benchpipe.infer.llm_sut import PromptLibrary

EOS = 0


class CountingDecoder:
    """A decoder whose outputs are known: the first token is 100 + the prompt's first id,
    each next one the last plus one, and EOS after ``3 + prompt[0] % 7`` tokens.

    ``step_s`` per decode step models a device's launch cost. It records every call's slots.
    """

    def __init__(self, slots: int, step_s: float = 0.0, fail_on_prompt: int | None = None) -> None:
        self.slots = slots
        self.step_s = step_s
        self.fail_on_prompt = fail_on_prompt
        self.state: dict[int, list[int]] = {}
        self.calls: list[tuple[str, list[int]]] = []
        self.active: set[int] = set()  # slots whose sequence has not emitted EOS yet
        self.busy_at_prefill: list[int] = []  # len(active) at each prefill

    @staticmethod
    def expected(prompt: np.ndarray) -> list[int]:
        length = 3 + int(prompt[0]) % 7
        first = 100 + int(prompt[0])
        return [first + k for k in range(length - 1)] + [EOS]

    def prefill(self, slots, prompts):
        self.calls.append(("prefill", list(slots)))
        self.busy_at_prefill.append(len(self.active))
        self.active.update(slots)
        out = []
        for slot, prompt in zip(slots, prompts):
            if self.fail_on_prompt is not None and int(prompt[0]) == self.fail_on_prompt:
                raise RuntimeError(f"prompt {self.fail_on_prompt} breaks the decoder")
            self.state[slot] = [3 + int(prompt[0]) % 7, 1]
            out.append(100 + int(prompt[0]))
        return np.array(out)

    def step(self, slots, tokens):
        self.calls.append(("step", list(slots)))
        if self.step_s:
            time.sleep(self.step_s)
        out = []
        for slot, token in zip(slots, tokens):
            length, generated = self.state[slot]
            self.state[slot][1] = generated + 1
            if generated + 1 >= length:
                self.active.discard(slot)
            out.append(EOS if generated + 1 >= length else int(token) + 1)
        return np.array(out)


def prompt_library(count: int = 48) -> PromptLibrary:
    return PromptLibrary([np.arange(i, i + 4 + i % 5) for i in range(count)])
