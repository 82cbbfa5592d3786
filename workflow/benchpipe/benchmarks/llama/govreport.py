"""SCROLLS GovReport in the MLPerf reference's tokenized form, read into benchpipe's shards.

The reference fine-tunes on GovReport already tokenized for Llama 2: one row per document and
its summary, with ``input_ids``, ``labels`` and ``attention_mask`` of one fixed length (8192),
right-padded; ``labels`` repeats the summary's tokens and holds -100 over the report and the
padding, so that the loss counts the summary only. benchpipe reads the two Parquet files of
that form (``train.parquet`` and ``validation.parquet``, as the Hugging Face copy of the
reference data names its splits) and keeps ``input_ids`` and ``labels`` of each row, stacked,
as one sample of shape (2, length); the attention mask is checked, not kept: right padding
under a causal mask never reaches a position the loss counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchpipe.contracts.benchmark import Split
from benchpipe.contracts.errors import DatasetError

TRAIN_FILE = "train.parquet"
EVAL_FILE = "validation.parquet"
COLUMNS = ("input_ids", "labels", "attention_mask")
IGNORE_INDEX = -100
# Token ids travel through the float32 shards exactly up to 2**24: Llama 2's vocabulary is 32,000.
MAX_TOKEN_ID = 2**24


def read_split(path: Path) -> Split:
    """One split's rows as a Split: features (rows, 2, length) of input ids over labels, as float32;
    labels: each row's count of summary tokens (the positions the loss counts)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from exc
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: no column {', '.join(missing)} (the reference's form has {', '.join(COLUMNS)})")
    if not table.num_rows:
        raise DatasetError(f"{path}: no rows")
    arrays = {name: _matrix(path, name, table.column(name)) for name in COLUMNS}
    ids, labels, mask = arrays["input_ids"], arrays["labels"], arrays["attention_mask"]
    for name, matrix in arrays.items():
        if matrix.shape != ids.shape:
            raise DatasetError(
                f"{path}: column {name} has rows of {matrix.shape[1]} tokens, input_ids of {ids.shape[1]}")
    _check_rows(path, ids, labels, mask)
    counted = (labels != IGNORE_INDEX).sum(axis=1).astype(np.int32)
    return Split(features=np.stack([ids, labels], axis=1).astype(np.float32), labels=counted,
                 ids=np.arange(len(ids), dtype=np.int32))


def _matrix(path: Path, name: str, column) -> np.ndarray:
    """A list column as a (rows, length) int64 matrix, through Arrow's buffers: the reference's
    train split is 32 million tokens, too many to pass through Python lists."""
    import pyarrow as pa

    array = column.combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
            or pa.types.is_fixed_size_list(array.type)) or not pa.types.is_integer(array.type.value_type):
        raise DatasetError(f"{path}: column {name} is {array.type}, not a list of integers a row")
    if array.null_count or array.values.null_count:
        raise DatasetError(f"{path}: column {name} has null values")
    if pa.types.is_fixed_size_list(array.type):
        length = array.type.list_size
    else:
        lengths = np.diff(np.asarray(array.offsets))
        found = sorted(set(lengths.tolist()))
        if len(found) != 1:
            raise DatasetError(f"{path}: column {name}: rows of different lengths ({found[:4]}): "
                               "the reference's rows all have one length")
        length = int(lengths[0])
    return array.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(len(array), length)


def _check_rows(path: Path, ids: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> None:
    def fail(row: int, why: str) -> DatasetError:
        return DatasetError(f"{path}: row {row}: {why}")

    if not np.isin(mask, (0, 1)).all():
        raise fail(int(np.argwhere(~np.isin(mask, (0, 1)))[0][0]), "attention_mask holds values other than 0 and 1")
    # Right padding: ones, then zeros. A zero before a one would hide a token from the ones after it.
    bad = np.argwhere(np.diff(mask, axis=1) > 0)
    if len(bad):
        raise fail(int(bad[0][0]), "attention_mask is not right-padded (a 0 before a 1)")
    if ((ids < 0) | (ids >= MAX_TOKEN_ID)).any():
        raise fail(int(np.argwhere((ids < 0) | (ids >= MAX_TOKEN_ID))[0][0]), f"input_ids outside [0, {MAX_TOKEN_ID})")
    counted = labels != IGNORE_INDEX
    if (counted & (mask == 0)).any():
        raise fail(int(np.argwhere(counted & (mask == 0))[0][0]), "a label on a padding position")
    if (counted & (labels != ids)).any():
        raise fail(int(np.argwhere(counted & (labels != ids))[0][0]),
                   "a label that is not the input id at its position (the labels repeat the summary's tokens)")
    if not counted[:, 1:].any(axis=1).all():
        raise fail(int(np.argwhere(~counted[:, 1:].any(axis=1))[0][0]), "no label to learn (all -100)")


def preprocess(raw_dir: Path) -> tuple[Split, Split]:
    return read_split(raw_dir / TRAIN_FILE), read_split(raw_dir / EVAL_FILE)


def vocabulary_size(*splits: np.ndarray) -> int:
    """The smallest vocabulary that holds every input id of the stacked (rows, 2, length) features."""
    return int(max(int(s[:, 0].max()) for s in splits)) + 1
