"""A generated corpus in the reference's tokenized GovReport form, for tests and development runs.

Each row is a "report" and its "summary": the report opens with one of a few topic tokens and
goes on with random tokens; the summary is the topic's own fixed sentence. The summary is thus
learnable (recall the topic, then follow its sentence) while the report is noise, so a tiny
model's eval loss over the summary tokens really falls, below 1.0 within a few hundred samples.
It stands in for GovReport's form, not its content: a loss on it says nothing of Llama-2-70B.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchpipe.benchmarks.llama.govreport import EVAL_FILE, IGNORE_INDEX, TRAIN_FILE
from benchpipe.contracts.atomic import atomic_file

PAD, BOS, SEPARATOR, EOS = 0, 1, 2, 3
FIRST_TOPIC = 4
TOPICS = 4
SUMMARY_TOKENS = 12
VOCABULARY = 64


def _sentences(rng: np.random.Generator) -> list[np.ndarray]:
    words = np.arange(FIRST_TOPIC + TOPICS, VOCABULARY)
    return [np.concatenate([[FIRST_TOPIC + t], rng.choice(words, SUMMARY_TOKENS - 1, replace=False)])
            for t in range(TOPICS)]


def corpus_rows(rows: int, length: int, seed: int, sentences_seed: int = 0) -> dict[str, np.ndarray]:
    """``rows`` samples of ``length`` tokens: input_ids, labels and attention_mask, as the reference has them."""
    if length < SUMMARY_TOKENS + 8:
        raise ValueError(f"length {length}: the corpus needs at least {SUMMARY_TOKENS + 8} tokens a row")
    sentences = _sentences(np.random.default_rng(sentences_seed))
    rng = np.random.default_rng(seed)
    ids = np.full((rows, length), PAD, np.int64)
    labels = np.full((rows, length), IGNORE_INDEX, np.int64)
    mask = np.zeros((rows, length), np.int64)
    for row in range(rows):
        topic = int(rng.integers(TOPICS))
        # One report length (a few padding tokens after every summary): the summary starts at
        # one position, which a model of two tiny blocks learns within a few hundred samples.
        report_length = length - SUMMARY_TOKENS - 6
        report = np.concatenate([[BOS, FIRST_TOPIC + topic],
                                 rng.integers(FIRST_TOPIC + TOPICS, VOCABULARY, report_length - 2)])
        summary = np.concatenate([sentences[topic], [EOS]])
        text = np.concatenate([report, [SEPARATOR], summary])
        ids[row, :len(text)] = text
        mask[row, :len(text)] = 1
        labels[row, len(report) + 1:len(text)] = summary
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def write_corpus(out_dir: Path, *, train_rows: int = 512, eval_rows: int = 64, length: int = 64,
                 seed: int = 0) -> dict[str, Path]:
    """train.parquet and validation.parquet under ``out_dir``; the same arguments give the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows, split_seed in ((TRAIN_FILE, train_rows, seed * 2 + 1), (EVAL_FILE, eval_rows, seed * 2 + 2)):
        columns = corpus_rows(rows, length, split_seed, sentences_seed=seed)
        table = pa.table({k: pa.array(list(v), pa.list_(pa.int64())) for k, v in columns.items()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        path = out_dir / name
        with atomic_file(path, "wb") as f:
            f.write(sink.getvalue().to_pybytes())
        written[name] = path
    return written
