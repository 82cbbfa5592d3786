"""The served model as LiteRT: ``benchpipe mobile convert`` writes ``model.tflite`` and ``conversion.json``.

Two precisions, from the same SavedModel (the one inference serves):

    fp32   TFLiteConverter.from_saved_model, no optimization: the float reference
    int8   full-integer post-training quantization: Optimize.DEFAULT, TFLITE_BUILTINS_INT8 only,
           int8 input and output, calibrated on a representative dataset

The representative dataset is drawn from the training split only: ``representative_samples``
rows picked with a seeded generator. Their sample ids are recorded, and each is checked against
the evaluation split's ids, so that no sample the accuracy run scores ever calibrated the
quantization: a picked id the evaluation split also holds is refused, naming it.

``conversion.json`` records what a reader needs to judge the model: the converter (TensorFlow's
version), its options, the input SavedModel's sha256 (the digest inference records for it), the
output's sha256 and size, and the representative samples. A model the user supplies
(``benchpipe mobile supply``, the app's MobileBERT and others) is laid out the same way, its
record's converter "supplied".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.errors import BenchpipeError, InferenceError
from benchpipe.contracts.hashing import sha256_file

PRECISIONS = ("fp32", "int8")
TFLITE = "model.tflite"
CONVERSION = "conversion.json"
DEFAULT_REPRESENTATIVE_SAMPLES = 100


@dataclass(frozen=True)
class Representative:
    split: str
    seed: int
    count: int
    ids: list[int]  # the samples' ids in the prepared dataset (its `id` column)
    eval_overlap: int  # ids also in the evaluation split: always 0 in a written record


@dataclass(frozen=True)
class Conversion:
    precision: str
    converter: str
    tensorflow_version: str
    options: dict[str, Any]
    source_model: str  # the SavedModel's path, as the served model's record names it
    source_sha256: str
    tflite_sha256: str
    tflite_bytes: int
    representative: Representative | None  # int8 only

    def write(self, out_dir: Path) -> None:
        (out_dir / CONVERSION).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")


def read_conversion(model_dir: Path) -> Conversion:
    path = Path(model_dir) / CONVERSION
    try:
        data = json.loads(path.read_text())
        rep = data.pop("representative")
        return Conversion(**data, representative=None if rep is None else Representative(**rep))
    except (OSError, ValueError, TypeError) as exc:
        raise InferenceError(f"{path}: cannot read the conversion record: {exc}") from exc


def _split_ids(data_dir: Path, split: str) -> tuple[np.ndarray, list[Path]]:
    """Every sample id of ``split``, in order, and the shards they come from."""
    import pyarrow.parquet as pq

    from benchpipe.datasets.prepare import read_manifest

    manifest = read_manifest(data_dir)
    shards = [data_dir / e["path"] for e in manifest["shards"] if e["split"] == split]
    if not shards:
        raise InferenceError(f"{data_dir}: the prepared dataset has no '{split}' split")
    ids = np.concatenate([pq.read_table(p, columns=["id"]).column("id").to_numpy() for p in shards])
    return ids.astype(np.int64), shards


def representative_rows(data_dir: Path, count: int, seed: int) -> tuple[np.ndarray, Representative]:
    """``count`` training samples (float32 rows) for the int8 calibration, and their record.

    Refused when any picked id is also an evaluation sample: quantization must never have seen
    what the accuracy run scores.
    """
    from benchpipe.infer.samples import ParquetSamples

    if count < 1:
        raise InferenceError(f"mobile.representative_samples must be at least 1, not {count}")
    train_ids, _ = _split_ids(data_dir, "train")
    eval_ids, _ = _split_ids(data_dir, "eval")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(train_ids), size=min(count, len(train_ids)), replace=False))
    ids = train_ids[picked]
    overlap = np.intersect1d(ids, eval_ids)
    if overlap.size:
        raise InferenceError(f"{data_dir}: representative sample id(s) {overlap[:5].tolist()} of the training split "
                             f"are also in the evaluation split: int8 calibration would see evaluated samples")
    rows = ParquetSamples(data_dir, "train").read(picked)
    return rows, Representative("train", seed, len(picked), [int(i) for i in ids], 0)


def _converter(model_dir: Path):
    import tensorflow as tf

    try:
        return tf.lite.TFLiteConverter.from_saved_model(str(model_dir))
    except (OSError, ValueError) as exc:
        raise InferenceError(f"{model_dir}: TFLiteConverter cannot read the SavedModel: {exc}") from exc


def convert(model_dir: Path, model_sha256: str, data_dir: Path, precision: str, out_dir: Path, *,
            representative_samples: int = DEFAULT_REPRESENTATIVE_SAMPLES, seed: int = 0) -> Conversion:
    """Convert the SavedModel in ``model_dir`` to ``out_dir/model.tflite`` at ``precision``."""
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise InferenceError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    converter = _converter(model_dir)
    options: dict[str, Any] = {"from": "saved_model", "signature": "serving_default"}
    representative = None
    if precision == "int8":
        rows, representative = representative_rows(data_dir, representative_samples, seed)

        def samples():
            for row in rows:
                yield [row[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        options.update({"optimizations": ["DEFAULT"], "supported_ops": ["TFLITE_BUILTINS_INT8"],
                        "inference_input_type": "int8", "inference_output_type": "int8"})
    try:
        content = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and friends, all with the MLIR diagnostics
        raise InferenceError(f"{model_dir}: conversion to {precision} LiteRT failed: {exc}") from exc
    with atomic_dir(out_dir) as tmp:
        (tmp / TFLITE).write_bytes(content)
        record = Conversion(precision, "tf.lite.TFLiteConverter", tf.__version__, options, str(model_dir),
                            model_sha256, sha256_file(tmp / TFLITE), len(content), representative)
        record.write(tmp)
        provenance.write(tmp, data_dir)
    return record


def supply(tflite: Path, sha256: str, precision: str, out_dir: Path) -> Conversion:
    """A ``.tflite`` the user supplies (MobileBERT and the app's other models: no download here),
    checked against the sha256 they state and laid out as a conversion is, so that runs, results
    and the tree treat it alike; its record says it was supplied, not converted."""
    if precision not in PRECISIONS:
        raise InferenceError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if not Path(tflite).is_file():
        raise InferenceError(f"{tflite}: no such .tflite model")
    actual = sha256_file(Path(tflite))
    if actual != sha256.lower():
        raise InferenceError(f"{tflite}: sha256 {actual}, the model's stated sha256 is {sha256}")
    with atomic_dir(out_dir) as tmp:
        content = Path(tflite).read_bytes()
        (tmp / TFLITE).write_bytes(content)
        record = Conversion(precision, "supplied", "", {"from": "supplied"}, str(tflite), actual,
                            sha256_file(tmp / TFLITE), len(content), None)
        if record.tflite_sha256 != actual:
            raise InferenceError(f"{tflite}: changed while it was copied (sha256 {record.tflite_sha256})")
        record.write(tmp)
        provenance.write(tmp)
    return record


def check_model(model_dir: Path) -> tuple[Path, Conversion]:
    """(the .tflite, its record), with the file's sha256 checked against the record."""
    record = read_conversion(model_dir)
    path = Path(model_dir) / TFLITE
    if not path.is_file():
        raise BenchpipeError(f"{path}: missing (the conversion record lists it)")
    actual = sha256_file(path)
    if actual != record.tflite_sha256:
        raise InferenceError(f"{path}: sha256 {actual}, its conversion recorded {record.tflite_sha256}")
    return path, record
