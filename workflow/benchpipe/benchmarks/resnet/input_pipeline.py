"""tf.data input for ResNet-50 v1.5 training: the MLPerf reference's preprocessing, seeded.

Reads the TFRecord shards that ``benchpipe datasets imagenet`` writes, after checking each
against the manifest's sha256. The preprocessing is that of the reference
(mlcommons/training, image_classification/tensorflow2/imagenet_preprocessing.py):

train
    a crop sampled around the record's boxes (at least 10% of a box covered, 5%-100% of the
    image's area, aspect ratio 0.75-1.33, 100 attempts, the whole image when none fits or
    there is no box), decoded alone from the JPEG; a horizontal flip with probability 1/2;
    a bilinear resize to ``image_size`` squared, aspect ratio not kept.
eval
    the whole JPEG decoded; the short side resized (bilinear) to 256 for ``image_size`` 224,
    in proportion for other sizes; the central ``image_size`` square.

Both subtract the per-channel RGB mean (123.68, 116.78, 103.94) and divide by nothing, then
cast to ``dtype``. Resizes use the legacy pixel-centre convention (no half-pixel offset)
that the reference's ``tf.compat.v1.image.resize`` gives.

Where the reference draws from TensorFlow's stateful generators, every random choice here
is a stateless op keyed by (seed, position of the image in the stream): the same seed
gives the same batches on the same platform, however the map is parallelized.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from benchpipe.contracts.errors import DatasetError, TrainingError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.datasets.imagenet import name_list
from benchpipe.datasets.tfrecord import MANIFEST, MEAN_RGB

SPLITS = ("train", "val")
IMAGE_SIZE = 224
CHANNELS = 3

# The reference's crop sampling (_decode_crop_and_flip).
MIN_OBJECT_COVERED = 0.1
ASPECT_RATIO_RANGE = (0.75, 1.33)
AREA_RANGE = (0.05, 1.0)
MAX_ATTEMPTS = 100
# The reference's eval resize: short side 256 for a 224 crop.
EVAL_SHORT_SIDE_RATIO = 256 / 224
# The reference's record shuffle buffer and the number of shards read at once.
SHUFFLE_BUFFER = 10_000
CYCLE_LENGTH = 10
# Hashing is I/O and hashlib releases the GIL: threads overlap the reads of many shards.
HASH_THREADS = 8

_BOX_KEYS = ("ymin", "xmin", "ymax", "xmax")  # the order the crop sampler takes
_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    **{f"image/object/bbox/{key}": tf.io.VarLenFeature(tf.float32) for key in _BOX_KEYS},
}
# Independent streams of one seed: shard order, record order, per-image augmentation.
_FILE_STREAM, _RECORD_STREAM, _IMAGE_STREAM = range(3)


def read_manifest(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: run `benchpipe datasets imagenet` to write the TFRecord shards")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc}); run `benchpipe datasets imagenet` again") from exc
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path}: not a JSON object")
    if manifest.get("dataset") != "imagenet":
        raise DatasetError(f"{path}: key 'dataset' is {manifest.get('dataset')!r}, not 'imagenet'")
    return manifest


def _split_shards(manifest: dict[str, Any], split: str, where: Path) -> list[dict[str, Any]]:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; the splits are {', '.join(SPLITS)}")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise DatasetError(f"{where}: key 'shards' is missing or not a list")
    chosen = []
    for k, shard in enumerate(shards):
        if not isinstance(shard, dict) or not {"path", "split", "records", "sha256"} <= shard.keys():
            raise DatasetError(f"{where}: shards[{k}] lacks path, split, records or sha256")
        if shard["split"] == split:
            chosen.append(shard)
    if not chosen:
        raise DatasetError(f"{where}: no {split} shards listed")
    return chosen


def split_size(data_dir: Path, split: str) -> int:
    """Records in ``split`` ("train" or "val") by the manifest's shard counts."""
    manifest = read_manifest(data_dir)
    return sum(int(shard["records"]) for shard in _split_shards(manifest, split, Path(data_dir) / MANIFEST))


def _problem(data_dir: Path, shard: dict[str, Any]) -> str | None:
    path = data_dir / shard["path"]
    try:
        digest = sha256_file(path)
    except FileNotFoundError:
        return f"{shard['path']} (missing)"
    except OSError as exc:
        return f"{shard['path']} ({exc.strerror or exc})"
    if digest != shard["sha256"]:
        return f"{shard['path']} (sha256 {digest[:12]}..., listed {shard['sha256'][:12]}...)"
    return None


def _verified(data_dir: Path, split: str) -> list[dict[str, Any]]:
    shards = _split_shards(read_manifest(data_dir), split, data_dir / MANIFEST)
    with ThreadPoolExecutor(max_workers=min(HASH_THREADS, len(shards))) as pool:
        problems = [p for p in pool.map(lambda s: _problem(data_dir, s), shards) if p]
    if problems:
        raise DatasetError(
            f"{data_dir}: {len(problems)} {split} shards do not match {MANIFEST}: {name_list(problems)}; "
            "run `benchpipe datasets imagenet` again")
    return shards


def verified_shards(data_dir: Path, split: str) -> list[Path]:
    """Every shard of ``split``, in manifest order, once each matches its sha256."""
    return [Path(data_dir) / shard["path"] for shard in _verified(Path(data_dir), split)]


def _derived_seed(seed: int, stream: int) -> int:
    # Separate streams keep the shard order, record order and crops from sharing random bits.
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint32)[0])


def _parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """JPEG bytes, label (int32) and boxes as [1, boxes, (ymin, xmin, ymax, xmax)]."""
    features = tf.io.parse_single_example(record, _FEATURES)
    boxes = tf.stack([features[f"image/object/bbox/{key}"].values for key in _BOX_KEYS], axis=-1)
    return features["image/encoded"], tf.cast(features["image/class/label"], tf.int32), boxes[None]


