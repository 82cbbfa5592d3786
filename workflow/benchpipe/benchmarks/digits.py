"""digits: 8x8 handwritten digits (UCI, bundled with scikit-learn), a small CNN to 0.97 top-1.

The built-in suite: real data that ships inside an installed package, so it runs offline.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from benchpipe.contracts.benchmark import Benchmark, Hyperparameters, InferenceTask, Source, Split
from benchpipe.contracts.errors import DatasetError

RAW_FILE = "digits.csv.gz"
PIXELS = 64
# Every fifth sample is held out: a split fixed by position, not by an RNG whose stream
# could change between library versions.
EVAL_EVERY = 5


def preprocess(raw_dir: Path) -> tuple[Split, Split]:
    path = raw_dir / RAW_FILE
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read gzip'd CSV: {exc}") from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        values = line.split(",")
        if len(values) != PIXELS + 1:
            raise DatasetError(f"{path}: line {lineno}: expected {PIXELS + 1} values, found {len(values)}")
        rows.append([int(v) for v in values])
    data = np.asarray(rows, dtype=np.int64)
    if data[:, :PIXELS].min() < 0 or data[:, :PIXELS].max() > 16 or not np.isin(data[:, -1], range(10)).all():
        raise DatasetError(f"{path}: pixel values must be 0..16 and labels 0..9")
    features = (data[:, :PIXELS].astype(np.float32) / 16.0).reshape(-1, 8, 8, 1)
    labels = data[:, -1].astype(np.int32)
    ids = np.arange(len(data), dtype=np.int32)
    held_out = ids % EVAL_EVERY == 0
    return (
        Split(features[~held_out], labels[~held_out], ids[~held_out]),
        Split(features[held_out], labels[held_out], ids[held_out]),
    )


def build_model():
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1), name="pixels"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            # float32 under mixed precision too, as Keras advises: float16 logits round and overflow.
            keras.layers.Dense(10, name="logits", dtype="float32"),
        ],
        name="digits_cnn",
    )


BENCHMARK = Benchmark(
    name="digits",
    sources=(
        Source(
            name=RAW_FILE,
            url="package://sklearn.datasets/data/digits.csv.gz",
            sha256="09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
            size=57_523,
        ),
    ),
    preprocess=preprocess,
    build_model=build_model,
    hyperparameters=Hyperparameters(
        global_batch_size=32,
        base_learning_rate=0.05,
        end_learning_rate=0.0001,
        decay_poly_power=2.0,
        weight_decay=0.0001,
        momentum=0.9,
        warmup_epochs=0,
        max_epochs=30,
    ),
    quality_target=0.97,
    num_runs=5,
    inference=InferenceTask(
        accuracy_target=0.99 * 0.97,  # MLPerf inference's 99 % of the reference quality
        offline_batch_size=128,
        performance_sample_count=360,
        loadgen_model="digits",
        server_latency_ms=10.0,  # LoadGen's default bound (mlperf.conf *.Server.target_latency)
    ),
    rules_file=Path(__file__).with_name("digits.rules.yaml"),
    mobile_dataset="IMAGENET",  # top-1 classification, as the app scores its image tasks
)
