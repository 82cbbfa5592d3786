"""ResNet input pipeline: shapes, reference preprocessing, determinism, shard checks."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from imagenet_tree import SYNSETS, layout, make_tree

from benchpipe.benchmarks.resnet.input_pipeline import (
    AREA_RANGE,
    ASPECT_RATIO_RANGE,
    MIN_OBJECT_COVERED,
    crop_window,
    eval_dataset,
    preprocess_train,
    split_size,
    train_dataset,
)
from benchpipe.contracts.errors import DatasetError
from benchpipe.datasets.imagenet import Subset
from benchpipe.datasets.tfrecord import MEAN_RGB, convert

# 23 a synset puts 69 train images in two shards (64 a shard): the shard interleave counts.
TRAIN_PER_CLASS = 23
TRAIN_IMAGES = TRAIN_PER_CLASS * len(SYNSETS)
VAL_IMAGES = 6
BOX_SPEC = {f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32) for k in ("ymin", "xmin", "ymax", "xmax")}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict[str, Path]:
    return make_tree(tmp_path_factory.mktemp("imagenet-src"), train_per_class=TRAIN_PER_CLASS + 1)


@pytest.fixture(scope="module")
def data(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "imagenet"
    convert(layout(source, subset=Subset(train_per_class=TRAIN_PER_CLASS, val_images=VAL_IMAGES)), out, workers=1)
    return out


@pytest.fixture
def copy(data, tmp_path) -> Path:
    """A copy to break."""
    shutil.copytree(data, tmp_path / "imagenet")
    return tmp_path / "imagenet"


def batches(dataset: tf.data.Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def test_data_has_two_train_shards_and_split_sizes_come_from_the_manifest(data):
    shards = json.loads((data / "manifest.json").read_text())["shards"]
    assert [s["path"] for s in shards if s["split"] == "train"] == [
        "tfrecords/train-00000-of-00002", "tfrecords/train-00001-of-00002"]
    assert (split_size(data, "train"), split_size(data, "val")) == (TRAIN_IMAGES, VAL_IMAGES)


@pytest.mark.parametrize("image_size", [32, 64])
def test_shapes_dtypes_and_labels(data, image_size):
    train = batches(train_dataset(data, global_batch_size=8, image_size=image_size, seed=1))
    assert len(train) == TRAIN_IMAGES // 8  # the short last batch is dropped
    for images, labels in train:
        assert images.shape == (8, image_size, image_size, 3) and images.dtype == np.float32
        assert labels.dtype == np.int32 and set(labels) <= set(range(len(SYNSETS)))
        # Pixels in 0..255 less the mean: the reference divides by no std.
        assert np.all(np.isfinite(images))
        assert images.min() >= -max(MEAN_RGB) - 1e-3 and images.max() <= 255 - min(MEAN_RGB) + 1e-3
    evaluated = batches(eval_dataset(data, batch_size=4, image_size=image_size))
    assert [images.shape for images, _ in evaluated] == [(4, image_size, image_size, 3), (2, image_size, image_size, 3)]
    assert all(labels.dtype == np.int32 for _, labels in evaluated)


def test_dtype_is_applied_after_mean_subtraction(data):
    images, labels = next(iter(train_dataset(data, global_batch_size=4, image_size=32, seed=1, dtype=tf.bfloat16)))
    reference, _ = next(iter(train_dataset(data, global_batch_size=4, image_size=32, seed=1)))
    assert images.dtype == tf.bfloat16 and labels.dtype == tf.int32
    np.testing.assert_allclose(tf.cast(images, tf.float32).numpy(), reference.numpy(), atol=1.0)
    evaluated, _ = next(iter(eval_dataset(data, batch_size=2, image_size=32, dtype=tf.float16)))
    assert evaluated.dtype == tf.float16


def _resize_bilinear_legacy(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear without half-pixel centres (tf.compat.v1's), in float32 as TensorFlow computes it."""

    def axis(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.arange(size_out, dtype=np.float32) * (np.float32(size_in) / np.float32(size_out))
        low = np.floor(source).astype(int)
        return low, np.minimum(np.ceil(source).astype(int), size_in - 1), (source - low).astype(np.float32)

    (y0, y1, fy), (x0, x1, fx) = axis(pixels.shape[0], height), axis(pixels.shape[1], width)
    image = pixels.astype(np.float32)
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * fx[None, :, None]
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * fx[None, :, None]
    return top + (bottom - top) * fy[:, None, None]


def _expected_eval(path: Path, image_size: int) -> np.ndarray:
    """Short side to size * 256/224 (rounded; new sides truncated), central crop, minus mean."""
    pixels = tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy()
    height, width = pixels.shape[:2]
    scale = np.float32(round(image_size * 256 / 224)) / np.float32(min(height, width))
    new_height, new_width = int(np.float32(height) * scale), int(np.float32(width) * scale)
    resized = _resize_bilinear_legacy(pixels, new_height, new_width)
    top, left = (new_height - image_size) // 2, (new_width - image_size) // 2
    return resized[top:top + image_size, left:left + image_size] - np.asarray(MEAN_RGB, np.float32)


@pytest.mark.parametrize("image_size", [32, 224])
def test_eval_yields_each_val_image_once_as_an_independent_computation(data, source, image_size):
    evaluated = batches(eval_dataset(data, batch_size=4, image_size=image_size))
    images = np.concatenate([i for i, _ in evaluated])
    labels = np.concatenate([lab for _, lab in evaluated])
    # One val shard, written in name order: the k-th output is the k-th val image.
    names = sorted(p.name for p in source["val_dir"].iterdir())[:VAL_IMAGES]
    assert len(images) == VAL_IMAGES
    for image, name in zip(images, names, strict=True):
        np.testing.assert_allclose(image, _expected_eval(source["val_dir"] / name, image_size), atol=0.02)
    listed = [int(line.split()[1]) for line in (data / "val_map.txt").read_text().splitlines()]
    assert Counter(labels.tolist()) == Counter(listed) and len(listed) == split_size(data, "val")


def test_the_same_seed_gives_the_same_batches_and_another_seed_others(data):
    def stream(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return batches(train_dataset(data, global_batch_size=6, image_size=32, seed=seed, epochs=2,
                                     drop_remainder=False))

    first = stream(11)
    again = stream(11)
    assert len(first) == len(again) == 2 * TRAIN_IMAGES // 6
    for (images, labels), (images_again, labels_again) in zip(first, again, strict=True):
        np.testing.assert_array_equal(images, images_again)
        np.testing.assert_array_equal(labels, labels_again)
    other = stream(12)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    labels = np.concatenate([lab for _, lab in first])
    epoch_one, epoch_two = labels[:TRAIN_IMAGES], labels[TRAIN_IMAGES:]
    # Each epoch has every train image once, in a new order.
    assert Counter(epoch_one.tolist()) == Counter(epoch_two.tolist()) == Counter(
        {label: TRAIN_PER_CLASS for label in range(len(SYNSETS))})
    assert not np.array_equal(epoch_one, epoch_two)


def test_images_are_augmented_differently_across_epochs(data):
    # epochs=None: the stream goes on; no image comes out the same way twice in 3 epochs.
    dataset = train_dataset(data, global_batch_size=TRAIN_IMAGES, image_size=32, seed=3, epochs=None)
    seen = [images for images, _ in batches(dataset.take(3))]
    flat = np.concatenate(seen).reshape(3 * TRAIN_IMAGES, -1)
    assert len(np.unique(flat, axis=0)) == 3 * TRAIN_IMAGES


def test_a_corrupt_shard_fails_before_any_batch(copy):
    shard = copy / "tfrecords" / "train-00001-of-00002"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"1 train shards do not match manifest.json: "
                                           r"tfrecords/train-00001-of-00002 \(sha256 .*datasets imagenet"):
        train_dataset(copy, global_batch_size=4, image_size=32, seed=0)
    assert len(batches(eval_dataset(copy, batch_size=4, image_size=32))) == 2  # val is intact


def test_a_missing_shard_or_manifest_fails_before_any_batch(copy):
    (copy / "tfrecords" / "validation-00000-of-00001").unlink()
    with pytest.raises(DatasetError, match=r"tfrecords/validation-00000-of-00001 \(missing\)"):
        eval_dataset(copy, batch_size=4, image_size=32)
    (copy / "manifest.json").unlink()
    with pytest.raises(DatasetError, match=r"manifest.json does not exist: run `benchpipe datasets imagenet`"):
        train_dataset(copy, global_batch_size=4, image_size=32, seed=0)
    with pytest.raises(DatasetError, match=r"manifest.json does not exist"):
        split_size(copy, "train")


def test_too_few_images_for_one_batch_is_named(data):
    with pytest.raises(DatasetError, match=rf"{TRAIN_IMAGES} train images x 1 epochs make no batch of 100"):
        train_dataset(data, global_batch_size=100, image_size=32, seed=0)


def _boxed_records(data: Path) -> list[tuple[tf.Tensor, tf.Tensor]]:
    """(JPEG bytes, boxes [1, n, 4] as ymin, xmin, ymax, xmax) of train records with a box."""
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string), **BOX_SPEC}
    found = []
    for record in tf.data.TFRecordDataset(sorted(str(p) for p in (data / "tfrecords").glob("train-*"))):
        parsed = tf.io.parse_single_example(record, spec)
        boxes = tf.stack([parsed[k].values for k in BOX_SPEC], axis=-1)
        if boxes.shape[0]:
            found.append((parsed["image/encoded"], boxes[None]))
    return found


