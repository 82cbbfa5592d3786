"""Deterministic preprocessing into Parquet shards, and reading them back verified.

Layout of a prepared dataset directory::

    raw/<source files>             exactly as fetched, sha256-verified
    shards/<split>-<k>.parquet     preprocessed samples in a fixed order
    manifest.json                  sources and shards with their sha256
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.benchmark import Benchmark, Split
from benchpipe.contracts.errors import DatasetError
from benchpipe.contracts.jsonfile import read_json
from benchpipe.contracts.hashing import sha256_file
from benchpipe.datasets.archive import extract_archive, is_archive, unpacked_name
from benchpipe.datasets.fetch import cached_source, default_cache_dir
from benchpipe.datasets.offline import require_cached

SHARD_ROWS = 512
MANIFEST = "manifest.json"
SPLITS = ("train", "eval")


def shard_schema(sample_size: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.int32(), nullable=False),
            pa.field("label", pa.int32(), nullable=False),
            pa.field("features", pa.list_(pa.float32(), sample_size), nullable=False),
        ]
    )


def _write_shards(split_name: str, split: Split, shards_dir: Path) -> list[dict[str, Any]]:
    sample_size = int(np.prod(split.features.shape[1:]))
    flat = split.features.reshape(len(split.features), sample_size).astype(np.float32)
    schema = shard_schema(sample_size)
    entries = []
    for k, start in enumerate(range(0, len(flat), SHARD_ROWS)):
        stop = min(start + SHARD_ROWS, len(flat))
        table = pa.table(
            {
                "id": pa.array(split.ids[start:stop], pa.int32()),
                "label": pa.array(split.labels[start:stop], pa.int32()),
                "features": pa.FixedSizeListArray.from_arrays(
                    pa.array(flat[start:stop].ravel(), pa.float32()), sample_size
                ),
            },
            schema=schema,
        )
        path = shards_dir / f"{split_name}-{k:05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        entries.append({"path": f"shards/{path.name}", "split": split_name, "rows": stop - start})
    return entries


def prepare(
    benchmark: Benchmark, out_dir: Path, cache_dir: Path | None = None, *, offline: bool = False
) -> dict[str, Any]:
    """Fetch and verify the sources, preprocess, write shards and manifest atomically.

    Sources are fetched into the content-addressed cache ``cache_dir`` (default: the
    user's, see default_cache_dir) and copied from there: Snakemake deletes a job's output
    before re-running it, and neither a re-run nor another checkout may have to download
    again what was already verified. ``offline``: use the cache only, and fail before
    writing anything if a source is not in it.

    A benchmark whose data is not train and eval Splits (an LLM's prompts) prepares its own
    folder (``Benchmark.prepare_dataset``) from the same sources, the config's overrides applied.
    """
    if benchmark.prepare_dataset is not None:
        return benchmark.prepare_dataset(benchmark.sources, out_dir, cache_dir, offline=offline)
    cache = cache_dir or default_cache_dir()
    if offline:
        require_cached({benchmark.name: benchmark.sources}, cache)
    with atomic_dir(out_dir) as tmp:
        raw_dir = tmp / "raw"
        raw_dir.mkdir()
        for source in benchmark.sources:
            shutil.copyfile(cached_source(source, cache, offline=offline), raw_dir / source.name)
            if is_archive(source.name):
                # Verified first (fetch_source), unpacked second: only checked bytes are trusted.
                extract_archive(raw_dir / source.name, raw_dir / unpacked_name(source.name))
        try:
            train, evaluation = benchmark.preprocess(raw_dir)
        except DatasetError as exc:
            # The temporary directory is gone once this fails: name the file as the user knows it.
            raise DatasetError(
                f"{benchmark.name}: " + str(exc).replace(f"{tmp}{os.sep}", "") + f" (dataset for {out_dir})"
            ) from exc
        shards_dir = tmp / "shards"
        shards_dir.mkdir()
        shards = []
        for name, split in zip(SPLITS, (train, evaluation)):
            shards += _write_shards(name, split, shards_dir)
        for entry in shards:
            entry["sha256"] = sha256_file(tmp / entry["path"])
        manifest = {
            "benchmark": benchmark.name,
            "sources": [
                {"name": s.name, "url": s.url, "path": f"raw/{s.name}", "sha256": s.sha256,
                 **({"unpacked": f"raw/{unpacked_name(s.name)}"} if is_archive(s.name) else {})}
                for s in benchmark.sources
            ],
            "sample_shape": list(train.features.shape[1:]),
            "shards": shards,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def split_rows(manifest: dict[str, Any]) -> dict[str, int]:
    """Rows per split (train, eval; 0 where a split has none), from a manifest alone: what a
    training run's init may know of the data without reading it."""
    rows = dict.fromkeys(SPLITS, 0)
    for shard in manifest["shards"]:
        rows[shard["split"]] = rows.get(shard["split"], 0) + int(shard["rows"])
    return rows


def read_manifest(data_dir: Path) -> dict[str, Any]:
    return read_json(data_dir / MANIFEST, DatasetError, missing="run `benchpipe datasets prepare` first")


def load_split(data_dir: Path, split: str) -> Split:
    """Read one split back, checking every shard against the manifest first."""
    manifest = read_manifest(data_dir)
    shape = tuple(manifest["sample_shape"])
    tables = []
    for entry in manifest["shards"]:
        if entry["split"] != split:
            continue
        path = data_dir / entry["path"]
        if not path.is_file():
            raise DatasetError(f"{path}: shard listed in {data_dir / MANIFEST} is missing")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise DatasetError(f"{path}: sha256 {actual} does not match the manifest's {entry['sha256']}")
        tables.append(pq.read_table(path))
    if not tables:
        raise DatasetError(f"{data_dir / MANIFEST}: no shards for split '{split}'")
    table = pa.concat_tables(tables)
    features = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return Split(
        features=features.astype(np.float32).reshape((table.num_rows, *shape)),
        labels=table.column("label").to_numpy().astype(np.int32),
        ids=table.column("id").to_numpy().astype(np.int32),
    )
