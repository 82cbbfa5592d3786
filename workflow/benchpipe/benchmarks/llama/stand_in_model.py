"""A tiny Llama that summarises the generated CNN/DailyMail stand-in, saved as a Hugging Face checkpoint.

What llama3.1-8b's development runs serve in place of Llama-3.1-8B-Instruct: the same model
code and the same checkpoint layout (config.json, model.safetensors, generation_config.json),
so that serving it exercises the checkpoint reader, the KV-cache decoder and the accuracy
path a real checkpoint takes. It is trained here, in seconds, to continue each stand-in
prompt with its summary and the end-of-text token, so that its ROUGE is high and its outputs
end as a real model's do. Its scores say nothing of Llama 3.1.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from benchpipe.benchmarks.llama.model import LlamaShape
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.errors import DatasetError

END_OF_TEXT = "<|end_of_text|>"
# Small enough to train in seconds on two cores, large enough to learn the stand-in.
STAND_IN_LAYERS, STAND_IN_HEADS, STAND_IN_KV_HEADS, STAND_IN_HIDDEN, STAND_IN_MLP = 2, 4, 2, 64, 128
TRAIN_STEPS = 300
BATCH = 16
LEARNING_RATE = 3e-3
# The stand-in's summaries are a handful of tokens: a shorter limit than the reference's
# 2,000 keeps a development run short should the model ever miss its end token.
MAX_NEW_TOKENS = 32


def stand_in_llama_shape(vocabulary_size: int) -> LlamaShape:
    return LlamaShape(vocabulary_size=vocabulary_size, num_layers=STAND_IN_LAYERS, num_query_heads=STAND_IN_HEADS,
                      num_key_value_heads=STAND_IN_KV_HEADS, hidden_dim=STAND_IN_HIDDEN,
                      intermediate_dim=STAND_IN_MLP)


def training_rows(prompts: list[np.ndarray], summaries: list[np.ndarray], eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, next-token labels), right-padded: labels only on the summary and its end token,
    -1 elsewhere, so that the loss teaches the continuation, not the article."""
    sequences = [np.concatenate([p, s, [eos]]).astype(np.int32) for p, s in zip(prompts, summaries)]
    length = max(len(s) for s in sequences) - 1
    ids = np.zeros((len(sequences), length), np.int32)
    labels = np.full((len(sequences), length), -1, np.int32)
    for row, (prompt, sequence) in enumerate(zip(prompts, sequences)):
        ids[row, :len(sequence) - 1] = sequence[:-1]
        start = len(prompt) - 1  # the position whose next token is the summary's first
        labels[row, start:len(sequence) - 1] = sequence[start + 1:]
    return ids, labels


def train_stand_in(prompts: list[np.ndarray], summaries: list[np.ndarray], vocabulary_size: int, eos: int, *,
                   steps: int = TRAIN_STEPS, seed: int = 0):
    """The tiny Llama, trained for ``steps`` batches of BATCH rows to continue prompts with summaries."""
    import keras
    import tensorflow as tf

    from benchpipe.benchmarks.llama.model import build_llama

    keras.utils.set_random_seed(seed)
    ids, labels = training_rows(prompts, summaries, eos)
    model = build_llama(stand_in_llama_shape(vocabulary_size), name="stand_in")
    optimizer = keras.optimizers.Adam(LEARNING_RATE)

    @tf.function
    def train_step(batch_ids, batch_labels):
        with tf.GradientTape() as tape:
            logits = model(batch_ids, training=True)
            counted = batch_labels >= 0
            losses = tf.keras.losses.sparse_categorical_crossentropy(
                tf.where(counted, batch_labels, 0), logits, from_logits=True)
            loss = tf.reduce_sum(tf.where(counted, losses, 0.0)) / tf.reduce_sum(tf.cast(counted, tf.float32))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = rng.integers(0, len(ids), BATCH)
        train_step(ids[rows], labels[rows])
    return model


def _safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """float32 tensors in the safetensors format: an 8-byte header length, a JSON header, the data."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format aligns the data to 8 bytes
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def checkpoint_tensors(model) -> dict[str, np.ndarray]:
    """Every weight of ``model`` under its Hugging Face name, transposed where HF stores [out, in]."""
    from benchpipe.benchmarks.llama.checkpoint import hf_name

    tensors = {}
    for variable in model.weights:
        if "lora_" in variable.path:
            raise DatasetError(f"{variable.path}: merge LoRA adapters before saving a checkpoint")
        name, transposed = hf_name(variable.path)
        value = np.asarray(variable.numpy(), np.float32)
        tensors[name] = value.T if transposed else value
    return tensors


def save_checkpoint(model, shape: LlamaShape, folder: Path, *, eos: int, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
    """config.json, model.safetensors and generation_config.json, as Hugging Face lays out a Llama."""
    from benchpipe.benchmarks.llama.checkpoint import CONFIG_KEYS

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
              "tie_word_embeddings": False, "torch_dtype": "float32", "eos_token_id": eos,
              **{key: getattr(shape, field) for field, key in CONFIG_KEYS.items()}}
    with atomic_dir(folder) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(
            {"eos_token_id": [eos], "max_new_tokens": max_new_tokens, "do_sample": False}, indent=2) + "\n")
        _safetensors(tmp / "model.safetensors", checkpoint_tensors(model))


def write_stand_in_checkpoint(cnn_eval: Path, tokenizer_file: Path, out: Path, *, steps: int = TRAIN_STEPS,
                              seed: int = 0) -> None:
    """Train the tiny Llama on the stand-in data (cnn_eval.json and tokenizer.json) and save it in ``out``."""
    from benchpipe.benchmarks.llama.cnndm import load_tokenizer, read_reference, vocabulary_size

    tokenizer = load_tokenizer(tokenizer_file)
    vocabulary = vocabulary_size(tokenizer)
    eos = tokenizer.token_to_id(END_OF_TEXT)
    if eos is None:
        raise DatasetError(f"{tokenizer_file}: no {END_OF_TEXT} token to end a summary with")
    data = read_reference(cnn_eval, vocabulary)
    prompts = [data.prompt(i) for i in range(len(data))]
    summaries = [np.asarray(tokenizer.encode(t, add_special_tokens=False).ids, np.int32) for t in data.targets]
    model = train_stand_in(prompts, summaries, vocabulary, eos, steps=steps, seed=seed)
    save_checkpoint(model, stand_in_llama_shape(vocabulary), out, eos=eos)