def test_crops_follow_the_box_sampling_rules(data):
    boxed = _boxed_records(data)
    # n01440764_1 (one box), n01443537_2 (two, one clipped to the image), n01443537_5 (one)
    assert sorted(boxes.shape[1] for _, boxes in boxed) == [1, 1, 2]
    for encoded, boxes in boxed:
        height, width, _ = tf.image.extract_jpeg_shape(encoded).numpy()
        box_area = [(y1 - y0) * (x1 - x0) * height * width for y0, x0, y1, x1 in boxes[0].numpy()]
        shapes = set()
        for key in range(100):
            top, left, h, w = crop_window(tf.image.extract_jpeg_shape(encoded), boxes,
                                          tf.constant([key, 5], tf.int64)).numpy()
            shapes.add((top, left, h, w))
            assert 0 <= top and 0 <= left and top + h <= height and left + w <= width
            if (h, w) == (height, width):
                continue  # no window fitted in 100 attempts: the whole image, as the reference
            assert AREA_RANGE[0] * height * width * 0.9 <= h * w
            assert ASPECT_RATIO_RANGE[0] * 0.85 <= w / h <= ASPECT_RATIO_RANGE[1] / 0.85  # sides are whole pixels
            covered = []
            for (y0, x0, y1, x1), area in zip(boxes[0].numpy(), box_area, strict=True):
                dy = min(top + h, y1 * height) - max(top, y0 * height)
                dx = min(left + w, x1 * width) - max(left, x0 * width)
                covered.append(max(dy, 0) * max(dx, 0) / area)
            assert max(covered) >= MIN_OBJECT_COVERED * 0.9
        assert len(shapes) > 50  # the key varies the window
        image = preprocess_train(encoded, boxes, tf.constant([1, 2], tf.int64), 32).numpy()
        assert image.shape == (32, 32, 3) and np.all(np.isfinite(image))


