"""A Hugging Face Llama checkpoint into build_llama's model: the safetensors reader, config.json,
every tensor's place and orientation, and what trains under LoRA.

The checkpoints are written here, by a writer of the test's own and with the test's own table
of Hugging Face names, from a tiny randomly initialised model; a numpy forward pass written
after Hugging Face's LlamaForCausalLM (rotate_half, repeat_kv) checks that the loaded model
computes what those tensors mean to Hugging Face, not only that a round trip is lossless.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchpipe.benchmarks.llama.checkpoint import load_checkpoint, read_header, read_shape, read_tensor
from benchpipe.benchmarks.llama.model import (
    LLAMA31_8B,
    LORA_TARGETS,
    LlamaShape,
    RopeScaling,
    build_llama,
    is_adapter,
)
from benchpipe.contracts.errors import ConfigError, DatasetError

SHAPE = LlamaShape(vocabulary_size=64, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=32,
                   intermediate_dim=64, rope_max_wavelength=500.0, layer_norm_epsilon=1e-6)
RANK = 16
TOKENS = np.random.default_rng(7).integers(0, SHAPE.vocabulary_size, size=(2, 12)).astype("int32")

# The test's own table: Keras path -> (Hugging Face name, stored [out, in]).
TOP = {"token_embedding/embeddings": ("model.embed_tokens.weight", False),
       "final_norm/scale": ("model.norm.weight", False),
       "lm_head/kernel": ("lm_head.weight", True)}
PER_LAYER = {"attention_norm/scale": ("input_layernorm.weight", False),
             "attention/query/kernel": ("self_attn.q_proj.weight", True),
             "attention/key/kernel": ("self_attn.k_proj.weight", True),
             "attention/value/kernel": ("self_attn.v_proj.weight", True),
             "attention/attention_output/kernel": ("self_attn.o_proj.weight", True),
             "mlp_norm/scale": ("post_attention_layernorm.weight", False),
             "gate/kernel": ("mlp.gate_proj.weight", True),
             "up/kernel": ("mlp.up_proj.weight", True),
             "down/kernel": ("mlp.down_proj.weight", True)}


def names() -> dict[str, tuple[str, bool]]:
    table = dict(TOP)
    for i in range(SHAPE.num_layers):
        table.update({f"decoder_{i}/{path}": (f"model.layers.{i}.{name}", t) for path, (name, t) in PER_LAYER.items()})
    return table


# ---------------------------------------------------------------- writing a checkpoint


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 to bfloat16's bits, rounded to nearest even as torch rounds."""
    bits = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")


def bf16_round(x: np.ndarray) -> np.ndarray:
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def encode(dtype: str, array: np.ndarray) -> bytes:
    if dtype == "BF16":
        return bf16_bits(array).tobytes()
    return np.ascontiguousarray(array, dtype={"F32": "<f4", "F16": "<f2", "I32": "<i4"}[dtype]).tobytes()


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, array) in tensors.items():
        data = encode(dtype, array)
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads its header to 8 bytes
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))


def config(shape: LlamaShape = SHAPE) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "hidden_size": shape.hidden_dim, "intermediate_size": shape.intermediate_dim,
            "num_attention_heads": shape.num_query_heads, "num_key_value_heads": shape.num_key_value_heads,
            "num_hidden_layers": shape.num_layers, "vocab_size": shape.vocabulary_size,
            "rms_norm_eps": shape.layer_norm_epsilon, "rope_theta": shape.rope_max_wavelength,
            "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def hf_tensors(model) -> dict[str, np.ndarray]:
    """The model's weights under Hugging Face's names, [out, in] where Hugging Face stores them so."""
    table = names()
    out = {}
    for variable in model.variables:
        if not is_adapter(variable.path):
            name, transposed = table[variable.path]
            value = np.asarray(variable.numpy(), np.float32)
            out[name] = value.T.copy() if transposed else value
    return out


