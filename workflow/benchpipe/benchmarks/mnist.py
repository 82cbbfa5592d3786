"""mnist: 28x28 handwritten digits (Keras's mnist.npz), a small CNN to 0.98 top-1.

The suite's real download: one public file over HTTPS, verified against its published
sha256 before anything reads it.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from benchpipe.benchmarks import digits
from benchpipe.contracts.benchmark import Benchmark, InferenceTask, Source, Split
from benchpipe.contracts.errors import DatasetError

RAW_FILE = "mnist.npz"
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
# The published file holds 60000 training and 10000 test images. Only the structure is
# checked, not those counts: the same code must read smaller files made for tests.
SPLIT_KEYS = (("x_train", "y_train"), ("x_test", "y_test"))

# The sha256 Keras pins for this file (keras/src/datasets/mnist.py, load_data).
SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# Content-Length of the Keras origin, as its download progress reports it.
SIZE = 11_490_434
ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# Standalone Keras 2.x's origin for the same file. Both it and earlier tf.keras (which
# already used ORIGIN) pinned md5 8a61469f7ea1b51cbae51d4f78837e45 and report the same
# size, so it serves these bytes; the sha256 check refuses it should that ever change.
MIRROR = "https://s3.amazonaws.com/img-datasets/mnist.npz"


def _array(archive: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    if key not in archive.files:
        found = ", ".join(sorted(archive.files)) or "none"
        raise DatasetError(f"{path}: key '{key}' is missing (found: {found})")
    try:
        return archive[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # allow_pickle=False makes an object array fail here instead of running its code.
        raise DatasetError(f"{path}: key '{key}': cannot read the array: {exc}") from exc


def _checked_images(images: np.ndarray, path: Path, key: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: key '{key}': dtype must be uint8, found {images.dtype}")
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or images.shape[0] == 0:
        raise DatasetError(
            f"{path}: key '{key}': shape must be (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}) with N > 0, "
            f"found {images.shape}"
        )
    return images


def _checked_labels(labels: np.ndarray, count: int, path: Path, key: str) -> np.ndarray:
    if labels.dtype != np.uint8:
        raise DatasetError(f"{path}: key '{key}': dtype must be uint8, found {labels.dtype}")
    if labels.shape != (count,):
        raise DatasetError(
            f"{path}: key '{key}': shape must be ({count},) to match the images, found {labels.shape}"
        )
    if labels.max() >= NUM_CLASSES:
        raise DatasetError(f"{path}: key '{key}': labels must be 0..{NUM_CLASSES - 1}, found {int(labels.max())}")
    return labels


def _split(archive: np.lib.npyio.NpzFile, path: Path, x_key: str, y_key: str, first_id: int) -> Split:
    images = _checked_images(_array(archive, path, x_key), path, x_key)
    labels = _checked_labels(_array(archive, path, y_key), len(images), path, y_key)
    features = (images.astype(np.float32) / 255.0).reshape(-1, *IMAGE_SHAPE, 1)
    ids = np.arange(first_id, first_id + len(images), dtype=np.int32)
    return Split(features, labels.astype(np.int32), ids)


def preprocess(raw_dir: Path) -> tuple[Split, Split]:
    path = raw_dir / RAW_FILE
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read as .npz: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        # np.load also reads a bare .npy: an array, not the four named ones.
        raise DatasetError(f"{path}: not an .npz archive of named arrays")
    with archive:
        (train_x, train_y), (test_x, test_y) = SPLIT_KEYS
        train = _split(archive, path, train_x, train_y, first_id=0)
        # Test images are numbered after the training ones, so that an id names one image
        # of the file, as digits' ids do.
        evaluation = _split(archive, path, test_x, test_y, first_id=len(train.ids))
    return train, evaluation


def build_model():
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=(*IMAGE_SHAPE, 1), name="pixels"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            # float32 under mixed precision too, as Keras advises: float16 logits round and overflow.
            keras.layers.Dense(NUM_CLASSES, name="logits", dtype="float32"),
        ],
        name="mnist_cnn",
    )


QUALITY_TARGET = 0.98

BENCHMARK = Benchmark(
    name="mnist",
    sources=(Source(name=RAW_FILE, url=ORIGIN, sha256=SHA256, mirrors=(MIRROR,), size=SIZE),),
    preprocess=preprocess,
    build_model=build_model,
    # digits' optimizer settings; a larger batch for 40x the samples keeps an epoch at ~470
    # steps, and the target is usually met in the first two or three epochs, so the limit
    # leaves room for an unlucky seed.
    hyperparameters=dataclasses.replace(digits.BENCHMARK.hyperparameters, global_batch_size=128, max_epochs=10),
    quality_target=QUALITY_TARGET,
    num_runs=5,
    inference=InferenceTask(
        accuracy_target=0.99 * QUALITY_TARGET,  # MLPerf inference's 99 % of the reference quality
        offline_batch_size=128,
        # The whole test set (31 MiB as float32) fits in memory: LoadGen loads all of it.
        performance_sample_count=10000,
        loadgen_model="mnist",
        server_latency_ms=10.0,  # LoadGen's default bound (mlperf.conf *.Server.target_latency)
    ),
    rules_file=Path(__file__).with_name("mnist.rules.yaml"),
    mobile_dataset="IMAGENET",  # top-1 classification, as the app scores its image tasks
)