def test_a_train_image_is_its_window_maybe_flipped_then_resized(data):
    for encoded, boxes in _boxed_records(data):
        flips = set()
        for seed in range(6):
            key = tf.constant([seed, 4], tf.int64)
            crop_key, _ = tf.unstack(tf.random.experimental.stateless_split(key, num=2))
            top, left, h, w = crop_window(tf.image.extract_jpeg_shape(encoded), boxes, crop_key).numpy()
            window = tf.io.decode_jpeg(encoded, channels=3).numpy()[top:top + h, left:left + w]
            image = preprocess_train(encoded, boxes, key, 32).numpy()
            # The flip comes before the resize, which (without half-pixel centres) does not
            # commute with it: both orders are computed whole.
            errors = [np.abs(image - (_resize_bilinear_legacy(pixels, 32, 32) - np.asarray(MEAN_RGB, np.float32)))
                      for pixels in (window, window[:, ::-1])]
            flipped = int(np.argmin([e.mean() for e in errors]))
            flips.add(flipped)
            # Decoding the window alone upsamples chroma at its edges from fewer neighbours
            # than a whole-image decode does: a few levels apart there, equal elsewhere.
            assert errors[flipped].max() <= 8 and errors[flipped].mean() < 0.1
        assert flips == {0, 1}
