"""KVCacheDecoder: greedy decoding with a KV cache gives the tokens of the model's own forward pass.

The reference recomputes the whole growing sequence with the Keras model for every token and
takes the argmax at its last position: no cache, no slots. The decoder must agree token for
token while sequences of different lengths share its slots, join while others are midway and
reuse a slot another sequence left.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from test_llama_checkpoint import hf_reference_logits, hf_tensors, write_checkpoint

from benchpipe.benchmarks.llama.generate import KVCacheDecoder
from benchpipe.benchmarks.llama.model import LlamaShape, RopeScaling, build_llama
from benchpipe.contracts.errors import InferenceError

VOCABULARY = 64
# Multi-head attention: as many key/value heads as query heads.
MHA = LlamaShape(vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=4,
                 hidden_dim=32, intermediate_dim=64, rope_max_wavelength=100.0)
# Grouped-query attention, four query heads per key/value head, as Llama 3.1 8B groups them.
GQA = LlamaShape(vocabulary_size=VOCABULARY, num_layers=3, num_query_heads=8, num_key_value_heads=2,
                 hidden_dim=64, intermediate_dim=96, rope_max_wavelength=100.0)
# Llama 3.1's rotary scaling, its context shrunk so that the scaling matters within 48 positions.
LLAMA3 = LlamaShape(vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=2,
                    hidden_dim=32, intermediate_dim=64, rope_max_wavelength=500.0,
                    rope_scaling=RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                             original_max_position_embeddings=16))
MAX_LENGTH = 48


def randomized(shape: LlamaShape, seed: int = 0, lora_rank: int = 0) -> keras.Model:
    """A model with every weight random (norms' scales included), adapters' B too when it has them.

    Query and key kernels are drawn three times larger than the rest: sharper attention makes the
    next token depend on the earlier positions, so the greedy sequences vary instead of repeating
    one token (which would let a decoder with wrong positions pass).
    """
    model = build_llama(shape, lora_rank=lora_rank, lora_alpha=2.0 * lora_rank)
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        if variable.path.endswith("/scale"):
            value = 1.0 + 0.2 * rng.standard_normal(variable.shape)
        else:
            value = rng.standard_normal(variable.shape) / np.sqrt(variable.shape[0])
            if variable.path.endswith(("query/kernel", "key/kernel")):
                value *= 3.0
        variable.assign(value.astype(np.float32))
    return model


def reference(model, prompt: np.ndarray, count: int) -> list[int]:
    """``count`` greedy tokens, each from a full forward pass over the sequence so far."""
    sequence, generated = list(prompt), []
    for _ in range(count):
        logits = np.asarray(model(np.array([sequence], np.int32), training=False))
        token = int(np.argmax(logits[0, -1]))
        generated.append(token)
        sequence.append(token)
    return generated


def prompts(seed: int, lengths: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCABULARY, size=n).astype(np.int32) for n in lengths]


# A schedule of sequences through 3 slots: (prompt length, slot, tick it joins, tokens to generate).
# Slot 1 joins at tick 3, while slot 0 is mid-sequence; slot 0's first sequence ends at tick 6 and
# another takes the slot at tick 8. Lengths 5, 11, 20 and 33 fall in three prompt buckets (16, 32, 48).
SCHEDULE = [(5, 0, 0, 7), (20, 2, 0, 14), (11, 1, 3, 12), (33, 0, 8, 10), (1, 1, 16, 6)]
# Four slots, all busy from tick 3, when slot 3 joins and is left out: three of four slots step in
# a full batch (every slot a row), the fourth's row computed but not written.
FULL_SCHEDULE = [(5, 0, 0, 9), (20, 2, 0, 14), (11, 1, 1, 12), (7, 3, 3, 8), (30, 0, 10, 8)]


def run_schedule(decoder: KVCacheDecoder, schedule, sequences: list[np.ndarray]) -> list[list[int]]:
    """Drive the decoder as a continuous-batching SUT does: admit what joins at each tick (prefilled
    together), then step the occupied slots, on odd ticks in reverse order and leaving the newest
    one out, so that a step's slots are a subset in any order."""
    outputs: list[list[int]] = [[] for _ in schedule]
    running: dict[int, int] = {}  # slot -> index in schedule
    tick = 0
    while tick == 0 or running or any(start >= tick for _, _, start, _ in schedule):
        joining = [i for i, (_, slot, start, _) in enumerate(schedule) if start == tick]
        if joining:
            assert all(schedule[i][1] not in running for i in joining), "the schedule reuses a busy slot"
            firsts = decoder.prefill([schedule[i][1] for i in joining], [sequences[i] for i in joining])
            for i, token in zip(joining, firsts):
                outputs[i].append(int(token))
                running[schedule[i][1]] = i
        finished = [slot for slot, i in running.items() if len(outputs[i]) == schedule[i][3]]
        for slot in finished:
            del running[slot]
        stepping = sorted(running, reverse=tick % 2 == 1)
        if tick % 2 == 1 and len(stepping) > 1:
            stepping = [s for s in stepping if running[s] not in joining] or stepping
        if stepping:
            following = decoder.step(stepping, np.array([outputs[running[s]][-1] for s in stepping], np.int32))
            assert following.dtype == np.int32 and following.shape == (len(stepping),)
            for slot, token in zip(stepping, following):
                outputs[running[slot]].append(int(token))
        tick += 1
    return outputs


def check_schedule(model, schedule=SCHEDULE, slots: int = 3, seed: int = 1) -> KVCacheDecoder:
    sequences = prompts(seed, [length for length, *_ in schedule])
    decoder = KVCacheDecoder(model, slots, MAX_LENGTH)
    decoded = run_schedule(decoder, schedule, sequences)
    expected = [reference(model, prompt, count) for prompt, (*_, count) in zip(sequences, schedule)]
    # The references vary: a model that repeats one token would not tell positions apart.
    assert all(len(set(tokens)) > 1 for tokens in expected) and len({t for ts in expected for t in ts}) > 10
    assert decoded == expected
    return decoder


# ---------------------------------------------------------------- the tokens of the model's forward pass


@pytest.mark.parametrize("schedule, slots", [(SCHEDULE, 3), (FULL_SCHEDULE, 4)])
def test_continuous_batching_gives_the_reference_tokens(schedule, slots):
    check_schedule(randomized(MHA), schedule, slots)


def test_grouped_query_attention_gives_the_reference_tokens():
    check_schedule(randomized(GQA, seed=2), seed=3)


def test_lora_adapters_with_nonzero_b_are_applied():
    adapted = randomized(GQA, seed=4, lora_rank=4)
    assert all(np.any(v.numpy()) for v in adapted.variables if v.path.endswith("lora_b"))
    base = build_llama(GQA)  # the same weights without the adapters
    values = {v.path: v.numpy() for v in adapted.variables}
    for variable in base.variables:
        variable.assign(values[variable.path])
    sequences = prompts(5, [9, 17])
    assert any(reference(adapted, p, 8) != reference(base, p, 8) for p in sequences)  # the adapters matter
    check_schedule(adapted, seed=5)


def test_llama3_rope_scaling_gives_the_reference_tokens():
    check_schedule(randomized(LLAMA3, seed=6), seed=7)


def test_a_slot_left_out_of_steps_resumes_where_it_was():
    model = randomized(MHA, seed=8)
    sequences = prompts(9, [7, 13])
    decoder = KVCacheDecoder(model, 2, MAX_LENGTH)
    first = [int(t) for t in decoder.prefill([0, 1], sequences)]
    outputs = [[first[0]], [first[1]]]
    for _ in range(5):  # slot 1 waits while slot 0 runs
        outputs[0].append(int(decoder.step([0], np.array([outputs[0][-1]], np.int32))[0]))
    decoder.warm_up()  # runs every graph, changing no slot's state
    for _ in range(5):
        outputs[1].append(int(decoder.step([1], np.array([outputs[1][-1]], np.int32))[0]))
    assert (decoder.position(0), decoder.position(1)) == (7 + 5, 13 + 5)
    assert outputs == [reference(model, p, 6) for p in sequences]


def test_a_step_of_no_slots_changes_nothing():
    decoder = KVCacheDecoder(randomized(MHA, seed=8), 2, MAX_LENGTH)
    decoder.prefill([1], prompts(9, [5]))
    none = decoder.step([], np.empty(0, np.int32))
    assert none.shape == (0,) and none.dtype == np.int32 and decoder.position(1) == 5


def test_ties_go_to_the_lowest_id():
    """Final hidden state's dimension 0 alone reaches the logits: ids 17 and 41 score +h0, ids 5 and
    50 score -h0, every other id 0. Whatever h0's sign, two ids tie for the maximum."""
    model = randomized(MHA, seed=10)
    norm = model.get_layer("final_norm").scale
    norm.assign(np.eye(1, MHA.hidden_dim, dtype=np.float32)[0])
    head = np.zeros((MHA.hidden_dim, VOCABULARY), np.float32)
    head[0, [17, 41]], head[0, [5, 50]] = 1.0, -1.0
    model.get_layer("lm_head").kernel.assign(head)
    sequences = prompts(11, [3, 8, 15, 21])
    decoder = KVCacheDecoder(model, 4, MAX_LENGTH)
    tokens = [decoder.prefill([0, 1, 2, 3], sequences)]
    for _ in range(4):
        tokens.append(decoder.step([0, 1, 2, 3], tokens[-1]))
    decoded = np.stack(tokens, axis=1)
    assert set(decoded.ravel()) == {5, 17}  # both signs occurred, and never the higher id of a tie
    assert decoded.tolist() == [reference(model, p, 5) for p in sequences]


# ---------------------------------------------------------------- from a checkpoint


def test_from_checkpoint_decodes_what_hugging_face_computes_with_llama3_scaling(tmp_path):
    """A Llama 3.1-style checkpoint (rope_scaling "llama3", grouped heads) through from_checkpoint,
    against the numpy transcription of transformers' forward pass."""
    from test_llama_checkpoint import SHAPE, config

    source = randomized(SHAPE, seed=12)
    folder = write_checkpoint(tmp_path / "llama", hf_tensors(source))
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
    cfg = {**config(), "rope_scaling": scaling}
    (folder / "config.json").write_text(json.dumps(cfg))
    decoder = KVCacheDecoder.from_checkpoint(folder, slots=2, max_sequence_length=32)
    sequences = prompts(13, [6, 10])
    tokens = [decoder.prefill([0, 1], sequences)]
    for _ in range(7):
        tokens.append(decoder.step([0, 1], tokens[-1]))
    decoded = np.stack(tokens, axis=1).tolist()
    expected = []
    for prompt in sequences:
        sequence = list(prompt)
        for _ in range(8):
            sequence.append(int(np.argmax(hf_reference_logits(hf_tensors(source), cfg, np.array([sequence]))[0, -1])))
        expected.append(sequence[len(prompt):])
    assert decoded == expected


# ---------------------------------------------------------------- traces


def test_calls_trace_once_per_bucket_and_warm_up_traces_them_all():
    model = randomized(MHA, seed=14)
    decoder = KVCacheDecoder(model, 4, MAX_LENGTH)
    assert decoder.prompt_buckets == [16, 32, 48] and decoder.batch_buckets == [1, 2, 4]
    check = prompts(15, [3, 9, 14, 2, 30, 45])
    decoder.prefill([0], check[:1])
    decoder.prefill([1, 2], check[1:3])
    decoder.prefill([3], check[3:4])  # batch 1, length 16 again
    decoder.prefill([2, 0, 1], [check[4], check[0], check[5]])  # buckets 32 (1 row) and 16, 48 (1 row each)
    tokens = np.zeros(4, np.int32)
    for subset in ([0, 1, 2, 3], [2], [3, 0], [1, 3, 0], [0, 1, 2, 3]):
        decoder.step(subset, tokens[: len(subset)])
    assert dict(decoder.trace_counts) == {"step 4": 1, "step 1": 1, "step 2": 1, "prefill 1 x 16": 1,
                                          "prefill 2 x 16": 1, "prefill 1 x 32": 1, "prefill 1 x 48": 1}
    decoder.warm_up()
    assert set(decoder.trace_counts) == {f"step {b}" for b in (1, 2, 4)} | {
        f"prefill {b} x {n}" for b in (1, 2, 4) for n in (16, 32, 48)}
    assert set(decoder.trace_counts.values()) == {1}
    before = dict(decoder.trace_counts)
    decoder.prefill([0, 1, 2], prompts(16, [40, 41, 45]))  # batch 3 pads to the traced 4
    decoder.step([0, 1, 2], np.zeros(3, np.int32))
    assert dict(decoder.trace_counts) == before


# ---------------------------------------------------------------- what is refused


@pytest.fixture
def small_decoder() -> KVCacheDecoder:
    return KVCacheDecoder(randomized(MHA, seed=17), 2, 20)


@pytest.mark.parametrize("call, message", [
    (lambda d: d.prefill([0, 0], prompts(0, [3, 4])), "name a slot twice"),
    (lambda d: d.prefill([2], prompts(0, [3])), r"slots \[2\]: each must be in \[0, 2\)"),
    (lambda d: d.prefill([0], prompts(0, [21])), "a prompt of 21 tokens; it must hold 1 to 20"),
    (lambda d: d.prefill([0], [np.array([], np.int32)]), "a prompt of 0 tokens"),
    (lambda d: d.prefill([0], [np.array([3, 64])]), r"ids outside the vocabulary \[0, 64\)"),
    (lambda d: d.prefill([0, 1], prompts(0, [3])), "2 slots but 1 prompts"),
    (lambda d: d.step([1], np.array([3], np.int32)), "slot 1 holds no sequence"),
    (lambda d: d.step([0], np.array([3.0])), "token ids are integers"),
])
def test_a_wrong_call_is_refused_by_what_is_wrong(small_decoder, call, message):
    small_decoder.prefill([0], prompts(0, [4]))
    with pytest.raises(InferenceError, match=message):
        call(small_decoder)


def test_prompt_buckets_past_the_cache_are_cut_to_it_and_the_largest_bounds_prompts():
    decoder = KVCacheDecoder(randomized(MHA, seed=18), 2, 40, prompt_buckets=[16, 8, 64])
    assert decoder.prompt_buckets == [8, 16, 40]
    decoder.prefill([0], prompts(19, [40]))
    short = KVCacheDecoder(randomized(MHA, seed=18), 2, 40, prompt_buckets=[8, 16])
    with pytest.raises(InferenceError, match="a prompt of 17 tokens; it must hold 1 to 16 .*max_sequence_length = 40"):
        short.prefill([0], prompts(19, [17]))


def test_a_sequence_cannot_outgrow_the_cache(small_decoder):
    small_decoder.prefill([0], prompts(1, [18]))
    small_decoder.step([0], np.array([1], np.int32))
    small_decoder.step([0], np.array([1], np.int32))
    assert small_decoder.position(0) == 20
    with pytest.raises(InferenceError, match="slot 0 holds max_sequence_length = 20 tokens"):
        small_decoder.step([0], np.array([1], np.int32))
