"""The user's own Llama checkpoint, in Hugging Face's layout, into a model that ``build_llama`` built.

benchpipe never downloads weights: the user gives a local folder holding ``config.json`` and
one or more ``*.safetensors`` files (with ``model.safetensors.index.json`` when sharded), as
Hugging Face publishes Llama-2-70B. ``read_shape`` gives the shape to build the model with;
``load_checkpoint`` fills every weight but the LoRA adapters, after checking that every tensor
is there with the shape the model expects.

The safetensors reader is our own, on numpy: the format is an 8-byte length, a JSON header
and raw little-endian data, and the ``safetensors`` package would add a compiled dependency
(and, for bfloat16, torch or ml_dtypes) for a dozen lines. Tensors are read one at a time
through a memory map, so a 140 GB checkpoint is never in memory whole.

No permutation of the query and key projections is needed: Hugging Face's Llama applies its
rotary embedding with ``rotate_half``, pairing dimension i of a head with dimension
i + head_dim / 2 (``q * cos + rotate_half(q) * sin``, ``rotate_half(x) = [-x2, x1]``, the
angles ``concat(freqs, freqs)``), and its conversion from Meta's weights already permuted
the rows of q_proj and k_proj to suit. model.py's ``_rotate`` pairs the two halves the same
way with the same frequencies (Llama 3.1's "llama3" rope_scaling adjusting them as
transformers does), so the checkpoint's rows are used as they are. Its grouped
query heads match too: ``ops.repeat`` on the head axis serves query heads
j * groups .. (j + 1) * groups - 1 from key/value head j, as ``repeat_kv`` does.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchpipe.benchmarks.llama.model import LlamaShape, RopeScaling, is_adapter
from benchpipe.contracts.errors import ConfigError, DatasetError

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
# The safetensors crate refuses headers above 100 MB; so do we, before reading one into memory.
MAX_HEADER_BYTES = 100_000_000
# Every dtype the format defines, for the sizes that check each tensor's extent; only the
# floating ones below can be loaded.
ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
              "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
LOADABLE = ("F32", "F16", "BF16")
# config.json's keys for each LlamaShape field.
CONFIG_KEYS = {
    "vocabulary_size": "vocab_size", "num_layers": "num_hidden_layers", "num_query_heads": "num_attention_heads",
    "num_key_value_heads": "num_key_value_heads", "hidden_dim": "hidden_size",
    "intermediate_dim": "intermediate_size", "rope_max_wavelength": "rope_theta",
    "layer_norm_epsilon": "rms_norm_eps",
}
REAL_FIELDS = ("rope_max_wavelength", "layer_norm_epsilon")
# Tensors a checkpoint may hold that the model computes instead: older conversions saved
# the rotary frequencies.
IGNORED = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
# rope_scaling's keys for each RopeScaling field (Llama 3.1's "llama3" type, the only one computed).
ROPE_SCALING_KEYS = {"factor": "factor", "low_freq_factor": "low_freq_factor", "high_freq_factor": "high_freq_factor",
                     "original_max_position_embeddings": "original_max_position_embeddings"}

_LAYER_TENSORS = {
    "attention_norm/scale": ("input_layernorm.weight", False),
    "attention/query/kernel": ("self_attn.q_proj.weight", True),
    "attention/key/kernel": ("self_attn.k_proj.weight", True),
    "attention/value/kernel": ("self_attn.v_proj.weight", True),
    "attention/attention_output/kernel": ("self_attn.o_proj.weight", True),
    "mlp_norm/scale": ("post_attention_layernorm.weight", False),
    "gate/kernel": ("mlp.gate_proj.weight", True),
    "up/kernel": ("mlp.up_proj.weight", True),
    "down/kernel": ("mlp.down_proj.weight", True),
}
# Hugging Face's Linear stores [out, in] and Keras' Dense [in, out]: those are transposed.
_TOP_TENSORS = {
    "token_embedding/embeddings": ("model.embed_tokens.weight", False),
    "final_norm/scale": ("model.norm.weight", False),
    "lm_head/kernel": ("lm_head.weight", True),
}
_LAYER_PATH = re.compile(r"decoder_(\d+)/(.+)")


@dataclass(frozen=True)
class Tensor:
    """Where one tensor's bytes lie: ``start`` and ``end`` are offsets in ``file``."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


