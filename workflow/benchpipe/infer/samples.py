"""Where the QSL's samples come from, read only when LoadGen asks for them.

LoadGen loads a performance set (a few hundred to a few thousand samples) before a
performance run and the whole dataset, set by set, in an accuracy run: a sample source
reads exactly the rows asked for, so that memory holds one set at a time and a large
validation set (ImageNet: 50,000 images) is never read whole up front. Labels are small
and read once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from benchpipe.contracts.errors import BenchpipeError, InferenceError


class SampleSource(Protocol):
    """Preprocessed model inputs, addressed by QSL index 0..total-1."""

    total: int
    sample_shape: tuple[int, ...]
    labels: np.ndarray  # int32, one per sample

    def read(self, indices: np.ndarray) -> np.ndarray:
        """float32 rows of ``indices``, in that order, as one C-contiguous array (a source that
        sets ``dtype``, such as token ids for MobileBERT, reads rows of that dtype)."""

    def describe(self) -> str:
        """One line for READMEs: what the samples are and how they were preprocessed."""


def _checked_indices(indices: np.ndarray, total: int, where: str) -> np.ndarray:
    picked = np.asarray(indices, dtype=np.int64).reshape(-1)
    if picked.size and (picked.min() < 0 or picked.max() >= total):
        raise InferenceError(f"{where}: sample index out of range 0..{total - 1}")
    return picked


def _limited(count: int, limit: int | None, where: str) -> int:
    if limit is None:
        return count
    if limit < 1:
        raise InferenceError(f"{where}: sample limit must be at least 1, not {limit}")
    return min(count, limit)


def _scatter_by_part(indices: np.ndarray, starts: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each part (shard) holding requested rows: (rows within it, positions in the output)."""
    parts = np.searchsorted(starts, indices, side="right") - 1
    found = {}
    for part in np.unique(parts):
        positions = np.flatnonzero(parts == part)
        found[int(part)] = (indices[positions] - starts[part], positions)
    return found


