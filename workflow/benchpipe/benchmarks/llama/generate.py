"""Greedy generation with a KV cache for the Keras Llama of ``model.py``: an LLM SUT's decoder.

``KVCacheDecoder`` has the shape of ``benchpipe.infer.decoding.Decoder`` (``slots``, ``prefill``,
``step``; int32 tokens), which it does not import: benchmarks sit below infer. It computes what
``build_llama``'s model computes, from that model's own weights (LoRA adapters merged into their
kernels), but one position at a time, keeping each slot's keys and values instead of recomputing
the whole sequence for every token.

Fixed shapes, so that TensorFlow traces a bounded number of graphs, all before a timed test if
``warm_up`` is called:

* The cache: per layer, keys and values of shape (slots, kv_heads, max_sequence_length + 1,
  head_dim), preallocated. The last position is a scratch column that nothing reads: a row
  that must not write (a padding row, a slot left out of a step) writes there.
* ``step`` pads its slots to a batch bucket (powers of two up to slots): one graph per bucket.
  A batch smaller than slots gathers its slots' caches (a copy) and computes only its rows;
  a full batch computes every slot, the ones left out included, against the caches in place.
  Measured on the stand-in's shape (2 layers, width 64, 8 slots, one CPU thread), one active
  slot stepped 1.6 to 2 times as fast gathered as with all 8 slots computed; 8 active slots
  stepped as fast gathered as in place, and in place spares a large model's caches (gigabytes
  for Llama 3.1 8B) a copy per layer per step.
* ``prefill`` pads prompts to a length bucket (``prompt_buckets``; by default powers of two
  up to max_sequence_length) and their count to a batch bucket: one graph per pair used.

Each row attends to its own slot's positions 0..pos (a mask, not a slice, so shapes stay fixed)
and is rotated at its own position, so slots at different points of their sequences share a
step: continuous batching. Greedy: the argmax of the last position's logits, the lowest id on a
tie. Not thread-safe: one thread (the SUT's scheduler) owns a decoder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from benchpipe.benchmarks.llama.model import LlamaShape, LoraDense, RMSNorm, rotary_inverse_frequencies
from benchpipe.contracts.errors import InferenceError

# What the decoder hands out: int32 token ids, as an LLM SUT reports them to LoadGen.
TOKEN_DTYPE = np.int32
# The score of a masked position: the model's own (model.Attention), so that softmax agrees.
MASKED = -1e9
SMALLEST_PROMPT_BUCKET = 16


@dataclass(frozen=True)
class LayerWeights:
    """One decoder block's weights, Keras' orientation ([in, out] kernels)."""

    attention_norm: tf.Variable
    query: tf.Variable
    key: tf.Variable
    value: tf.Variable
    attention_output: tf.Variable
    mlp_norm: tf.Variable
    gate: tf.Variable
    up: tf.Variable
    down: tf.Variable


@dataclass(frozen=True)
class LlamaWeights:
    """Everything the decoder computes with. Held as variables, never as graph constants: a traced
    graph that embedded an 8B model's weights would exceed protobuf's 2 GB."""

    shape: LlamaShape
    embedding: tf.Variable
    layers: tuple[LayerWeights, ...]
    final_norm: tf.Variable
    lm_head: tf.Variable


# ---------------------------------------------------------------- the weights of a Keras Llama


def model_shape(model: keras.Model) -> LlamaShape:
    """The LlamaShape that build_llama built ``model`` with."""
    for layer in model.layers:
        shape = getattr(getattr(layer, "attention", None), "shape", None)
        if isinstance(shape, LlamaShape):
            return shape
    raise InferenceError(f"model {model.name}: no decoder block of build_llama's (is it a Llama?)")


def _variable(weight: keras.Variable) -> tf.Variable:
    """The TensorFlow variable behind a Keras weight: shared, not copied."""
    return weight.value


def projection_kernel(layer: LoraDense) -> tf.Variable:
    """The kernel that computes what ``layer`` computes at inference (no dropout): W + A @ B * alpha / rank.

    Without adapters, or with B still zero, the layer's own kernel, shared: merging would only
    copy it (an 8B model's projections are gigabytes). Merged in float64, then rounded once.
    """
    if not layer.rank:
        return _variable(layer.kernel)
    b = np.asarray(layer.lora_b.numpy(), np.float64)
    if not b.any():
        return _variable(layer.kernel)
    a = np.asarray(layer.lora_a.numpy(), np.float64)
    merged = np.asarray(layer.kernel.numpy(), np.float64) + a @ b * (layer.alpha / layer.rank)
    return tf.Variable(merged.astype(np.float32), trainable=False, name=f"{layer.name}_merged")


def _block_weights(block: keras.layers.Layer) -> LayerWeights:
    attention = block.attention
    return LayerWeights(
        attention_norm=_variable(block.attention_norm.scale), query=projection_kernel(attention.query),
        key=projection_kernel(attention.key), value=projection_kernel(attention.value),
        attention_output=projection_kernel(attention.attention_output), mlp_norm=_variable(block.mlp_norm.scale),
        gate=_variable(block.gate.kernel), up=_variable(block.up.kernel), down=_variable(block.down.kernel))


def llama_weights(model: keras.Model) -> LlamaWeights:
    """The weights of a model that build_llama built (trained or loaded), adapters merged.

    Shared with the model, so that an 8B model is not held twice; a merged kernel is a copy,
    taken now.
    """
    shape = model_shape(model)
    try:
        blocks = [model.get_layer(f"decoder_{i}") for i in range(shape.num_layers)]
        embedding, final_norm, head = (model.get_layer(n) for n in ("token_embedding", "final_norm", "lm_head"))
    except ValueError as exc:
        raise InferenceError(f"model {model.name}: not laid out as build_llama lays it out: {exc}") from exc
    if not isinstance(final_norm, RMSNorm):
        raise InferenceError(f"model {model.name}: its final_norm is not an RMSNorm")
    return LlamaWeights(shape=shape, embedding=_variable(embedding.embeddings),
                        layers=tuple(_block_weights(b) for b in blocks), final_norm=_variable(final_norm.scale),
                        lm_head=_variable(head.kernel))


# ---------------------------------------------------------------- the computation


def _rms_norm(x: tf.Tensor, scale: tf.Variable, epsilon: float) -> tf.Tensor:
    # As model.RMSNorm computes it, term for term, so that both round alike.
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + epsilon) * scale


def rotary_tables(shape: LlamaShape, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """(cos, signed sin) of rotary embedding, each (positions, head_dim): cos and sin of each position's
    angles repeated over the two halves of a head, sin negated on the first half (see _rotate).

    The angles and their cos and sin are the ops model._rotate computes, so the values are the same;
    computed once, they spare every step the ops that compute them.
    """
    inverse = tf.constant(np.asarray(rotary_inverse_frequencies(shape), np.float32))
    angles = tf.einsum("l,d->ld", tf.cast(tf.range(positions), tf.float32), inverse)
    cos, sin = tf.cos(angles).numpy(), tf.sin(angles).numpy()
    return np.concatenate([cos, cos], axis=-1), np.concatenate([-sin, sin], axis=-1)


def _rotate(x: tf.Tensor, cos: tf.Tensor, signed_sin: tf.Tensor) -> tf.Tensor:
    """Rotary embedding, the halves of the last axis paired as model._rotate pairs them: [x1 cos - x2 sin,
    x2 cos + x1 sin]. Rolling x by half a head gives [x2, x1]; the signed sin makes it [-x2 sin, x1 sin],
    and x1 cos + (-x2 sin) is x1 cos - x2 sin exactly, so it rounds as the model does, in four ops
    instead of the slices and concatenation."""
    return x * cos + tf.roll(x, shift=x.shape[-1] // 2, axis=-1) * signed_sin


def _mlp(x: tf.Tensor, layer: LayerWeights, epsilon: float) -> tf.Tensor:
    h = _rms_norm(x, layer.mlp_norm, epsilon)
    return x + tf.matmul(tf.nn.silu(tf.matmul(h, layer.gate)) * tf.matmul(h, layer.up), layer.down)


def _greedy(x: tf.Tensor, weights: LlamaWeights) -> tf.Tensor:
    """The next token of each row of final hidden states (rows, hidden): argmax, lowest id on a tie."""
    logits = tf.matmul(_rms_norm(x, weights.final_norm, weights.shape.layer_norm_epsilon), weights.lm_head)
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def _attend(q: tf.Tensor, keys: tf.Tensor, values: tf.Tensor, visible: tf.Tensor, head_dim: int) -> tf.Tensor:
    """Attention of q (..., queries, head_dim) to keys and values (..., positions, head_dim), the leading
    axes alike; ``visible`` broadcasts to (..., queries, positions).

    Grouped-query attention makes a key/value head's query heads its rows of queries: query head j
    reads key/value head j // groups, as the model's ops.repeat serves them, and the matmuls' batch
    axes match instead of broadcasting (which TensorFlow runs as many tiny products).
    """
    scores = tf.matmul(q, keys, transpose_b=True) / tf.sqrt(tf.cast(head_dim, tf.float32))
    weights = tf.nn.softmax(tf.where(visible, scores, MASKED), axis=-1)
    return tf.matmul(weights, values)


def _powers_of_two(smallest: int, largest: int) -> list[int]:
    sizes, size = [], smallest
    while size < largest:
        sizes.append(size)
        size *= 2
    return [*sizes, largest]


def _bucket(sizes: Sequence[int], count: int) -> int:
    return next(size for size in sizes if size >= count)


class KVCacheDecoder:
    """Greedy decoding of a Keras Llama over ``slots`` sequences of at most ``max_sequence_length``
    tokens each (prompt and generated tokens together); see the module's docstring.

    ``model_or_weights``: a model that build_llama built (a trained stand-in, or one filled by
    load_checkpoint; ``from_checkpoint`` does both) or its ``llama_weights``. ``prompt_buckets``:
    the lengths prompts are padded to, the largest being the longest prompt prefill takes.

    ``trace_counts``: how many times each graph was traced ("step B" per batch bucket, "prefill
    B x L" per batch and length bucket): a call that traces again inside a timed test shows here.
    """

    def __init__(self, model_or_weights: keras.Model | LlamaWeights, slots: int, max_sequence_length: int,
                 *, prompt_buckets: Sequence[int] | None = None) -> None:
        if slots < 1:
            raise InferenceError(f"slots is {slots}: a decoder holds at least one sequence")
        if max_sequence_length < 1:
            raise InferenceError(f"max_sequence_length is {max_sequence_length}: it must be at least 1")
        weights = model_or_weights if isinstance(model_or_weights, LlamaWeights) else llama_weights(model_or_weights)
        self.weights = weights
        self.model = None if isinstance(model_or_weights, LlamaWeights) else model_or_weights  # keeps shared weights
        self._slots, self.max_sequence_length = slots, max_sequence_length
        self.prompt_buckets = self._prompt_buckets(prompt_buckets)
        self.batch_buckets = _powers_of_two(1, slots)
        shape = weights.shape
        self._head_dim, self._kv_heads = shape.head_dim, shape.num_key_value_heads
        self._groups = shape.num_query_heads // shape.num_key_value_heads
        cache_shape = (slots, self._kv_heads, max_sequence_length + 1, self._head_dim)
        self._keys = [tf.Variable(tf.zeros(cache_shape), trainable=False) for _ in weights.layers]
        self._values = [tf.Variable(tf.zeros(cache_shape), trainable=False) for _ in weights.layers]
        cos, sin = rotary_tables(shape, max_sequence_length + 1)
        self._cos, self._sin = tf.Variable(cos, trainable=False), tf.Variable(sin, trainable=False)
        # Host-side state: each slot's next position, and whether a prefill started it.
        self._positions = np.zeros(slots, np.int32)
        self._started = np.zeros(slots, bool)
        self.trace_counts: Counter[str] = Counter()
        self._steps: dict[int, Any] = {}
        self._prefills: dict[tuple[int, int], Any] = {}

    @classmethod
    def from_checkpoint(cls, folder: Path, slots: int, max_sequence_length: int, **options: Any) -> KVCacheDecoder:
        """A decoder of the Hugging Face Llama checkpoint in ``folder`` (config.json and safetensors),
        through build_llama and load_checkpoint, which check it."""
        from benchpipe.benchmarks.llama.checkpoint import load_checkpoint, read_shape
        from benchpipe.benchmarks.llama.model import build_llama

        model = build_llama(read_shape(folder))
        load_checkpoint(model, folder)
        return cls(model, slots, max_sequence_length, **options)

    def _prompt_buckets(self, chosen: Sequence[int] | None) -> list[int]:
        """The lengths prompts are padded to; the largest is the longest prompt prefill takes."""
        longest = self.max_sequence_length
        if chosen is None:
            return _powers_of_two(min(SMALLEST_PROMPT_BUCKET, longest), longest)
        if not chosen or min(int(b) for b in chosen) < 1:
            raise InferenceError(f"prompt_buckets {list(chosen)}: each must be a positive length")
        # Powers of two chosen for the longest prompt may pass the cache's length: no prompt is longer.
        return sorted({min(int(b), longest) for b in chosen})

    @property
    def slots(self) -> int:
        return self._slots

    def position(self, slot: int) -> int:
        """How many tokens ``slot``'s cache holds (its prompt and the tokens fed back since)."""
        return int(self._positions[slot])

    # ------------------------------------------------------------ the Decoder protocol

    def prefill(self, slots: Sequence[int], prompts: Sequence[np.ndarray]) -> np.ndarray:
        """Start each prompt in its slot, dropping what the slot held; each one's first generated token."""
        chosen = self._check_slots(slots, "prefill")
        if len(prompts) != len(chosen):
            raise InferenceError(f"prefill: {len(chosen)} slots but {len(prompts)} prompts")
        ids = [self._check_prompt(slot, prompt) for slot, prompt in zip(chosen, prompts)]
        first = np.empty(len(chosen), TOKEN_DTYPE)
        # Prompts of one length bucket share a call, so that a short prompt is not padded to a long one.
        by_bucket: dict[int, list[int]] = {}
        for i, prompt in enumerate(ids):
            by_bucket.setdefault(_bucket(self.prompt_buckets, len(prompt)), []).append(i)
        for length, rows in sorted(by_bucket.items()):
            first[rows] = self._prefill_bucket(length, chosen[rows], [ids[i] for i in rows])
        self._positions[chosen] = [len(prompt) for prompt in ids]
        self._started[chosen] = True
        return first

    def step(self, slots: Sequence[int], tokens: np.ndarray) -> np.ndarray:
        """Feed ``tokens[i]`` to ``slots[i]``; each slot's next token. Slots not named keep their state."""
        chosen = self._check_slots(slots, "step")
        tokens = np.asarray(tokens)
        if tokens.shape != (len(chosen),):
            raise InferenceError(f"step: {len(chosen)} slots but tokens of shape {tokens.shape}")
        self._check_ids(tokens, "step: tokens")
        if not chosen.size:
            return np.empty(0, TOKEN_DTYPE)
        if not self._started[chosen].all():
            raise InferenceError(f"step: slot {chosen[~self._started[chosen]][0]} holds no sequence (prefill it first)")
        full = chosen[self._positions[chosen] >= self.max_sequence_length]
        if full.size:
            raise InferenceError(f"step: slot {full[0]} holds max_sequence_length = {self.max_sequence_length} tokens "
                                 "already; its sequence must stop")
        size = _bucket(self.batch_buckets, len(chosen))
        # A full batch is every slot in slot order (see _step_graph); a smaller one the chosen slots, then
        # padding rows on slot 0.
        rows = np.arange(size, dtype=np.int32) if size == self._slots else np.zeros(size, np.int32)
        at = chosen if size == self._slots else np.arange(len(chosen))
        rows[at] = chosen
        feed = np.zeros(size, np.int32)
        feed[at] = tokens
        positions = self._positions[rows]
        # Rows not stepped (padding, or slots left out of a full batch) write to the scratch column.
        write_at = np.full(size, self.max_sequence_length, np.int32)
        write_at[at] = positions[at]
        call = self._step_graph_for(size)
        following = call(tf.constant(rows), tf.constant(feed), tf.constant(positions), tf.constant(write_at)).numpy()
        self._positions[chosen] += 1
        return following[at].astype(TOKEN_DTYPE)

    def warm_up(self) -> None:
        """Trace and run once every graph a call may need (step and prefill for each batch bucket, prefill
        for each length bucket), so that none is traced inside a timed test, nor run for the first time:
        a graph's first run is slow too (TensorFlow optimises it then). Every row of these runs writes to
        the scratch column only: no slot's state changes."""
        scratch = self.max_sequence_length
        for batch in self.batch_buckets:
            zeros = tf.zeros(batch, tf.int32)
            self._step_graph_for(batch)(tf.range(batch), zeros, zeros, tf.fill([batch], scratch))
            for length in self.prompt_buckets:
                self._prefill_graph_for(batch, length)(zeros, tf.zeros((batch, length), tf.int32), zeros)

    # ------------------------------------------------------------ checks

    def _check_slots(self, slots: Sequence[int], call: str) -> np.ndarray:
        chosen = np.asarray(slots, np.int64).reshape(-1)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= self._slots):
            raise InferenceError(f"{call}: slots {chosen.tolist()}: each must be in [0, {self._slots})")
        if len(np.unique(chosen)) != chosen.size:
            raise InferenceError(f"{call}: slots {chosen.tolist()} name a slot twice")
        return chosen

    def _check_ids(self, ids: np.ndarray, what: str) -> None:
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise InferenceError(f"{what}: dtype {ids.dtype}, token ids are integers")
        vocabulary = self.weights.shape.vocabulary_size
        if ids.size and (ids.min() < 0 or ids.max() >= vocabulary):
            raise InferenceError(f"{what}: ids outside the vocabulary [0, {vocabulary})")

    def _check_prompt(self, slot: int, prompt: np.ndarray) -> np.ndarray:
        ids = np.asarray(prompt).reshape(-1)
        if not 1 <= ids.size <= self.prompt_buckets[-1]:
            raise InferenceError(f"prefill: slot {slot}: a prompt of {ids.size} tokens; it must hold 1 to "
                                 f"{self.prompt_buckets[-1]} (the largest prompt bucket; max_sequence_length = "
                                 f"{self.max_sequence_length})")
        self._check_ids(ids, f"prefill: slot {slot}: prompt")
        return ids.astype(np.int32)

    # ------------------------------------------------------------ prefill

    def _prefill_bucket(self, length: int, slots: np.ndarray, prompts: list[np.ndarray]) -> np.ndarray:
        count = len(prompts)
        batch = _bucket(self.batch_buckets, count)
        tokens = np.zeros((batch, length), np.int32)
        lengths = np.zeros(batch, np.int32)  # 0: a padding row, which writes nothing a slot reads
        slot_ids = np.zeros(batch, np.int32)
        for row, prompt in enumerate(prompts):
            tokens[row, :prompt.size], lengths[row] = prompt, prompt.size
        slot_ids[:count] = slots
        graph = self._prefill_graph_for(batch, length)
        return graph(tf.constant(slot_ids), tf.constant(tokens), tf.constant(lengths)).numpy()[:count]

    def _prefill_graph_for(self, batch: int, length: int):
        key = (batch, length)
        if key not in self._prefills:
            signature = [tf.TensorSpec((batch,), tf.int32), tf.TensorSpec((batch, length), tf.int32),
                         tf.TensorSpec((batch,), tf.int32)]
            traced = tf.function(lambda slots, tokens, lengths: self._prefill_graph(slots, tokens, lengths, length),
                                 jit_compile=False, input_signature=signature)
            self._prefills[key] = traced.get_concrete_function()
        return self._prefills[key]

    def _prefill_graph(self, slots: tf.Tensor, tokens: tf.Tensor, lengths: tf.Tensor, length: int) -> tf.Tensor:
        """Each row's prompt through the model, its keys and values into its slot's cache at 0..length-1;
        the token after each prompt's last one."""
        self.trace_counts[f"prefill {slots.shape[0]} x {length}"] += 1  # runs only while tracing
        shape, d, kv, groups = self.weights.shape, self._head_dim, self._kv_heads, self._groups
        batch = slots.shape[0]
        positions = tf.range(length)
        cos, sin = self._cos[:length, None, :], self._sin[:length, None, :]  # (length, 1, head_dim)
        # Query row g * length + i is query head g of its key/value head at position i (see _attend).
        causal = tf.tile(positions[None, :] <= positions[:, None], (groups, 1))  # (groups * length, length)
        # Padding rows write to the scratch column; a real row's positions past its prompt hold padding's
        # keys, which no query reads before a step overwrites them.
        write_at = tf.where(lengths[:, None] > 0, positions[None, :], self.max_sequence_length)  # (batch, length)
        where = tf.stack([
            tf.broadcast_to(slots[:, None, None], (batch, kv, length)),
            tf.broadcast_to(tf.range(kv)[None, :, None], (batch, kv, length)),
            tf.broadcast_to(write_at[:, None, :], (batch, kv, length))], axis=-1)
        x = tf.gather(self.weights.embedding, tokens)  # (batch, length, hidden)
        for layer, keys, values in zip(self.weights.layers, self._keys, self._values):
            h = _rms_norm(x, layer.attention_norm, shape.layer_norm_epsilon)
            q = tf.reshape(tf.matmul(h, layer.query), (batch, length, kv, groups, d))
            q = _rotate(q, cos[:, None], sin[:, None])
            k = _rotate(tf.reshape(tf.matmul(h, layer.key), (batch, length, kv, d)), cos, sin)
            v = tf.reshape(tf.matmul(h, layer.value), (batch, length, kv, d))
            k, v = tf.transpose(k, (0, 2, 1, 3)), tf.transpose(v, (0, 2, 1, 3))  # (batch, kv, length, d)
            keys.scatter_nd_update(where, k)
            values.scatter_nd_update(where, v)
            q = tf.reshape(tf.transpose(q, (0, 2, 3, 1, 4)), (batch, kv, groups * length, d))
            mixed = tf.reshape(_attend(q, k, v, causal, d), (batch, kv, groups, length, d))
            mixed = tf.reshape(tf.transpose(mixed, (0, 3, 1, 2, 4)), (batch, length, kv * groups * d))
            x = _mlp(x + tf.matmul(mixed, layer.attention_output), layer, shape.layer_norm_epsilon)
        last = tf.gather(x, tf.maximum(lengths - 1, 0), batch_dims=1)  # (batch, hidden)
        return _greedy(last, self.weights)

    # ------------------------------------------------------------ step

    def _step_graph_for(self, batch: int):
        # The concrete function: calling it skips tf.function's dispatch, a tenth of a stand-in's step.
        if batch not in self._steps:
            signature = [tf.TensorSpec((batch,), tf.int32)] * 4
            traced = tf.function(self._step_graph, jit_compile=False, input_signature=signature)
            self._steps[batch] = traced.get_concrete_function()
        return self._steps[batch]

    def _step_graph(self, rows: tf.Tensor, tokens: tf.Tensor, positions: tf.Tensor, write_at: tf.Tensor) -> tf.Tensor:
        """Row i feeds ``tokens[i]`` to slot ``rows[i]`` at ``positions[i]``, writing its key and value at
        ``write_at[i]``; the next token of each row.

        A full batch (a row per slot, ``rows`` being 0..slots-1) attends to the caches in place; a smaller
        one gathers its rows' caches, a copy, which costs less than computing the idle slots' rows.
        """
        batch = rows.shape[0]
        self.trace_counts[f"step {batch}"] += 1  # runs only while tracing
        shape, d, kv, groups = self.weights.shape, self._head_dim, self._kv_heads, self._groups
        in_place = batch == self._slots
        cos, sin = tf.gather(self._cos, positions)[:, None, :], tf.gather(self._sin, positions)[:, None, :]
        # Row i sees its slot's positions 0..positions[i]; never the scratch column, the last one.
        span = self.max_sequence_length + 1
        visible = (tf.range(span)[None, :] <= positions[:, None])[:, None, None, :]  # (batch, 1, 1, span)
        where = tf.stack([tf.broadcast_to(rows[:, None], (batch, kv)),
                          tf.broadcast_to(tf.range(kv)[None, :], (batch, kv)),
                          tf.broadcast_to(write_at[:, None], (batch, kv))], axis=-1)
        x = tf.gather(self.weights.embedding, tokens)  # (batch, hidden)
        for layer, keys, values in zip(self.weights.layers, self._keys, self._values):
            h = _rms_norm(x, layer.attention_norm, shape.layer_norm_epsilon)
            q = _rotate(tf.reshape(tf.matmul(h, layer.query), (batch, kv, groups, d)), cos[:, None], sin[:, None])
            k = _rotate(tf.reshape(tf.matmul(h, layer.key), (batch, kv, d)), cos, sin)
            keys.scatter_nd_update(where, k)
            values.scatter_nd_update(where, tf.reshape(tf.matmul(h, layer.value), (batch, kv, d)))
            # Read after the writes: the graph orders a variable's uses as the code does.
            if in_place:
                cached_keys, cached_values = keys.read_value(), values.read_value()
            else:
                cached_keys, cached_values = tf.gather(keys, rows), tf.gather(values, rows)
            mixed = _attend(q, cached_keys, cached_values, visible, d)  # (batch, kv, groups, d)
            x = _mlp(x + tf.matmul(tf.reshape(mixed, (batch, kv * groups * d)), layer.attention_output),
                     layer, shape.layer_norm_epsilon)
        return _greedy(x, self.weights)
