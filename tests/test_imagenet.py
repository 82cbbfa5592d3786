"""ImageNet: layout check, TFRecord shards and val arrays, on a tiny tree of the real layout."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from imagenet_tree import SYNSETS, jpeg, layout, make_tree

from benchpipe.contracts.errors import DatasetError
from benchpipe.datasets.tfrecord import CROP, MEAN_RGB, convert, shard_count


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    return make_tree(tmp_path_factory.mktemp("imagenet-src"))


@pytest.fixture
def tree(pristine, tmp_path) -> dict[str, Path]:
    """A copy to break."""
    shutil.copytree(pristine["train_dir"].parent, tmp_path / "src")
    return {key: tmp_path / "src" / path.relative_to(pristine["train_dir"].parent) for key, path in pristine.items()}


@pytest.fixture(scope="module")
def converted(pristine, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "imagenet"
    convert(layout(pristine), out, workers=1)
    return out


def test_layout_check_lists_the_subset(pristine):
    files = layout(pristine)
    assert files.synsets == tuple(SYNSETS)
    assert [i.name for i in files.train[:5]] == [f"n01440764/n01440764_{n}.JPEG" for n in range(1, 5)] + [
        "n01443537/n01443537_1.JPEG"]
    assert len(files.train) == 12 and [i.label for i in files.train] == [0] * 4 + [1] * 4 + [2] * 4
    assert [i.name for i in files.val] == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 7)]
    assert [i.label for i in files.val] == [1, 2, 0, 1, 2, 0]
    assert [i.synset for i in files.val[:2]] == ["n01443537", "n01484850"]
    assert files.boxed_images == 2


def test_without_a_subset_a_small_tree_is_not_imagenet(pristine):
    with pytest.raises(DatasetError, match=r"15 train images, ILSVRC2012 has 1,281,167.*7 val images.*subset"):
        layout(pristine, subset=None)


def test_synset_count_is_checked(pristine):
    with pytest.raises(DatasetError, match=r"3 synset directories, ImageNet has 1000"):
        layout(pristine, num_synsets=1000)


def test_missing_val_file_is_named(tree):
    (tree["val_dir"] / "ILSVRC2012_val_00000003.JPEG").unlink()
    with pytest.raises(DatasetError, match=r"listed in .*val_map.txt but missing \(1\): .*ILSVRC2012_val_00000003\.JPEG"):
        layout(tree)


def test_val_file_not_in_val_map_is_named(tree):
    (tree["val_dir"] / "ILSVRC2012_val_00000099.JPEG").write_bytes(jpeg(5, 20, 20))
    with pytest.raises(DatasetError, match=r"not listed in .*val_map.txt \(1\): .*ILSVRC2012_val_00000099\.JPEG"):
        layout(tree)


def test_empty_train_file_is_named(tree):
    (tree["train_dir"] / "n01484850" / "n01484850_2.JPEG").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"empty or unreadable \(1\): .*n01484850_2\.JPEG"):
        layout(tree)


def test_short_class_for_the_subset_is_named(tree):
    for n in (3, 4, 5):
        (tree["train_dir"] / "n01443537" / f"n01443537_{n}.JPEG").unlink()
    with pytest.raises(DatasetError, match=r"fewer than train_per_class=4 images \(1\): .*n01443537 \(2\)"):
        layout(tree)


def test_val_map_label_out_of_range_names_the_line(tree):
    tree["val_map"].write_text(tree["val_map"].read_text().replace("ILSVRC2012_val_00000002.JPEG 2",
                                                                 "ILSVRC2012_val_00000002.JPEG 3"))
    with pytest.raises(DatasetError, match=r"val_map.txt:2: label 3 of ILSVRC2012_val_00000002\.JPEG is outside 0\.\.2"):
        layout(tree)


def test_box_of_another_synset_names_the_line(tree):
    tree["bounding_boxes"].write_text("ImageId,PredictionString\nn01440764_1,n01443537 1 1 5 5\n")
    with pytest.raises(DatasetError, match=r"boxes.csv:2: box synset n01443537 differs"):
        layout(tree)


def test_corrupt_jpeg_is_named_and_nothing_is_written(tree, tmp_path):
    bad = tree["train_dir"] / "n01443537" / "n01443537_3.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])
    out = tmp_path / "out" / "imagenet"
    with pytest.raises(DatasetError, match=r"1 images cannot be read or decoded: .*n01443537_3\.JPEG \(not a decodable"):
        convert(layout(tree), out, workers=1)
    assert not out.exists() and list(out.parent.iterdir()) == []


def _parse(record: bytes) -> dict:
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/class/synset": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        **{f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32) for k in ("xmin", "ymin", "xmax", "ymax")},
    }
    parsed = tf.io.parse_single_example(record, spec)
    return {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v).numpy() for k, v in parsed.items()}


def test_shards_read_back_with_labels_bytes_and_boxes(converted, pristine):
    manifest = json.loads((converted / "manifest.json").read_text())
    assert manifest["subset"] == {"train_per_class": 4, "val_images": 6}
    assert [s["path"] for s in manifest["shards"]] == ["tfrecords/train-00000-of-00001",
                                                       "tfrecords/validation-00000-of-00001"]
    for entry in manifest["shards"] + manifest["arrays"] + manifest["files"] + [manifest["inputs"]]:
        assert hashlib.sha256((converted / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    records = {}
    for split in ("train", "validation"):
        for record in tf.data.TFRecordDataset(str(converted / "tfrecords" / f"{split}-00000-of-00001")):
            example = _parse(record)
            records[example["image/filename"].decode()] = example
    assert len(records) == 18
    for image in layout(pristine).train + layout(pristine).val:
        example = records[Path(image.name).name]
        assert example["image/encoded"] == image.path.read_bytes()
        assert example["image/class/label"] == image.label
        assert example["image/class/synset"].decode() == image.synset
    first = records["n01440764_1.JPEG"]
    height, width = first["image/height"], first["image/width"]
    assert (height, width) == (44, 57)
    np.testing.assert_allclose(
        [first[f"image/object/bbox/{k}"] for k in ("xmin", "ymin", "xmax", "ymax")],
        [[4 / width], [2 / height], [30 / width], [20 / height]], rtol=1e-6)
    clipped = records["n01443537_2.JPEG"]
    assert list(clipped["image/object/bbox/xmax"]) == [1.0, pytest.approx(20 / clipped["image/width"])]
    assert len(records["n01484850_1.JPEG"]["image/object/bbox/xmin"]) == 0
    assert "n01443537_5.JPEG" not in records and "ILSVRC2012_val_00000007.JPEG" not in records


def test_inputs_table_records_every_source_file(converted, pristine):
    table = pq.read_table(converted / "inputs.parquet").to_pylist()
    assert len(table) == 18
    row = next(r for r in table if r["path"] == "val/ILSVRC2012_val_00000002.JPEG")
    data = (pristine["val_dir"] / "ILSVRC2012_val_00000002.JPEG").read_bytes()
    assert row == {"path": "val/ILSVRC2012_val_00000002.JPEG", "split": "val", "label": 2,
                   "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert (converted / "val_map.txt").read_text().splitlines()[0] == "ILSVRC2012_val_00000001.JPEG 1"


def _reference_array(path: Path) -> np.ndarray:
    """Short side to 256 by 2x2 averages (these images halve exactly), centre 224, minus mean."""
    pixels = tf.io.decode_jpeg(path.read_bytes(), channels=3, dct_method="INTEGER_ACCURATE").numpy()
    h, w, _ = pixels.shape
    halved = pixels.astype(np.float64).reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    halved = np.rint(halved)
    top, left = (h // 2 - CROP) // 2, (w // 2 - CROP) // 2
    return (halved[top:top + CROP, left:left + CROP] - np.array(MEAN_RGB)).astype(np.float32)


def test_val_arrays_match_an_independent_computation(converted, pristine):
    arrays = sorted((converted / "preprocessed" / "val").iterdir())
    assert [p.name for p in arrays] == [f"ILSVRC2012_val_{n:08d}.JPEG.npy" for n in range(1, 7)]
    for path in arrays:
        array = np.load(path)
        assert array.shape == (CROP, CROP, 3) and array.dtype == np.float32
    for name in ("ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"):
        expected = _reference_array(pristine["val_dir"] / name)
        np.testing.assert_allclose(np.load(converted / "preprocessed" / "val" / f"{name}.npy"), expected, atol=1e-4)


def test_conversion_is_byte_identical_with_one_and_two_workers(converted, pristine, tree, tmp_path):
    expected = file_hashes(converted)
    convert(layout(pristine), tmp_path / "one", workers=1)
    # From a copy elsewhere, too: the manifest names no path, so it is the same dataset.
    convert(layout(tree), tmp_path / "two", workers=2)
    assert file_hashes(tmp_path / "one") == expected
    assert file_hashes(tmp_path / "two") == expected


def test_shard_counts_follow_the_reference():
    assert (shard_count(1_281_167, "train"), shard_count(50_000, "val")) == (1024, 128)
    assert (shard_count(12, "train"), shard_count(640, "train"), shard_count(641, "val")) == (1, 10, 11)


def test_killed_at_random_points_then_rerun_gives_the_clean_result(converted, pristine, tmp_path, cli_env):
    out = tmp_path / "data" / "imagenet"
    command = [
        str(Path(sys.executable).parent / "benchpipe"), "datasets", "imagenet",
        "--train-dir", str(pristine["train_dir"]), "--val-dir", str(pristine["val_dir"]),
        "--val-map", str(pristine["val_map"]), "--bounding-boxes", str(pristine["bounding_boxes"]),
        "--train-per-class", "4", "--val-images", "6", "--synsets", "3", "--workers", "2", "--out", str(out),
    ]
    rng = random.Random(20261130)
    for low, high in ((0.3, 1.5), (1.5, 3.0), (3.0, 4.5)):
        proc = subprocess.Popen(command, env=cli_env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(low, high))
        code = proc.poll()
        if code is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = code == 0
        # Killed: nothing at the final path. Finished first: the whole, clean result.
        if finished or out.exists():
            assert finished and file_hashes(out) == file_hashes(converted)
            shutil.rmtree(out)
    subprocess.run(command, env=cli_env, check=True, capture_output=True)
    assert file_hashes(out) == file_hashes(converted)
    assert [p.name for p in out.parent.iterdir()] == ["imagenet"]