# ---------------------------------------------------------------- safetensors


def read_header(path: Path) -> dict[str, Tensor]:
    """The tensors of one safetensors file, each checked to lie inside the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise DatasetError(f"{path}: truncated: {size} bytes, not even the 8-byte header length")
            length = int.from_bytes(prefix, "little")
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise DatasetError(f"{path}: header length {length} does not fit the file's {size} bytes "
                                   "(truncated, or not a safetensors file)")
            raw = f.read(length)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc}") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise DatasetError(f"{path}: header is not a JSON object")
    header.pop("__metadata__", None)
    data_start = 8 + length
    return {name: _tensor(path, name, entry, data_start, size) for name, entry in header.items()}


def _tensor(path: Path, name: str, entry: Any, data_start: int, size: int) -> Tensor:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise DatasetError(f"{path}: tensor {name}: expected the keys dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in ITEM_BYTES:
        raise DatasetError(f"{path}: tensor {name}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise DatasetError(f"{path}: tensor {name}: shape {shape!r} is not a list of sizes")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise DatasetError(f"{path}: tensor {name}: data_offsets {offsets!r} is not [begin, end]")
    expected = math.prod(shape) * ITEM_BYTES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise DatasetError(f"{path}: tensor {name}: data_offsets {offsets} hold {offsets[1] - offsets[0]} bytes, "
                           f"its shape {shape} of {dtype} needs {expected}")
    start, end = data_start + offsets[0], data_start + offsets[1]
    if end > size:
        raise DatasetError(f"{path}: tensor {name}: its data ends at byte {end}, the file at {size} (truncated)")
    return Tensor(name, path, dtype, tuple(shape), start, end)


def read_tensor(tensor: Tensor) -> np.ndarray:
    """The tensor as float32, read from its file now (bfloat16 and float16 widened exactly)."""
    if tensor.dtype not in LOADABLE:
        raise DatasetError(f"{tensor.file}: tensor {tensor.name}: dtype {tensor.dtype} cannot be loaded "
                           f"(only {', '.join(LOADABLE)})")
    stored = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[tensor.dtype]
    if tensor.start == tensor.end:
        return np.zeros(tensor.shape, np.float32)
    try:
        data = np.memmap(tensor.file, dtype=stored, mode="r", offset=tensor.start, shape=tensor.shape)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{tensor.file}: tensor {tensor.name}: cannot be read: {exc}") from exc
    if tensor.dtype == "BF16":
        # bfloat16 is the top half of a float32: widen the bits, then read them as float32
        # (shifted in place: one float32 copy of a 1 GB embedding, not two).
        wide = data.astype(np.uint32)
        wide <<= 16
        return wide.view(np.float32)
    # A copy in native float32, so no map of the file outlives the call.
    return data.astype(np.float32)


# ---------------------------------------------------------------- the checkpoint folder


def _folder(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: the Llama checkpoint folder does not exist")
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    path = _folder(folder) / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: missing: a Hugging Face checkpoint holds its config.json") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read as JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return config


def read_shape(folder: Path) -> LlamaShape:
    """The model's shape from the checkpoint's config.json, refused when model.py cannot compute it."""
    path = Path(folder) / CONFIG
    config = read_config(folder)
    sizes: dict[str, Any] = {}
    for field, key in CONFIG_KEYS.items():
        if key not in config:
            raise DatasetError(f"{path}: key {key} is missing")
        value = config[key]
        real = field in REAL_FIELDS
        if type(value) is bool or not isinstance(value, (int, float) if real else int):
            raise DatasetError(f"{path}: key {key}: {value!r} is not {'a number' if real else 'an integer'}")
        sizes[field] = float(value) if real else value
    _refuse_variants(path, config, sizes)
    shape = LlamaShape(**sizes, rope_scaling=read_rope_scaling(path, config.get("rope_scaling")))
    if problems := shape.problems():
        field, why = problems[0]
        key = CONFIG_KEYS.get(field) or "rope_scaling." + ROPE_SCALING_KEYS[field.split(".", 1)[1]]
        raise DatasetError(f"{path}: key {key} {why}")
    return shape


def read_rope_scaling(path: Path, stated: Any) -> RopeScaling | None:
    """config.json's rope_scaling: none (or the "default" type) is plain rotary embedding; "llama3"
    (Llama 3.1) is computed; any other type is refused, as it would give wrong logits silently."""
    if stated is None:
        return None
    if not isinstance(stated, dict):
        raise DatasetError(f"{path}: key rope_scaling: {stated!r} is not an object")
    # Older configs name the type "type"; transformers reads either.
    kind = stated.get("rope_type", stated.get("type"))
    if kind == "default":
        return None
    if kind != "llama3":
        raise DatasetError(f"{path}: key rope_scaling: {stated!r}: only the \"llama3\" type (Llama 3.1) is computed")
    values: dict[str, Any] = {}
    for field, key in ROPE_SCALING_KEYS.items():
        value = stated.get(key)
        integral = field == "original_max_position_embeddings"
        if type(value) is bool or not isinstance(value, int if integral else (int, float)):
            raise DatasetError(f"{path}: key rope_scaling.{key}: {value!r} is not "
                               f"{'an integer' if integral else 'a number'} (llama3 rotary scaling needs it)")
        values[field] = value if integral else float(value)
    return RopeScaling(**values)


def _refuse_variants(path: Path, config: dict[str, Any], sizes: dict[str, Any]) -> None:
    """Llama variants that load without error but compute something model.py does not (biases,
    another activation) would give wrong logits silently."""
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise DatasetError(f"{path}: key {key}: true, but the model's projections have no bias")
    if config.get("hidden_act", "silu") != "silu":
        raise DatasetError(f"{path}: key hidden_act: {config['hidden_act']!r}, but the model's MLP is SwiGLU (silu)")
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim * sizes["num_query_heads"] != sizes["hidden_dim"]:
        raise DatasetError(f"{path}: key head_dim: {head_dim} is not hidden_size / num_attention_heads")


def checkpoint_tensors(folder: Path) -> dict[str, Tensor]:
    """Every tensor of the checkpoint by name: the index's files if there is one, else every ``*.safetensors``."""
    folder = _folder(folder)
    index = folder / INDEX
    files = _indexed_files(index) if index.exists() else sorted(folder.glob("*.safetensors"))
    if not files:
        raise DatasetError(f"{folder}: no *.safetensors file")
    found: dict[str, Tensor] = {}
    for file in files:
        for name, tensor in read_header(file).items():
            if name in found:
                raise DatasetError(f"{file}: tensor {name} is also in {found[name].file}")
            found[name] = tensor
    if index.exists():
        _check_index(index, found)
    return found


