"""The ``published`` table: MLCommons' published results, in the columns and units of benchpipe's
own ``inference`` and ``scores`` tables, so that one query joins a tree's results with them.

    <table>/round=<round>/<family>-<sha256 of the source, 16 hex>.parquet   one file per source
    <table>/imports/<family>-<round>-<sha256, 16 hex>.json                   its import's report

Importing a source again replaces its file; other sources' files stay. DuckDB and pyarrow read the
folder as one hive-partitioned dataset (``read_parquet('<table>/*/*.parquet', hive_partitioning=true)``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchpipe.contracts.atomic import atomic_file
from benchpipe.contracts.errors import ParseError
from benchpipe.published.summary import Imported

PUBLISHED_SCHEMA = pa.schema([
    ("family", pa.string()),  # inference | training
    ("round", pa.string()),  # the partition: v6.1 (inference), v5.1 (training)
    ("submitter", pa.string()), ("system", pa.string()), ("division", pa.string()),
    ("category", pa.string()),  # datacenter | edge (inference); null for training
    ("availability", pa.string()),
    ("benchmark", pa.string()),  # the MLPerf name: MlperfModel (resnet, llama3.1-8b), or the summarizer's key
    ("model", pa.string()),  # the Model column as published (resnet50, llama3_1-8b)
    ("scenario", pa.string()),  # LoadGen's spelling; null for training
    ("units", pa.string()),  # as published (Samples/s, Latency (ms), ...); training: minutes
    ("result", pa.float64()),  # as published, in units
    ("higher_is_better", pa.bool_()),
    # The same figure in the column benchpipe's inference and scores tables state it in.
    ("result_samples_per_s", pa.float64()), ("result_tokens_per_s", pa.float64()),
    ("result_latency_ns", pa.int64()), ("score_min", pa.float64()),
    ("accelerator_model_name", pa.string()), ("accelerators_per_node", pa.int32()),
    ("total_accelerators", pa.int32()), ("number_of_nodes", pa.int32()),
    # A throughput divided by the counts published beside it; null for latencies and times to train.
    ("result_per_accelerator", pa.float64()), ("result_per_node", pa.float64()),
    ("host_processor_model_name", pa.string()), ("framework", pa.string()),
    ("accuracy", pa.string()), ("inferred", pa.bool_()), ("compliance", pa.string()), ("errors", pa.int32()),
    ("weight_data_types", pa.string()),
    ("source_file", pa.string()), ("source_sha256", pa.string()),
    ("source_line", pa.int32()),  # the CSV's line; a summary.json's system index
])
IMPORTS_DIR = "imports"


def file_name(imported: Imported) -> str:
    return f"{imported.family}-{imported.sha256[:16]}"


def write_import(table_dir: Path, imported: Imported) -> Path:
    """The source's rows as its file of the table, and its report; each replaced whole, never half-written."""
    if not imported.rows:
        raise ParseError(f"{imported.source}: no result rows to import")
    rows = pa.Table.from_pylist(imported.rows, schema=PUBLISHED_SCHEMA).drop_columns(["round"])
    part = Path(table_dir) / f"round={imported.round}" / f"{file_name(imported)}.parquet"
    report = Path(table_dir) / IMPORTS_DIR / f"{imported.family}-{imported.round}-{imported.sha256[:16]}.json"
    with atomic_file(part, "wb") as f:
        pq.write_table(rows, f, compression="zstd")
    with atomic_file(report) as f:
        f.write(json.dumps(imported.report(), indent=2) + "\n")
    return part


def read_published(table_dir: Path) -> pa.Table:
    """Every imported row, the round column included."""
    import pyarrow.dataset as ds

    folder = Path(table_dir)
    parts = sorted(folder.glob("round=*/*.parquet"))
    if not parts:
        raise ParseError(f"{folder}: no published results imported there (benchpipe published import)")
    partitioning = ds.partitioning(pa.schema([("round", pa.string())]), flavor="hive")
    dataset = ds.dataset([str(p) for p in parts], format="parquet", partitioning=partitioning,
                         partition_base_dir=str(folder), schema=PUBLISHED_SCHEMA)
    return dataset.to_table()