def write_checkpoint(folder: Path, tensors: dict[str, np.ndarray], dtypes: dict[str, str] | None = None,
                     shards: int = 1) -> Path:
    """config.json and the tensors in ``shards`` files (with an index when more than one)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config()))
    dtypes = dtypes or {}
    ordered = list(tensors)
    weight_map = {}
    for k in range(shards):
        file = "model.safetensors" if shards == 1 else f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = ordered[k::shards]
        write_safetensors(folder / file, {n: (dtypes.get(n, "F32"), tensors[n]) for n in part})
        weight_map.update(dict.fromkeys(part, file))
    if shards > 1:
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return folder


def randomized(seed: int = 0, **kwargs):
    """The tiny model with every weight random, norms' scales included (ones would hide a swapped norm)."""
    model = build_llama(SHAPE, **kwargs)
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        if is_adapter(variable.path):
            continue
        if variable.path.endswith("/scale"):
            value = 1.0 + 0.2 * rng.standard_normal(variable.shape)
        else:
            value = rng.standard_normal(variable.shape) / np.sqrt(variable.shape[0])
        variable.assign(value.astype(np.float32))
    return model


def logits(model) -> np.ndarray:
    return np.asarray(model(TOKENS, training=False))


def weights(model) -> dict[str, np.ndarray]:
    return {v.path: np.array(v.numpy()) for v in model.variables}


@pytest.fixture(scope="module")
def source():
    return randomized()


@pytest.fixture
def checkpoint(source, tmp_path) -> Path:
    return write_checkpoint(tmp_path / "llama", hf_tensors(source))


# ---------------------------------------------------------------- Hugging Face's forward pass, in numpy


def llama3_inverse_frequencies(inv_freq: np.ndarray, scaling: dict) -> np.ndarray:
    """transformers' _compute_llama3_parameters (modeling_rope_utils), in float64."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context_len / low, old_context_len / high
    wavelen = 2 * np.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low) / (high - low)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def hf_reference_logits(t: dict[str, np.ndarray], cfg: dict, ids: np.ndarray) -> np.ndarray:
    """LlamaForCausalLM's forward pass (transformers' modeling_llama), float64, from the checkpoint's tensors."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    heads, kv_heads, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    head_dim = cfg["hidden_size"] // heads
    batch, length = ids.shape
    inv_freq = 1.0 / cfg["rope_theta"] ** (np.arange(0, head_dim, 2) / head_dim)
    if cfg.get("rope_scaling") is not None:
        inv_freq = llama3_inverse_frequencies(inv_freq, cfg["rope_scaling"])
    freqs = np.outer(np.arange(length), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)

    def rms(x, w):
        return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))

    def rotate_half(x):
        x1, x2 = x[..., :head_dim // 2], x[..., head_dim // 2:]
        return np.concatenate([-x2, x1], axis=-1)

    def linear(x, w):  # torch's Linear: x @ W.T with W [out, in]
        return x @ w.T

    def repeat_kv(x, n_rep):
        b, h, s, d = x.shape
        return np.broadcast_to(x[:, :, None], (b, h, n_rep, s, d)).reshape(b, h * n_rep, s, d)

    def split(x, n):
        return x.reshape(batch, length, n, head_dim).transpose(0, 2, 1, 3)

    x = t["model.embed_tokens.weight"][ids]
    future = np.triu(np.ones((length, length), bool), k=1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, t[p + "input_layernorm.weight"])
        q = split(linear(h, t[p + "self_attn.q_proj.weight"]), heads)
        k = split(linear(h, t[p + "self_attn.k_proj.weight"]), kv_heads)
        v = split(linear(h, t[p + "self_attn.v_proj.weight"]), kv_heads)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, heads // kv_heads), repeat_kv(v, heads // kv_heads)
        scores = np.where(future, -np.inf, q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim))
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        mixed = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
        x = x + linear(mixed, t[p + "self_attn.o_proj.weight"])
        h = rms(x, t[p + "post_attention_layernorm.weight"])
        gate = linear(h, t[p + "mlp.gate_proj.weight"])
        x = x + linear(gate / (1 + np.exp(-gate)) * linear(h, t[p + "mlp.up_proj.weight"]),
                       t[p + "mlp.down_proj.weight"])
    return linear(rms(x, t["model.norm.weight"]), t["lm_head.weight"])


