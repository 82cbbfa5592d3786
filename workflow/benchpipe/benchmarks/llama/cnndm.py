"""CNN/DailyMail as MLCommons' llama3.1-8b reference reads it, prepared for benchpipe's LoadGen QSL.

The reference (mlcommons/inference, language/llama3.1-8b) reads ``cnn_eval.json`` with
``pandas.read_json``: one record per article, with ``input`` (the prompt: the article inside
the instruction template), ``tok_input`` (that prompt's Llama 3.1 token ids) and ``output``
(the reference summary, the highlights). llama3.1-8b uses all 13,368 validation articles,
llama3.1-8b-edge a sample of 5,000 in the same form. The SUT is fed ``tok_input`` as it
is, never a tokenization of its own, so the prepared dataset keeps those ids exactly.

Prepared layout (``prepare``)::

    raw/cnn_eval.json              the reference's file, as fetched and verified
    raw/tokenizer.json             the tokenizer the ids belong to (Hugging Face's format)
    shards/eval-<k>.parquet        id, input, tok_input (list<int32>), output: in record order
    manifest.json                  sources and shards with their sha256, counts

Neither file is built in: their URLs and sha256 come from ``datasets.sources`` (the
reference hands the data out under its licence, the tokenizer comes with the user's
checkpoint), and ``benchpipe datasets stand-in-cnndm`` writes a generated pair in the same form.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.benchmark import Source
from benchpipe.contracts.errors import DatasetError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.contracts.jsonfile import read_json

if TYPE_CHECKING:  # tokenizers is imported only where text is encoded or decoded.
    import tokenizers

EVAL_FILE = "cnn_eval.json"
TOKENIZER_FILE = "tokenizer.json"
FIELDS = ("input", "tok_input", "output")
# The official checker's dataset sizes (submission_checker/constants.py, v6.1).
DATASET_SIZES = {"llama3.1-8b": 13_368, "llama3.1-8b-edge": 5_000}
LLAMA3_VOCABULARY = 128_256  # Llama 3.1: 128,000 BPE tokens and 256 special ones
MANIFEST = "manifest.json"
SPLIT = "eval"
# About 5 MB of token ids a shard for the reference's prompts (~1,000 tokens each).
SHARD_RECORDS = 1024
# Where the reference prepares the file; no URL or checksum is built in (see the docstring).
REFERENCE_URL = "https://github.com/mlcommons/inference/tree/master/language/llama3.1-8b"
UNSET_SHA256 = ""
SOURCES = (Source(EVAL_FILE, REFERENCE_URL, UNSET_SHA256), Source(TOKENIZER_FILE, REFERENCE_URL, UNSET_SHA256))


@dataclass(frozen=True)
class CnnDailyMail:
    """The records in file order. Prompt ``i``'s token ids are ``tokens[offsets[i]:offsets[i + 1]]``:
    one flat int32 array, since the prompts' lengths differ and 13,368 small arrays would
    cost more than the ids themselves."""

    inputs: tuple[str, ...]
    tokens: np.ndarray  # int32
    offsets: np.ndarray  # int64, len(inputs) + 1, offsets[0] == 0
    targets: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.targets)

    def prompt(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index]:self.offsets[index + 1]]

    def prompt_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def load_tokenizer(path: Path) -> "tokenizers.Tokenizer":
    """A tokenizer.json in Hugging Face's format (a checkpoint's own, or the stand-in's)."""
    from tokenizers import Tokenizer

    if not path.is_file():
        raise DatasetError(f"{path}: missing: the tokenizer.json of the model's checkpoint")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own Exception subclass for every parse error
        raise DatasetError(f"{path}: not a Hugging Face tokenizer.json: {exc}") from exc


def vocabulary_size(tokenizer: "tokenizers.Tokenizer") -> int:
    """Every id the tokenizer knows, its added special tokens included (128,256 for Llama 3.1)."""
    return tokenizer.get_vocab_size(with_added_tokens=True)