class ArraySamples:
    """Samples already in memory (a bench's synthetic inputs, a test's few rows)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, description: str) -> None:
        if len(features) != len(labels) or len(features) == 0:
            raise InferenceError(f"{description}: {len(features)} samples but {len(labels)} labels")
        self._features = np.ascontiguousarray(features, dtype=np.float32)
        self.labels = np.ascontiguousarray(labels, dtype=np.int32)
        self.total = len(labels)
        self.sample_shape = tuple(self._features.shape[1:])
        self._description = description

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self._features[_checked_indices(indices, self.total, self._description)]

    def describe(self) -> str:
        return self._description


# --- digits / mnist: the prepared Parquet shards -------------------------------------------


@dataclass(frozen=True)
class _Shard:
    path: Path
    start: int  # QSL index of its first row
    rows: int


class ParquetSamples:
    """One split of a prepared dataset (``benchpipe datasets prepare``), read shard by shard.

    ``limit`` keeps the first N samples: a development accuracy run on a subset.
    """

    def __init__(self, data_dir: Path, split: str = "eval", limit: int | None = None) -> None:
        from benchpipe.datasets.prepare import MANIFEST, read_manifest

        self.data_dir = Path(data_dir)
        self.split = split
        manifest_path = self.data_dir / MANIFEST
        try:
            manifest = read_manifest(self.data_dir)
        except BenchpipeError as exc:
            raise InferenceError(str(exc)) from exc
        try:
            self.sample_shape = tuple(int(d) for d in manifest["sample_shape"])
            listed = [e for e in manifest["shards"] if e["split"] == split]
            self._benchmark = str(manifest.get("benchmark", "?"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InferenceError(f"{manifest_path}: key {exc} missing or malformed") from exc
        if not listed:
            raise InferenceError(f"{manifest_path}: no shards for split '{split}'")
        self._shards = self._verified(listed, manifest_path)
        labels = np.concatenate([self._labels(shard) for shard in self._shards])
        self.total = _limited(len(labels), limit, f"{manifest_path} ({split})")
        self.labels = np.ascontiguousarray(labels[: self.total], dtype=np.int32)
        self._starts = np.asarray([s.start for s in self._shards], dtype=np.int64)

    def _verified(self, listed: list[dict], manifest_path: Path) -> list[_Shard]:
        from benchpipe.contracts.hashing import sha256_file

        shards, start = [], 0
        for entry in listed:
            path = self.data_dir / entry["path"]
            if not path.is_file():
                raise InferenceError(f"{path}: shard listed in {manifest_path} is missing")
            # The accuracy run scores against these bytes: a changed shard must not pass.
            actual = sha256_file(path)
            if actual != entry["sha256"]:
                raise InferenceError(f"{path}: sha256 {actual} does not match {manifest_path}'s {entry['sha256']}")
            shards.append(_Shard(path, start, int(entry["rows"])))
            start += int(entry["rows"])
        return shards

    def _labels(self, shard: _Shard) -> np.ndarray:
        import pyarrow.parquet as pq

        labels = pq.read_table(shard.path, columns=["label"]).column("label").to_numpy()
        if len(labels) != shard.rows:
            raise InferenceError(f"{shard.path}: {len(labels)} rows, the manifest lists {shard.rows}")
        return labels

    def read(self, indices: np.ndarray) -> np.ndarray:
        import pyarrow.parquet as pq

        picked = _checked_indices(indices, self.total, f"{self.data_dir} ({self.split})")
        out = np.empty((len(picked), *self.sample_shape), dtype=np.float32)
        size = int(np.prod(self.sample_shape))
        for part, (rows, positions) in _scatter_by_part(picked, self._starts).items():
            shard = self._shards[part]
            column = pq.read_table(shard.path, columns=["features"]).column("features").combine_chunks()
            flat = column.flatten().to_numpy(zero_copy_only=False).reshape(shard.rows, size)
            out[positions] = flat[rows].reshape(len(rows), *self.sample_shape)
        return out

    def describe(self) -> str:
        shape = "x".join(str(d) for d in self.sample_shape)
        return (f"{self.total} {self.split} samples of {self._benchmark} ({shape} float32), from the Parquet "
                f"shards that `benchpipe datasets prepare` wrote with the benchmark's own preprocessing")


# --- ImageNet validation: preprocessed arrays or TFRecord shards ---------------------------

VAL_MAP = "val_map.txt"
ARRAYS_DIR = "preprocessed/val"
# The size the preprocessed arrays were written at (MLPerf inference's ResNet-50 input).
ARRAY_SIZE = 224
_RECORD_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_RECORD_FOOTER = 4  # uint32 masked CRC of the data


def read_val_map(path: Path) -> tuple[list[str], np.ndarray]:
    """(image names, labels) in record order."""
    if not path.is_file():
        raise InferenceError(f"{path}: missing: run `benchpipe datasets imagenet` to write data/imagenet")
    names, labels = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise InferenceError(f"{path}: line {lineno}: expected '<image> <label>', found {line!r}")
        names.append(fields[0])
        labels.append(int(fields[1]))
    if not names:
        raise InferenceError(f"{path}: no images listed")
    return names, np.asarray(labels, dtype=np.int32)


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of each record's payload in a TFRecord file, from the headers alone.

    Seeking from header to header finds a record without reading the ones before it.
    """
    offsets = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        position = 0
        while position < size:
            header = f.read(_RECORD_HEADER)
            if len(header) != _RECORD_HEADER:
                raise InferenceError(f"{path}: truncated record header at byte {position}")
            length = int.from_bytes(header[:8], "little")
            offsets.append((position + _RECORD_HEADER, length))
            position += _RECORD_HEADER + length + _RECORD_FOOTER
            if position > size:
                raise InferenceError(f"{path}: record at byte {offsets[-1][0] - _RECORD_HEADER} runs past the end")
            f.seek(position)
    return offsets