# ---------------------------------------------------------------- loading


def test_read_shape_is_the_configs(checkpoint):
    assert read_shape(checkpoint) == SHAPE


@pytest.mark.parametrize("rank", [0, RANK])
def test_an_f32_checkpoint_gives_identical_logits(source, checkpoint, rank):
    model = build_llama(read_shape(checkpoint), lora_rank=rank, lora_alpha=32.0)
    load_checkpoint(model, checkpoint)
    np.testing.assert_array_equal(logits(model), logits(source))


def test_the_loaded_model_computes_what_hugging_face_computes_from_the_tensors(source, checkpoint):
    model = build_llama(read_shape(checkpoint))
    load_checkpoint(model, checkpoint)
    expected = hf_reference_logits(hf_tensors(source), config(), TOKENS)
    np.testing.assert_allclose(logits(model), expected, rtol=1e-4, atol=1e-4)


def test_bf16_and_f16_tensors_load_to_their_precision(source, tmp_path):
    tensors = hf_tensors(source)
    bf16 = ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
            *(n for n in tensors if n.startswith("model.layers.0."))]
    dtypes = {**dict.fromkeys(bf16, "BF16"), "model.layers.1.mlp.up_proj.weight": "F16"}
    folder = write_checkpoint(tmp_path / "llama", tensors, dtypes)
    model = build_llama(SHAPE, lora_rank=RANK)
    load_checkpoint(model, folder)

    # Exactly the stored values: bf16 widened without loss, f16 likewise, f32 untouched.
    stored = {name: bf16_round(v) if dtypes.get(name) == "BF16" else v for name, v in tensors.items()}
    stored["model.layers.1.mlp.up_proj.weight"] = tensors["model.layers.1.mlp.up_proj.weight"].astype(
        np.float16).astype(np.float32)
    loaded = hf_tensors(model)
    for name, value in stored.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    assert not np.array_equal(loaded["lm_head.weight"], tensors["lm_head.weight"])  # bf16 did round
    # The same logits as the source model holding the rounded values, and close to its own.
    rounded = randomized()
    table = names()
    for variable in rounded.variables:
        if not is_adapter(variable.path):
            name, transposed = table[variable.path]
            variable.assign(stored[name].T if transposed else stored[name])
    np.testing.assert_array_equal(logits(model), logits(rounded))
    np.testing.assert_allclose(logits(model), logits(source), rtol=0.05, atol=0.05)


def test_a_sharded_checkpoint_loads_through_its_index(source, tmp_path):
    folder = write_checkpoint(tmp_path / "llama", hf_tensors(source), shards=3)
    assert len(list(folder.glob("*.safetensors"))) == 3
    model = build_llama(SHAPE)
    load_checkpoint(model, folder)
    np.testing.assert_array_equal(logits(model), logits(source))


def test_the_reader_reads_the_header_and_tensors_lazily(checkpoint, source):
    header = read_header(checkpoint / "model.safetensors")
    assert "__metadata__" not in header
    tensor = header["model.layers.1.self_attn.k_proj.weight"]
    assert (tensor.dtype, tensor.shape) == ("F32", (16, 32))
    expected = source.get_layer("decoder_1").attention.key.kernel.numpy().T
    np.testing.assert_array_equal(read_tensor(tensor), expected)


# ---------------------------------------------------------------- what is refused, and named


def refused(model, folder: Path, *needles: str) -> str:
    before = weights(model)
    with pytest.raises(DatasetError) as caught:
        load_checkpoint(model, folder)
    for needle in needles:
        assert needle in str(caught.value)
    after = weights(model)
    assert all(np.array_equal(before[p], after[p]) for p in before), "a refused checkpoint changed the model"
    return str(caught.value)


def test_a_missing_tensor_is_named(source, tmp_path):
    tensors = hf_tensors(source)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    folder = write_checkpoint(tmp_path / "llama", tensors)
    refused(build_llama(SHAPE), folder, "model.layers.1.mlp.up_proj.weight", "missing", str(folder))