def read_reference(path: Path, vocabulary: int) -> CnnDailyMail:
    """The reference's cnn_eval.json, every record checked: the three fields, ``input`` and
    ``output`` strings, ``tok_input`` a non-empty list of ids in [0, ``vocabulary``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: missing") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    inputs: list[str] = []
    targets: list[str] = []
    prompts: list[np.ndarray] = []
    for index, record in _records(path, text):
        prompt_text, tokens, target = _check_record(path, index, record, vocabulary)
        inputs.append(prompt_text)
        prompts.append(tokens)
        targets.append(target)
    if not prompts:
        raise DatasetError(f"{path}: no records")
    offsets = np.zeros(len(prompts) + 1, np.int64)
    np.cumsum([len(p) for p in prompts], out=offsets[1:])
    return CnnDailyMail(inputs=tuple(inputs), tokens=np.concatenate(prompts), offsets=offsets, targets=tuple(targets))


def _records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(index, record) of a JSON list of records, decoded one record at a time: the whole
    file as Python objects (13 million token ids as ints) would take several times its
    size, while one record's lists become an int32 array before the next is read. A
    column-oriented object (pandas' to_json default) is read whole."""
    decoder = json.JSONDecoder()
    start = _skip_space(text, 0)
    if text.startswith("{", start):
        yield from _columns(path, text)
        return
    if not text.startswith("[", start):
        raise DatasetError(f"{path}: not a JSON list of records (the reference's cnn_eval.json is one)")
    position = _skip_space(text, start + 1)
    index = 0
    if text.startswith("]", position):
        return
    while True:
        try:
            record, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: record {index}: not JSON: {exc}") from exc
        yield index, record
        index += 1
        position = _skip_space(text, position)
        if text.startswith("]", position):
            break
        if not text.startswith(",", position):
            raise DatasetError(f"{path}: after record {index - 1}: expected ',' or ']' at character {position}")
        position = _skip_space(text, position + 1)
    if _skip_space(text, position + 1) != len(text):
        raise DatasetError(f"{path}: text after the list of records, at character {position + 1}")


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _columns(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    try:
        table = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not JSON: {exc}") from exc
    missing = [f for f in FIELDS if not isinstance(table.get(f), dict)]
    if missing:
        raise DatasetError(f"{path}: a JSON object, but no column {', '.join(missing)} of records by index "
                           f"(the reference's records have {', '.join(FIELDS)})")
    rows = list(table["input"])
    for field in FIELDS[1:]:
        if list(table[field]) != rows:
            raise DatasetError(f"{path}: column {field} has other record indexes than column input")
    for index, key in enumerate(rows):
        yield index, {field: table[field][key] for field in FIELDS}


def _check_record(path: Path, index: int, record: Any, vocabulary: int) -> tuple[str, np.ndarray, str]:
    def fail(why: str) -> DatasetError:
        return DatasetError(f"{path}: record {index}: {why}")

    if not isinstance(record, dict):
        raise fail(f"a {type(record).__name__}, not an object with {', '.join(FIELDS)}")
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise fail(f"no {', '.join(missing)} (the reference's records have {', '.join(FIELDS)})")
    for field in ("input", "output"):
        if not isinstance(record[field], str):
            raise fail(f"{field} is a {type(record[field]).__name__}, not text")
    tokens = record["tok_input"]
    if not isinstance(tokens, list) or not tokens:
        raise fail("tok_input is not a non-empty list of token ids")
    # bool is an int to Python, and JSON's 1.0 a float: neither is a token id.
    wrong = next((n for n, t in enumerate(tokens) if type(t) is not int), None)
    if wrong is not None:
        raise fail(f"tok_input[{wrong}] is {tokens[wrong]!r}, not an integer token id")
    ids = np.asarray(tokens, np.int64)
    outside = np.flatnonzero((ids < 0) | (ids >= vocabulary))
    if len(outside):
        raise fail(f"tok_input[{outside[0]}] = {ids[outside[0]]} is outside the tokenizer's vocabulary "
                   f"[0, {vocabulary})")
    return record["input"], ids.astype(np.int32), record["output"]


def _shard_table(data: CnnDailyMail, start: int, stop: int):
    import pyarrow as pa

    offsets = data.offsets[start:stop + 1]
    values = pa.array(data.tokens[offsets[0]:offsets[-1]], pa.int32())
    return pa.table({
        "id": pa.array(np.arange(start, stop, dtype=np.int32)),
        "input": pa.array(data.inputs[start:stop], pa.string()),
        "tok_input": pa.ListArray.from_arrays(pa.array(offsets - offsets[0], pa.int32()), values),
        "output": pa.array(data.targets[start:stop], pa.string()),
    })


def write_shards(data: CnnDailyMail, out_dir: Path) -> list[dict[str, Any]]:
    """``shards/eval-<k>.parquet`` under ``out_dir``, SHARD_RECORDS records each, in record order."""
    import pyarrow.parquet as pq

    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    entries = []
    for k, start in enumerate(range(0, len(data), SHARD_RECORDS)):
        stop = min(start + SHARD_RECORDS, len(data))
        relative = f"shards/{SPLIT}-{k:05d}.parquet"
        pq.write_table(_shard_table(data, start, stop), out_dir / relative, compression="zstd")
        entries.append({"path": relative, "split": SPLIT, "rows": stop - start,
                        "sha256": sha256_file(out_dir / relative)})
    return entries


def prepare(sources: Sequence[Source], out_dir: Path, cache_dir: Path | None = None, *,
            offline: bool = False, benchmark: str = "llama3.1-8b") -> dict[str, Any]:
    """Fetch and verify cnn_eval.json and tokenizer.json into the cache, check every record
    against the tokenizer's vocabulary, write shards and manifest: all of ``out_dir`` or nothing."""
    from benchpipe.datasets.fetch import cached_source, default_cache_dir
    from benchpipe.datasets.offline import require_cached

    by_name = {s.name: s for s in sources}
    missing = [n for n in (EVAL_FILE, TOKENIZER_FILE) if n not in by_name]
    if missing:
        raise DatasetError(f"{benchmark}: no source {', '.join(missing)} (it needs {EVAL_FILE} and {TOKENIZER_FILE})")
    cache = cache_dir or default_cache_dir()
    if offline:
        require_cached({benchmark: list(sources)}, cache)
    with atomic_dir(out_dir) as tmp:
        raw = tmp / "raw"
        raw.mkdir()
        for source in sources:
            shutil.copyfile(cached_source(source, cache, offline=offline), raw / source.name)
        try:
            vocabulary = vocabulary_size(load_tokenizer(raw / TOKENIZER_FILE))
            data = read_reference(raw / EVAL_FILE, vocabulary)
        except DatasetError as exc:
            # The temporary directory is gone once this fails: name the file as the user knows it.
            raise DatasetError(f"{benchmark}: {str(exc).replace(str(tmp) + '/', '')} "
                               f"(dataset for {out_dir})") from exc
        lengths = data.prompt_lengths()
        manifest = {
            "benchmark": benchmark,
            "dataset": "cnn_dailymail",
            "sources": [{"name": s.name, "url": s.url, "path": f"raw/{s.name}", "sha256": s.sha256} for s in sources],
            "records": len(data),
            "full": len(data) == DATASET_SIZES.get(benchmark),
            "vocabulary_size": vocabulary,
            "prompt_tokens": {"min": int(lengths.min()), "max": int(lengths.max()), "total": int(lengths.sum())},
            "shards": write_shards(data, tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_prepared(data_dir: Path) -> CnnDailyMail:
    """The prepared records, every shard checked against the manifest's sha256 first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = read_json(data_dir / MANIFEST, DatasetError, missing="prepare the dataset first")
    tables = []
    for entry in manifest.get("shards", ()):
        path = data_dir / entry["path"]
        if not path.is_file():
            raise DatasetError(f"{path}: shard listed in {data_dir / MANIFEST} is missing")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise DatasetError(f"{path}: sha256 {actual} does not match the manifest's {entry['sha256']}")
        tables.append(pq.read_table(path))
    if not tables:
        raise DatasetError(f"{data_dir / MANIFEST}: no shards")
    table = pa.concat_tables(tables)
    if table.num_rows != manifest.get("records"):
        raise DatasetError(f"{data_dir}: {table.num_rows} records in the shards, "
                           f"{data_dir / MANIFEST} says {manifest.get('records')}")
    prompts = table.column("tok_input").combine_chunks()
    offsets = np.asarray(prompts.offsets, np.int64)
    return CnnDailyMail(
        inputs=tuple(table.column("input").to_pylist()),
        tokens=prompts.flatten().to_numpy().astype(np.int32, copy=False),
        offsets=offsets - offsets[0],
        targets=tuple(table.column("output").to_pylist()),
    )


def tokenizer_path(data_dir: Path) -> Path:
    """The prepared dataset's copy of the tokenizer its token ids belong to."""
    return data_dir / "raw" / TOKENIZER_FILE
