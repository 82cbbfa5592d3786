"""A Llama decoder in Keras 3, with LoRA adapters on its attention projections.

Llama 2's architecture: token embedding, decoder blocks of RMSNorm, grouped-query attention
with rotary position embedding, RMSNorm and a SwiGLU MLP, each added to the residual stream,
then a final RMSNorm and an untied output projection. The same code builds Llama-2-70B
(``LLAMA2_70B``, for the user's own checkpoint) and the tiny stand-in of tests and development
runs; only the shape differs. Llama 3.1 (``LLAMA31_8B``) differs only in its shape and in the
scaling of its rotary frequencies (``RopeScaling``), which a shape may carry.

LoRA (Hu et al., as the MLPerf reference fine-tunes Llama-2-70B): each of the attention's four
projections keeps its frozen kernel W and adds ``dropout(x) @ A @ B * alpha / rank``; B starts
at zero, so the adapted model starts as the base model. With ``lora_rank`` > 0 only the A and B
matrices train; with 0 every weight does (full fine-tuning, for comparison).

Written here rather than taken from keras-hub: keras-hub's Llama needs tensorflow-text, which
installs the full ``tensorflow`` wheel beside ``tensorflow-cpu``, and it brings hub clients
whose purpose is to fetch weights at run time, which benchpipe never does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import ops

# The labels' value for a position the loss ignores (the prompt, the padding), as in the
# reference's preprocessed GovReport.
IGNORE_INDEX = -100
# The attention projections that carry adapters: the reference's LoRA target modules
# (query, key and value, and the output projection).
LORA_TARGETS = ("query", "key", "value", "attention_output")


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's stretch of the rotary frequencies to a longer context ("rope_type": "llama3").

    Wavelengths longer than ``original_max_position_embeddings / low_freq_factor`` are
    stretched ``factor`` times, those shorter than ``original_max_position_embeddings /
    high_freq_factor`` kept, and those between interpolated: the model keeps its local
    resolution and gains range (Hugging Face's ``_compute_llama3_parameters``).
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int

    def problems(self) -> list[tuple[str, str]]:
        found = [(name, "must be positive") for name in (
            "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
            if not getattr(self, name) > 0]
        if not found and self.high_freq_factor <= self.low_freq_factor:
            # The interpolation divides by their difference.
            found.append(("high_freq_factor", f"must exceed low_freq_factor ({self.low_freq_factor})"))
        return found


@dataclass(frozen=True)
class LlamaShape:
    """The sizes of a Llama model."""

    vocabulary_size: int
    num_layers: int
    num_query_heads: int
    num_key_value_heads: int
    hidden_dim: int
    intermediate_dim: int
    rope_max_wavelength: float = 10_000.0
    layer_norm_epsilon: float = 1e-5
    # None: plain rotary embedding, as Llama 2 (and llama2_70b_lora's training) has it.
    rope_scaling: RopeScaling | None = None

    def problems(self) -> list[tuple[str, str]]:
        """(field, why) for each size the model cannot be built with."""
        found = [(name, "must be at least 1") for name in (
            "vocabulary_size", "num_layers", "num_query_heads", "num_key_value_heads", "hidden_dim",
            "intermediate_dim") if getattr(self, name) < 1]
        if found:
            return found
        if self.hidden_dim % self.num_query_heads:
            found.append(("hidden_dim", f"must be a multiple of num_query_heads ({self.num_query_heads})"))
        elif (self.hidden_dim // self.num_query_heads) % 2:
            found.append(("hidden_dim", "divided by num_query_heads must be even: rotary embedding pairs dimensions"))
        if self.num_query_heads % self.num_key_value_heads:
            found.append(("num_key_value_heads", f"must divide num_query_heads ({self.num_query_heads})"))
        if not self.rope_max_wavelength > 0:
            found.append(("rope_max_wavelength", "must be positive"))
        if not self.layer_norm_epsilon > 0:
            found.append(("layer_norm_epsilon", "must be positive"))
        if self.rope_scaling is not None:
            found.extend((f"rope_scaling.{name}", why) for name, why in self.rope_scaling.problems())
        return found

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_query_heads


# Llama-2-70B, as its published config.json states it.
LLAMA2_70B = LlamaShape(
    vocabulary_size=32_000, num_layers=80, num_query_heads=64, num_key_value_heads=8,
    hidden_dim=8192, intermediate_dim=28_672, rope_max_wavelength=10_000.0, layer_norm_epsilon=1e-5,
)
# Llama-3.1-8B(-Instruct), as its published config.json states it: the inference benchmark's model.
LLAMA31_8B = LlamaShape(
    vocabulary_size=128_256, num_layers=32, num_query_heads=32, num_key_value_heads=8,
    hidden_dim=4096, intermediate_dim=14_336, rope_max_wavelength=500_000.0, layer_norm_epsilon=1e-5,
    rope_scaling=RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=8192),
)


class RMSNorm(keras.layers.Layer):
    """x / rms(x) * scale, computed in float32 whatever the compute dtype, as Llama does."""

    def __init__(self, epsilon: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape) -> None:
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        x32 = ops.cast(x, "float32")
        normed = x32 * ops.rsqrt(ops.mean(ops.square(x32), axis=-1, keepdims=True) + self.epsilon)
        return ops.cast(normed * ops.cast(self.scale, "float32"), self.compute_dtype)


class LoraDense(keras.layers.Layer):
    """A bias-free projection whose kernel is frozen when ``rank`` > 0 and adapted by A @ B.

    The adapters' names end in ``lora_a`` and ``lora_b``: a checkpoint loader fills every
    other weight, and the test of what trains looks for these two.
    """

    def __init__(self, units: int, rank: int = 0, alpha: float = 1.0, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units, self.rank, self.alpha, self.dropout_rate = units, rank, alpha, dropout
        self.dropout = keras.layers.Dropout(dropout) if rank and dropout else None

    def build(self, input_shape) -> None:
        fan_in = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(fan_in, self.units), initializer="glorot_uniform",
                                      trainable=not self.rank)
        if self.rank:
            # A as PEFT initialises it (torch's kaiming_uniform_ with a=sqrt(5): bound 1/sqrt(fan_in),
            # a sixth of HeUniform's variance), B at zero: the adapter starts as a no-op.
            self.lora_a = self.add_weight(name="lora_a", shape=(fan_in, self.rank),
                                          initializer=keras.initializers.VarianceScaling(
                                              scale=1 / 3, mode="fan_in", distribution="uniform"))
            self.lora_b = self.add_weight(name="lora_b", shape=(self.rank, self.units), initializer="zeros")

    def call(self, x, training=None):
        y = ops.matmul(x, self.kernel)
        if self.rank:
            adapted = self.dropout(x, training=training) if self.dropout is not None else x
            y = y + ops.matmul(ops.matmul(adapted, self.lora_a), self.lora_b) * (self.alpha / self.rank)
        return y


def rotary_inverse_frequencies(shape: LlamaShape):
    """The rotary embedding's float32 angle per position of each pair of a head's dimensions, (head_dim / 2,)."""
    half = shape.head_dim // 2
    inverse = 1.0 / ops.power(shape.rope_max_wavelength, ops.arange(0, half, dtype="float32") * 2.0 / (2 * half))
    if shape.rope_scaling is None:
        return inverse
    return _llama3_scaled(inverse, shape.rope_scaling)


def _llama3_scaled(inverse, scaling: RopeScaling):
    """Hugging Face's ``_compute_llama3_parameters``, step for step, in float32 as it computes them."""
    context = scaling.original_max_position_embeddings
    low_freq_wavelength = context / scaling.low_freq_factor
    high_freq_wavelength = context / scaling.high_freq_factor
    wavelength = 2 * math.pi / inverse
    stretched = ops.where(wavelength > low_freq_wavelength, inverse / scaling.factor, inverse)
    smooth = (context / wavelength - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    smoothed = (1 - smooth) * stretched / scaling.factor + smooth * stretched
    medium = ops.logical_not(ops.logical_or(wavelength < high_freq_wavelength, wavelength > low_freq_wavelength))
    return ops.where(medium, smoothed, stretched)


def _rotate(x, positions, inverse):
    """Rotary position embedding of ``x`` (batch, length, heads, head_dim), halves paired as Llama pairs them;
    ``inverse`` from rotary_inverse_frequencies."""
    half = x.shape[-1] // 2
    angles = ops.einsum("l,d->ld", ops.cast(positions, "float32"), inverse)
    cos = ops.cast(ops.cos(angles)[None, :, None, :], x.dtype)
    sin = ops.cast(ops.sin(angles)[None, :, None, :], x.dtype)
    first, second = x[..., :half], x[..., half:]
    return ops.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


class Attention(keras.layers.Layer):
    """Causal grouped-query attention with rotary embedding; LoRA on all four projections."""

    def __init__(self, shape: LlamaShape, rank: int, alpha: float, dropout: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shape = shape
        head, q_heads, kv_heads = shape.head_dim, shape.num_query_heads, shape.num_key_value_heads
        lora = {"rank": rank, "alpha": alpha, "dropout": dropout}
        self.query = LoraDense(q_heads * head, name="query", **lora)
        self.key = LoraDense(kv_heads * head, name="key", **lora)
        self.value = LoraDense(kv_heads * head, name="value", **lora)
        self.attention_output = LoraDense(shape.hidden_dim, name="attention_output", **lora)

    def build(self, input_shape) -> None:
        for layer in (self.query, self.key, self.value):
            layer.build(input_shape)
        self.attention_output.build((*input_shape[:-1], self.shape.num_query_heads * self.shape.head_dim))

    def call(self, x, training=None):
        s = self.shape
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        positions = ops.arange(length)
        q = ops.reshape(self.query(x, training=training), (batch, length, s.num_query_heads, s.head_dim))
        k = ops.reshape(self.key(x, training=training), (batch, length, s.num_key_value_heads, s.head_dim))
        v = ops.reshape(self.value(x, training=training), (batch, length, s.num_key_value_heads, s.head_dim))
        inverse = rotary_inverse_frequencies(s)
        q, k = _rotate(q, positions, inverse), _rotate(k, positions, inverse)
        groups = s.num_query_heads // s.num_key_value_heads
        if groups > 1:
            k, v = ops.repeat(k, groups, axis=2), ops.repeat(v, groups, axis=2)
        scores = ops.einsum("bqhd,bkhd->bhqk", q, k) / ops.sqrt(ops.cast(s.head_dim, q.dtype))
        causal = ops.tril(ops.ones((length, length), dtype="bool"))
        scores = ops.where(causal[None, None], ops.cast(scores, "float32"), -1e9)
        weights = ops.cast(ops.softmax(scores, axis=-1), v.dtype)
        mixed = ops.reshape(ops.einsum("bhqk,bkhd->bqhd", weights, v), (batch, length, s.num_query_heads * s.head_dim))
        return self.attention_output(mixed, training=training)


class DecoderBlock(keras.layers.Layer):
    def __init__(self, shape: LlamaShape, rank: int, alpha: float, dropout: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attention_norm = RMSNorm(shape.layer_norm_epsilon, name="attention_norm")
        self.attention = Attention(shape, rank, alpha, dropout, name="attention")
        self.mlp_norm = RMSNorm(shape.layer_norm_epsilon, name="mlp_norm")
        self.gate = keras.layers.Dense(shape.intermediate_dim, use_bias=False, name="gate")
        self.up = keras.layers.Dense(shape.intermediate_dim, use_bias=False, name="up")
        self.down = keras.layers.Dense(shape.hidden_dim, use_bias=False, name="down")

    def call(self, x, training=None):
        x = x + self.attention(self.attention_norm(x), training=training)
        h = self.mlp_norm(x)
        return x + self.down(ops.silu(self.gate(h)) * self.up(h))


def build_llama(shape: LlamaShape, sequence_length: int | None = None, *, lora_rank: int = 0,
                lora_alpha: float = 1.0, lora_dropout: float = 0.0, name: str = "llama") -> keras.Model:
    """The causal language model: token ids (batch, length) in, float32 logits (batch, length, vocabulary) out.

    With ``lora_rank`` > 0 every weight but the adapters is frozen.
    """
    token_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    embedding = keras.layers.Embedding(shape.vocabulary_size, shape.hidden_dim, name="token_embedding")
    x = embedding(token_ids)
    blocks = [DecoderBlock(shape, lora_rank, lora_alpha, lora_dropout, name=f"decoder_{i}")
              for i in range(shape.num_layers)]
    for block in blocks:
        x = block(x)
    x = RMSNorm(shape.layer_norm_epsilon, name="final_norm")(x)
    head = keras.layers.Dense(shape.vocabulary_size, use_bias=False, name="lm_head")
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(head(x))
    model = keras.Model(token_ids, logits, name=name)
    if lora_rank:
        freeze_base(model)
    return model


def freeze_base(model: keras.Model) -> None:
    """Leave only the LoRA adapters trainable."""
    for variable in model.variables:
        if variable.trainable and not is_adapter(variable.path):
            variable.trainable = False


def is_adapter(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in ("lora_a", "lora_b")


def token_loss_sums(labels, logits):
    """(summed cross-entropy, counted tokens) over the positions whose label is not IGNORE_INDEX."""
    mask = ops.not_equal(labels, IGNORE_INDEX)
    safe = ops.where(mask, labels, 0)
    losses = keras.losses.sparse_categorical_crossentropy(safe, logits, from_logits=True)
    weights = ops.cast(mask, "float32")
    return ops.sum(losses * weights), ops.sum(weights)