def _read_index(index: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise DatasetError(f"{index}: cannot be read as a JSON object: {exc}") from exc
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise DatasetError(f"{index}: key weight_map: expected an object of tensor names to file names")
    return weight_map


def _indexed_files(index: Path) -> list[Path]:
    files = []
    for name in sorted(set(_read_index(index).values())):
        file = index.parent / name
        if Path(name).name != name or not file.is_file():
            raise DatasetError(f"{index}: key weight_map: file {name} is not in {index.parent}")
        files.append(file)
    return files


def _check_index(index: Path, found: dict[str, Tensor]) -> None:
    for name, file in _read_index(index).items():
        if name not in found or found[name].file.name != file:
            where = f"is in {found[name].file.name}" if name in found else "is in none of its files"
            raise DatasetError(f"{index}: tensor {name}: the index says {file}, but it {where}")


# ---------------------------------------------------------------- into the model


def hf_name(path: str) -> tuple[str, bool]:
    """(Hugging Face's tensor name, whether it is stored transposed) for a non-adapter variable of build_llama."""
    if path in _TOP_TENSORS:
        return _TOP_TENSORS[path]
    match = _LAYER_PATH.fullmatch(path)
    if match and match.group(2) in _LAYER_TENSORS:
        name, transposed = _LAYER_TENSORS[match.group(2)]
        return f"model.layers.{match.group(1)}.{name}", transposed
    raise DatasetError(f"model variable {path}: no tensor of a Hugging Face Llama checkpoint fills it "
                       "(was the model built by build_llama?)")


def _plan(model, tensors: dict[str, Tensor], folder: Path) -> list[tuple[Any, Tensor, bool]]:
    """(variable, tensor, transposed) for every weight but the adapters, all checked before any is read."""
    plan = []
    for variable in model.variables:
        if is_adapter(variable.path):
            continue
        name, transposed = hf_name(variable.path)
        if name not in tensors:
            raise DatasetError(f"{folder}: tensor {name} is missing (for {variable.path})")
        tensor = tensors[name]
        wanted = tuple(variable.shape)[::-1] if transposed else tuple(variable.shape)
        if tensor.shape != wanted:
            raise DatasetError(f"{tensor.file}: tensor {name} has shape {list(tensor.shape)}, the model needs "
                               f"{list(wanted)} (for {variable.path})")
        if tensor.dtype not in LOADABLE:
            raise DatasetError(f"{tensor.file}: tensor {name}: dtype {tensor.dtype} cannot be loaded "
                               f"(only {', '.join(LOADABLE)})")
        plan.append((variable, tensor, transposed))
    used = {tensor.name for _, tensor, _ in plan}
    # A checkpoint with more layers than the model would otherwise fill the first ones silently.
    unused = sorted(name for name in tensors if name not in used and not IGNORED.fullmatch(name))
    if unused:
        raise DatasetError(f"{tensors[unused[0]].file}: tensor {unused[0]} has no place in the model "
                           f"({len(unused)} such tensors; was the model built with read_shape of this checkpoint?)")
    return plan


def _model_shape(model) -> LlamaShape | None:
    for layer in model.layers:
        attention = getattr(layer, "attention", None)
        if isinstance(getattr(attention, "shape", None), LlamaShape):
            return attention.shape
    return None


def _check_same_shape(model, folder: Path) -> None:
    """What the tensors' shapes cannot show (rotary wavelength, epsilon, head counts) must match config.json."""
    built, stated = _model_shape(model), read_shape(folder)
    if built is None or built == stated:
        return
    if built.rope_scaling != stated.rope_scaling:
        raise DatasetError(f"{Path(folder) / CONFIG}: key rope_scaling states {stated.rope_scaling}, "
                           f"the model was built with {built.rope_scaling}")
    field = next(f for f in CONFIG_KEYS if getattr(built, f) != getattr(stated, f))
    raise DatasetError(f"{Path(folder) / CONFIG}: key {CONFIG_KEYS[field]} is {getattr(stated, field)}, "
                       f"the model was built with {getattr(built, field)}")


def load_checkpoint(model, folder: Path) -> None:
    """Fill every weight of ``model`` (built by build_llama) but its LoRA adapters from the checkpoint in ``folder``.

    Everything is checked first (config.json against the model, every tensor's presence,
    shape, dtype and extent), so a refused checkpoint leaves the model as it was.
    """
    folder = _folder(folder)
    _check_same_shape(model, folder)
    for variable, tensor, transposed in _plan(model, checkpoint_tensors(folder), folder):
        value = read_tensor(tensor)
        variable.assign(value.T if transposed else value)