class ImageNetValSamples:
    """ImageNet validation images as ``benchpipe datasets imagenet`` wrote them.

    At ``image_size`` 224 the QSL reads the preprocessed arrays (MLPerf inference's
    ResNet-50 preprocessing); at any other size (open-division models trained smaller) it
    decodes the requested records of the validation TFRecord shards with the training
    reference's eval preprocessing at that size, which is what such a model was evaluated on.
    """

    def __init__(self, data_dir: Path, image_size: int, limit: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.image_size = int(image_size)
        if self.image_size < 1:
            raise InferenceError(f"{self.data_dir}: image size must be positive, not {image_size}")
        self.sample_shape = (self.image_size, self.image_size, 3)
        names, labels = read_val_map(self.data_dir / VAL_MAP)
        self.total = _limited(len(names), limit, str(self.data_dir / VAL_MAP))
        self._names = names[: self.total]
        self.labels = np.ascontiguousarray(labels[: self.total])
        self.from_arrays = self.image_size == ARRAY_SIZE
        if self.from_arrays:
            arrays = self.data_dir / ARRAYS_DIR
            if not arrays.is_dir():
                raise InferenceError(f"{arrays}: missing: run `benchpipe datasets imagenet` to write data/imagenet")
        else:
            self._shards, self._starts = self._shard_table(len(names))
            self._record_offsets: dict[int, list[tuple[int, int]]] = {}

    def _shard_table(self, listed: int) -> tuple[list[Path], np.ndarray]:
        from benchpipe.benchmarks.resnet.input_pipeline import _split_shards, read_manifest

        try:
            manifest = read_manifest(self.data_dir)
            shards = _split_shards(manifest, "val", self.data_dir / "manifest.json")
        except BenchpipeError as exc:
            raise InferenceError(str(exc)) from exc
        paths, starts, start = [], [], 0
        for shard in shards:
            path = self.data_dir / shard["path"]
            if not path.is_file():
                raise InferenceError(f"{path}: validation shard listed in {self.data_dir / 'manifest.json'} is missing")
            paths.append(path)
            starts.append(start)
            start += int(shard["records"])
        if start != listed:
            raise InferenceError(
                f"{self.data_dir / 'manifest.json'}: {start} validation records, "
                f"{self.data_dir / VAL_MAP} lists {listed}")
        return paths, np.asarray(starts, dtype=np.int64)

    def read(self, indices: np.ndarray) -> np.ndarray:
        picked = _checked_indices(indices, self.total, str(self.data_dir))
        if self.from_arrays:
            return self._read_arrays(picked)
        return self._decode_records(picked)

    def _read_arrays(self, picked: np.ndarray) -> np.ndarray:
        out = np.empty((len(picked), *self.sample_shape), dtype=np.float32)
        for k, index in enumerate(picked):
            path = self.data_dir / ARRAYS_DIR / f"{self._names[index]}.npy"
            try:
                array = np.load(path, allow_pickle=False)
            except FileNotFoundError as exc:
                raise InferenceError(f"{path}: missing (listed in {self.data_dir / VAL_MAP})") from exc
            except (OSError, ValueError) as exc:
                raise InferenceError(f"{path}: unreadable: {exc}") from exc
            if array.shape != self.sample_shape or array.dtype != np.float32:
                raise InferenceError(f"{path}: {array.dtype} {array.shape}, expected float32 {self.sample_shape}")
            out[k] = array
        return out

    def _records(self, part: int, rows: np.ndarray) -> list[bytes]:
        path = self._shards[part]
        if part not in self._record_offsets:
            self._record_offsets[part] = record_offsets(path)
        offsets = self._record_offsets[part]
        if len(offsets) <= int(rows.max()):
            raise InferenceError(f"{path}: {len(offsets)} records, fewer than the manifest lists")
        found = []
        with open(path, "rb") as f:
            for row in rows:
                offset, length = offsets[row]
                f.seek(offset)
                found.append(f.read(length))
        return found

    def _decode_records(self, picked: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        from benchpipe.benchmarks.resnet.input_pipeline import preprocess_eval

        out = np.empty((len(picked), *self.sample_shape), dtype=np.float32)
        for part, (rows, positions) in _scatter_by_part(picked, self._starts).items():
            records = self._records(part, rows)
            parsed = tf.io.parse_example(records, {
                "image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64),
                "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
            })
            self._check_order(part, rows, parsed["image/filename"].numpy(), parsed["image/class/label"].numpy())
            images = tf.data.Dataset.from_tensor_slices(parsed["image/encoded"]).map(
                lambda encoded: preprocess_eval(encoded, self.image_size),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
            ).batch(len(rows))
            out[positions] = next(iter(images)).numpy()
        return out

    def _check_order(self, part: int, rows: np.ndarray, filenames: np.ndarray, labels: np.ndarray) -> None:
        # Record order is val_map order: a shard written otherwise would score every answer
        # against another image's label.
        for row, filename, label in zip(rows, filenames, labels):
            index = int(self._starts[part] + row)
            name = filename.decode()
            if (name and name != self._names[index]) or int(label) != int(self.labels[index]):
                raise InferenceError(
                    f"{self._shards[part]}: record {int(row)} is {name or '?'} (label {int(label)}), "
                    f"{self.data_dir / VAL_MAP} line {index + 1} lists {self._names[index]} "
                    f"(label {self.labels[index]})")

    def describe(self) -> str:
        if self.from_arrays:
            return (f"{self.total} ImageNet 2012 validation images, MLPerf inference ResNet-50 preprocessing "
                    f"(short side 256 by area resize, centre crop 224, minus mean RGB, float32 NHWC), "
                    f"read from {ARRAYS_DIR}/*.npy")
        return (f"{self.total} ImageNet 2012 validation images decoded from the validation TFRecord shards with "
                f"the MLPerf training reference's eval preprocessing at {self.image_size}x{self.image_size} "
                f"(bilinear resize of the short side to {round(self.image_size * 256 / 224)}, centre crop, "
                f"minus mean RGB, float32 NHWC)")


# --- the QSL -------------------------------------------------------------------------------


class SampleLibrary:
    """LoadGen's QSL: the loaded samples as one contiguous array and a vectorised index map."""

    def __init__(self, source: SampleSource) -> None:
        self.source = source
        self.loaded: np.ndarray | None = None
        self._row = np.full(source.total, -1, dtype=np.int64)  # QSL index -> row of `loaded`
        self._indices = np.empty(0, dtype=np.int64)
        # Calibration runs several short tests that ask for the same performance set: keeping
        # it across their unload/load saves re-reading (and, for TFRecords, re-decoding) it.
        self.retain = False
        self._kept: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def total(self) -> int:
        return self.source.total

    @property
    def labels(self) -> np.ndarray:
        return self.source.labels

    def performance_count(self, requested: int) -> int:
        return min(self.total, requested)

    def load(self, indices: list[int]) -> None:
        wanted = np.asarray(indices, dtype=np.int64)
        if self._kept is not None and np.array_equal(self._kept[0], wanted):
            data = self._kept[1]
        else:
            self._kept = None
            data = np.ascontiguousarray(self.source.read(wanted), dtype=getattr(self.source, "dtype", np.float32))
        self._row[self._indices] = -1
        self.loaded, self._indices = data, wanted
        self._row[wanted] = np.arange(len(wanted))

    def unload(self, indices: list[int]) -> None:
        if self.retain and self.loaded is not None:
            self._kept = (self._indices, self.loaded)
        self._row[self._indices] = -1
        self.loaded, self._indices = None, np.empty(0, dtype=np.int64)

    def release(self) -> None:
        """Drop a set kept for reuse (see ``retain``)."""
        self.retain, self._kept = False, None

    def batch(self, indices: np.ndarray | list[int]) -> np.ndarray:
        rows = self._row[indices]
        if rows.size and rows.min() < 0:
            raise InferenceError(
                "LoadGen issued a sample that is not loaded: the QSL's load callback was not called for it")
        return self.loaded[rows]