def crop_window(jpeg_shape: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """(top, left, height, width) of the reference's distorted crop, from a [2] seed."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        jpeg_shape,
        bounding_boxes=boxes,
        seed=seed,
        min_object_covered=MIN_OBJECT_COVERED,
        aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=AREA_RANGE,
        max_attempts=MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def _resize(image: tf.Tensor, height: tf.Tensor | int, width: tf.Tensor | int) -> tf.Tensor:
    # ResizeBilinear without half-pixel centres is what tf.compat.v1.image.resize (the
    # reference's call) runs; tf.image.resize would shift the sampling grid by half a pixel.
    resized = tf.raw_ops.ResizeBilinear(images=image[None], size=tf.stack([height, width]),
                                        align_corners=False, half_pixel_centers=False)
    return resized[0]


def _normalize(image: tf.Tensor, image_size: int, dtype: tf.DType) -> tf.Tensor:
    image = tf.ensure_shape(image, [image_size, image_size, CHANNELS])
    return tf.cast(image - tf.constant(MEAN_RGB, tf.float32), dtype)


def preprocess_train(encoded: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor, image_size: int,
                     dtype: tf.DType = tf.float32) -> tf.Tensor:
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    window = crop_window(tf.image.extract_jpeg_shape(encoded), boxes, crop_seed)
    # Only the window's blocks are decoded: most of a large photo is never expanded.
    image = tf.image.decode_and_crop_jpeg(encoded, window, channels=CHANNELS)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return _normalize(_resize(image, image_size, image_size), image_size, dtype)


def eval_short_side(image_size: int) -> int:
    return round(image_size * EVAL_SHORT_SIDE_RATIO)


def preprocess_eval(encoded: tf.Tensor, image_size: int, dtype: tf.DType = tf.float32) -> tf.Tensor:
    image = tf.io.decode_jpeg(encoded, channels=CHANNELS)
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = eval_short_side(image_size) / tf.minimum(height, width)
    # Truncated, as the reference computes the new size.
    new_height, new_width = tf.cast(height * scale, tf.int32), tf.cast(width * scale, tf.int32)
    image = _resize(image, new_height, new_width)
    top, left = (new_height - image_size) // 2, (new_width - image_size) // 2
    image = tf.slice(image, tf.stack([top, left, 0]), [image_size, image_size, CHANNELS])
    return _normalize(image, image_size, dtype)


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def _records(paths: list[Path]) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices([str(p) for p in paths])


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise TrainingError(f"{name} must be a positive integer, not {value!r}")


def train_dataset(data_dir: Path, *, global_batch_size: int, image_size: int = IMAGE_SIZE, seed: int,
                  dtype: tf.DType = tf.float32, drop_remainder: bool = True, epochs: int | None = 1,
                  shuffle_buffer: int = SHUFFLE_BUFFER) -> tf.data.Dataset:
    """Batches of (images [N, size, size, 3] ``dtype``, labels [N] int32) for ``epochs`` epochs.

    ``epochs=None`` repeats without end. Epochs are joined before batching, as in the
    reference, so with ``drop_remainder`` only the last partial batch of the whole stream is
    dropped. Pass ``epochs`` rather than repeating the result: a repeat of the returned
    dataset reshuffles, but restarts the positions that key each image's crop and flip.
    Each build of the dataset with the same ``seed`` yields the same stream.
    """
    _check_positive(global_batch_size=global_batch_size, image_size=image_size, shuffle_buffer=shuffle_buffer)
    if epochs is not None:
        _check_positive(epochs=epochs)
    if not isinstance(seed, int) or seed < 0:
        raise TrainingError(f"seed must be a non-negative integer, not {seed!r}")
    data_dir = Path(data_dir)
    shards = _verified(data_dir, "train")
    paths = [data_dir / shard["path"] for shard in shards]
    images = sum(int(shard["records"]) for shard in shards)
    if drop_remainder and epochs is not None and images * epochs < global_batch_size:
        raise DatasetError(f"{data_dir}: {images} train images x {epochs} epochs make no batch of "
                           f"{global_batch_size}")
    image_key = tf.constant([_derived_seed(seed, _IMAGE_STREAM), 0], tf.int64)

    def example(index: tf.Tensor, record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        encoded, label, boxes = _parse(record)
        key = tf.random.experimental.stateless_fold_in(image_key, index)
        return preprocess_train(encoded, boxes, key, image_size, dtype), label

    dataset = _records(paths).shuffle(len(paths), seed=_derived_seed(seed, _FILE_STREAM),
                                      reshuffle_each_iteration=True)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(CYCLE_LENGTH, len(paths)),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.shuffle(shuffle_buffer, seed=_derived_seed(seed, _RECORD_STREAM),
                              reshuffle_each_iteration=True)
    if epochs != 1:
        dataset = dataset.repeat(epochs)
    dataset = dataset.enumerate().map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(global_batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())


def eval_dataset(data_dir: Path, *, batch_size: int, image_size: int = IMAGE_SIZE,
                 dtype: tf.DType = tf.float32) -> tf.data.Dataset:
    """Batches of (images, labels int32) over every val image once, in a fixed order.

    The last batch may be short: eval accuracy counts every image.
    """
    _check_positive(batch_size=batch_size, image_size=image_size)
    paths = verified_shards(data_dir, "val")

    def example(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        encoded, label, _ = _parse(record)
        return preprocess_eval(encoded, image_size, dtype), label

    dataset = _records(paths).interleave(tf.data.TFRecordDataset, cycle_length=min(CYCLE_LENGTH, len(paths)),
                                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(_options())