def test_a_wrong_shape_is_named_with_its_file(source, tmp_path):
    tensors = hf_tensors(source)
    name = "model.layers.0.self_attn.k_proj.weight"
    tensors[name] = tensors[name].T.copy()  # stored [in, out], as Keras holds it
    folder = write_checkpoint(tmp_path / "llama", tensors)
    refused(build_llama(SHAPE), folder, name, str(folder / "model.safetensors"), "[32, 16]", "[16, 32]")


def test_a_truncated_file_is_named_with_the_tensor_cut_off(checkpoint):
    file = checkpoint / "model.safetensors"
    last = max(read_header(file).values(), key=lambda t: t.end).name
    file.write_bytes(file.read_bytes()[:-10])
    refused(build_llama(SHAPE), checkpoint, str(file), last, "truncated")
    file.write_bytes(file.read_bytes()[:5])
    refused(build_llama(SHAPE), checkpoint, str(file), "truncated")


def test_a_file_that_is_not_safetensors_is_named(checkpoint):
    file = checkpoint / "model.safetensors"
    file.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}" + b"\0" * 64)
    refused(build_llama(SHAPE), checkpoint, str(file), "not JSON")


def test_an_integer_tensor_is_refused_by_name(source, tmp_path):
    tensors = hf_tensors(source)
    tensors["model.norm.weight"] = np.ones(SHAPE.hidden_dim, np.int32)
    folder = write_checkpoint(tmp_path / "llama", tensors, {"model.norm.weight": "I32"})
    refused(build_llama(SHAPE), folder, "model.norm.weight", "I32")


def test_a_checkpoint_with_more_layers_than_the_model_is_refused(source, tmp_path):
    tensors = hf_tensors(source)
    tensors.update({n.replace("layers.1.", "layers.2."): v for n, v in tensors.items() if ".layers.1." in n})
    folder = write_checkpoint(tmp_path / "llama", tensors)
    refused(build_llama(SHAPE), folder, "model.layers.2.", "no place")


@pytest.mark.parametrize("key", ["num_key_value_heads", "rope_theta", "rms_norm_eps", "vocab_size"])
def test_a_missing_config_key_is_named(checkpoint, key):
    path = checkpoint / "config.json"
    path.write_text(json.dumps({k: v for k, v in config().items() if k != key}))
    with pytest.raises(DatasetError, match=f"{path}: key {key} is missing"):
        read_shape(checkpoint)
    refused(build_llama(SHAPE), checkpoint, str(path), key)


def test_a_config_that_differs_from_the_model_is_named(checkpoint):
    path = checkpoint / "config.json"
    path.write_text(json.dumps({**config(), "rope_theta": 10_000.0}))
    refused(build_llama(SHAPE), checkpoint, str(path), "rope_theta")


def test_a_scaled_rotary_embedding_is_refused(checkpoint):
    path = checkpoint / "config.json"
    path.write_text(json.dumps({**config(), "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}))
    with pytest.raises(DatasetError, match="rope_scaling"):
        read_shape(checkpoint)


def test_a_folder_that_is_not_there_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(build_llama(SHAPE), tmp_path / "nowhere")


# ---------------------------------------------------------------- Llama 3.1's scaled rotary embedding

# Llama 3.1's rope_scaling with the context shrunk to the tiny model's: its wavelengths (head_dim 8,
# rope_theta 500: about 6, 30, 140 and 660 positions) fall in all three of the scaling's bands.
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 64}


def llama3_checkpoint(source, folder: Path, scaling: dict | None = None) -> Path:
    write_checkpoint(folder, hf_tensors(source))
    (folder / "config.json").write_text(json.dumps({**config(), "rope_scaling": scaling or LLAMA3_SCALING}))
    return folder


def test_llama3_rope_scaling_is_read_and_computes_what_hugging_face_computes(source, tmp_path):
    wavelengths = 2 * np.pi * SHAPE.rope_max_wavelength ** (np.arange(0, SHAPE.head_dim, 2) / SHAPE.head_dim)
    context = LLAMA3_SCALING["original_max_position_embeddings"]
    assert wavelengths.min() < context / 4 and wavelengths.max() > context
    assert ((wavelengths > context / 4) & (wavelengths < context)).any()  # the interpolated band too

    folder = llama3_checkpoint(source, tmp_path / "llama")
    shape = read_shape(folder)
    assert shape.rope_scaling == RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                             original_max_position_embeddings=64)
    model = build_llama(shape)
    load_checkpoint(model, folder)
    scaled = hf_reference_logits(hf_tensors(source), {**config(), "rope_scaling": LLAMA3_SCALING}, TOKENS)
    np.testing.assert_allclose(logits(model), scaled, rtol=1e-4, atol=1e-4)
    plain = hf_reference_logits(hf_tensors(source), config(), TOKENS)
    assert np.abs(scaled - plain).max() > 1e-2  # the scaling changes what the model computes


def test_llama3_scaling_with_the_default_type_or_none_is_plain_rotary_embedding(source, tmp_path):
    folder = llama3_checkpoint(source, tmp_path / "llama", {"rope_type": "default"})
    assert read_shape(folder) == SHAPE


def test_a_model_built_without_the_checkpoints_scaling_is_refused(source, tmp_path):
    folder = llama3_checkpoint(source, tmp_path / "llama")
    refused(build_llama(SHAPE), folder, "rope_scaling", str(folder / "config.json"))


@pytest.mark.parametrize("scaling, message", [
    ({"rope_type": "linear", "factor": 2.0}, "only the \"llama3\" type"),
    ({"type": "dynamic", "factor": 2.0}, "only the \"llama3\" type"),
    ({**LLAMA3_SCALING, "high_freq_factor": None}, ".high_freq_factor: None is not a number"),
    ({**LLAMA3_SCALING, "original_max_position_embeddings": 64.5}, "original_max_position_embeddings: 64.5 is not an"),
    ({**LLAMA3_SCALING, "high_freq_factor": 1.0}, ".high_freq_factor must exceed low_freq_factor"),
    ({**LLAMA3_SCALING, "factor": 0}, ".factor must be positive"),
    ([8.0], "is not an object"),
])
def test_rope_scaling_the_model_does_not_compute_is_refused_by_key(source, tmp_path, scaling, message):
    folder = llama3_checkpoint(source, tmp_path / "llama", scaling)
    with pytest.raises(DatasetError, match=re.escape(f"{folder / 'config.json'}: key rope_scaling") + f".*{message}"):
        read_shape(folder)


def test_llama_3_1_8b_config_reads_as_the_llama31_8b_shape(tmp_path):
    # Its published config.json, less the keys read_shape does not read.
    published = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
                 "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
                 "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
                 "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
                 "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
                 "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
                                                         "high_freq_factor": 4.0,
                                                         "original_max_position_embeddings": 8192,
                                                         "rope_type": "llama3"},
                 "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
                 "vocab_size": 128256}
    (tmp_path / "config.json").write_text(json.dumps(published))
    assert read_shape(tmp_path) == LLAMA31_8B and not LLAMA31_8B.problems()


# ---------------------------------------------------------------- what trains under LoRA


def test_only_the_adapters_train_and_they_start_as_no_ops(source, checkpoint):
    adapted = build_llama(SHAPE, lora_rank=RANK, lora_alpha=32.0)
    load_checkpoint(adapted, checkpoint)
    expected = {f"decoder_{i}/attention/{target}/{matrix}"
                for i in range(SHAPE.num_layers) for target in LORA_TARGETS for matrix in ("lora_a", "lora_b")}
    trainable = [v.path for v in adapted.trainable_variables]
    assert len(trainable) == 4 * SHAPE.num_layers * 2 == len(expected)
    assert set(trainable) == expected
    assert all(not np.any(v.numpy()) for v in adapted.trainable_variables if v.path.endswith("lora_b"))
    # A as PEFT draws it (kaiming_uniform_, a=sqrt(5)): uniform within 1/sqrt(fan_in).
    a = np.concatenate([v.numpy().ravel() for v in adapted.trainable_variables if v.path.endswith("lora_a")])
    bound = 1 / np.sqrt(SHAPE.hidden_dim)
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    np.testing.assert_array_equal(logits(adapted), logits(source))
    assert {v.path for v in build_llama(SHAPE).trainable_variables} == set(names())
