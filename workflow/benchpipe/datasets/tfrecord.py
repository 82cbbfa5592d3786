"""ImageNet into TFRecord shards and preprocessed val arrays, by a pool of worker processes.

Layout of the output directory::

    tfrecords/train-00000-of-NNNNN       tf.train.Example per image (MLPerf ResNet training)
    tfrecords/validation-00000-of-NNNNN  the same for val
    preprocessed/val/<image>.npy         float32 224x224x3 NHWC per val image (MLPerf inference QSL)
    val_map.txt                          the val images used, with labels
    synsets.txt                          synset of each label, one a line, in label order
    inputs.parquet                       every source file: path, split, label, size, sha256
    manifest.json                        all of the above with their sha256

Shard counts are the reference's (1,024 train, 128 validation) at full size and scale down
as ``min(reference, ceil(images / IMAGES_PER_SHARD))``. Train images are shuffled once
with a fixed seed (a shard of one synset would starve a reader's shuffle buffer), val stays
in name order; each shard takes the next contiguous run. A shard is written by one worker
under a temporary name and renamed, so its bytes depend on the inputs only, never on the
number of workers or the order in which they finish.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchpipe.contracts.atomic import atomic_dir
from benchpipe.contracts.errors import DatasetError
from benchpipe.contracts.hashing import sha256_file
from benchpipe.datasets.imagenet import Image, ImageNetFiles, name_list

MANIFEST = "manifest.json"
INPUTS = "inputs.parquet"
REFERENCE_SHARDS = {"train": 1024, "val": 128}
SHARD_PREFIX = {"train": "train", "val": "validation"}
# Small enough that a few hundred images still give every worker several shards, large
# enough that the full set reaches the reference's counts (1,281,167 / 64 > 1,024).
IMAGES_PER_SHARD = 64
SHUFFLE_SEED = 0
RESIZE_SHORT_SIDE = 256
CROP = 224
MEAN_RGB = (123.68, 116.78, 103.94)
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def shard_count(images: int, split: str) -> int:
    return max(1, min(REFERENCE_SHARDS[split], math.ceil(images / IMAGES_PER_SHARD)))


@dataclass(frozen=True)
class ImageJob:
    path: str
    rel_path: str
    label: int
    synset: str
    boxes: tuple[tuple[float, float, float, float], ...] = ()

    @classmethod
    def of(cls, image: Image) -> ImageJob:
        boxes = tuple((b.xmin, b.ymin, b.xmax, b.ymax) for b in image.boxes)
        return cls(str(image.path), image.rel_path, image.label, image.synset, boxes)


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    count: int
    images: tuple[ImageJob, ...]
    out_dir: str

    @property
    def name(self) -> str:
        return f"{SHARD_PREFIX[self.split]}-{self.index:05d}-of-{self.count:05d}"


@dataclass
class ShardResult:
    split: str
    index: int
    path: str
    records: int = 0
    sha256: str = ""
    # (rel_path, size, sha256) of each source image, in shard order
    inputs: list[tuple[str, int, str]] = field(default_factory=list)
    # (path, sha256) of each preprocessed array
    arrays: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _split_tasks(split: str, images: list[Image], out_dir: Path) -> list[ShardTask]:
    count = shard_count(len(images), split)
    jobs = [ImageJob.of(image) for image in images]
    return [
        ShardTask(split, k, count, tuple(jobs[k * len(jobs) // count : (k + 1) * len(jobs) // count]), str(out_dir))
        for k in range(count)
    ]


def plan_shards(files: ImageNetFiles, out_dir: Path) -> list[ShardTask]:
    """Every shard with its images, in the order they are written."""
    train = sorted(files.train, key=lambda image: image.rel_path)
    # random.Random's shuffle is the same on every platform and Python 3 release.
    random.Random(SHUFFLE_SEED).shuffle(train)
    val = sorted(files.val, key=lambda image: image.rel_path)
    return _split_tasks("train", train, out_dir) + _split_tasks("val", val, out_dir)


def init_worker() -> None:
    """One TensorFlow thread per worker: the pool, not TensorFlow, spreads work over cores."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialized in this process (an in-process run): keep its settings


def _decode(data: bytes) -> tuple[bytes, Any]:
    """The JPEG bytes to store and the RGB pixels; a PNG (ImageNet train has one) is re-encoded."""
    import tensorflow as tf

    if data.startswith(_PNG_MAGIC):
        pixels = tf.io.decode_png(data, channels=3)
        # As the reference's conversion does: a record's image/encoded is always a JPEG.
        return tf.io.encode_jpeg(pixels, format="rgb", quality=100).numpy(), pixels
    if not data.startswith(_JPEG_MAGIC):
        raise ValueError("not a JPEG")
    # INTEGER_ACCURATE is libjpeg's default, the one OpenCV's reference preprocessing decodes with.
    return data, tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")


def preprocess_val(pixels: Any) -> np.ndarray:
    """MLPerf inference's ResNet-50 preprocessing: short side to 256 (area), centre 224, minus mean."""
    import tensorflow as tf

    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    if height > width:
        size = (int(RESIZE_SHORT_SIDE * height / width), RESIZE_SHORT_SIDE)
    else:
        size = (RESIZE_SHORT_SIDE, int(RESIZE_SHORT_SIDE * width / height))
    resized = tf.image.resize(pixels, size, method="area").numpy()
    # The reference resizes 8-bit images and gets 8-bit pixels back.
    resized = np.clip(np.rint(resized), 0, 255)
    top, left = (size[0] - CROP) // 2, (size[1] - CROP) // 2
    crop = resized[top : top + CROP, left : left + CROP].astype(np.float32)
    return crop - np.asarray(MEAN_RGB, dtype=np.float32)


def _normalized(boxes: tuple[tuple[float, float, float, float], ...], height: int, width: int) -> list[tuple[float, ...]]:
    result = []
    for xmin, ymin, xmax, ymax in boxes:
        x0, x1 = sorted(min(max(v / width, 0.0), 1.0) for v in (xmin, xmax))
        y0, y1 = sorted(min(max(v / height, 0.0), 1.0) for v in (ymin, ymax))
        result.append((x0, y0, x1, y1))
    return result


def example_bytes(job: ImageJob, encoded: bytes, height: int, width: int) -> bytes:
    import tensorflow as tf

    def ints(*values: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def raw(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def floats(values: list[float]) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    feature = {
        "image/encoded": raw(encoded),
        "image/format": raw(b"JPEG"),
        "image/colorspace": raw(b"RGB"),
        "image/channels": ints(3),
        "image/height": ints(height),
        "image/width": ints(width),
        "image/class/label": ints(job.label),
        "image/class/synset": raw(job.synset.encode()),
        "image/filename": raw(Path(job.rel_path).name.encode()),
    }
    boxes = _normalized(job.boxes, height, width)
    if boxes:
        for k, key in enumerate(("xmin", "ymin", "xmax", "ymax")):
            feature[f"image/object/bbox/{key}"] = floats([box[k] for box in boxes])
        feature["image/object/bbox/label"] = ints(*[job.label] * len(boxes))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # Map fields serialize in an unspecified order unless asked; shards must be byte-identical.
    return example.SerializeToString(deterministic=True)


def _write_array(array: np.ndarray, final: Path) -> str:
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, final)
    return sha256_file(final)


def write_shard(task: ShardTask) -> ShardResult:
    """Write one shard (and, for val, its images' arrays); report unreadable images instead."""
    import tensorflow as tf

    out_dir = Path(task.out_dir)
    final = out_dir / "tfrecords" / task.name
    result = ShardResult(task.split, task.index, f"tfrecords/{task.name}")
    tmp = final.with_name(f".{task.name}.tmp-{os.getpid()}")
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        for job in task.images:
            try:
                data = Path(job.path).read_bytes()
                encoded, pixels = _decode(data)
            except OSError as exc:
                result.problems.append(f"{job.path} ({exc.strerror or exc})")
                continue
            except (ValueError, tf.errors.OpError):
                result.problems.append(f"{job.path} (not a decodable JPEG)")
                continue
            result.inputs.append((job.rel_path, len(data), hashlib.sha256(data).hexdigest()))
            if result.problems:
                continue  # the run fails anyway; only look for further bad images
            writer.write(example_bytes(job, encoded, int(pixels.shape[0]), int(pixels.shape[1])))
            result.records += 1
            if task.split == "val":
                rel = f"preprocessed/val/{Path(job.rel_path).name}.npy"
                result.arrays.append((rel, _write_array(preprocess_val(pixels), out_dir / rel)))
    if result.problems:
        tmp.unlink()
        return result
    os.replace(tmp, final)
    result.sha256 = sha256_file(final)
    return result


def run_tasks(tasks: list[ShardTask], workers: int) -> list[ShardResult]:
    """All shards, by ``workers`` spawned processes (TensorFlow is not fork-safe); in order."""
    # Val shards first: they also write arrays, and the longest tasks should not come last.
    ordered = sorted(tasks, key=lambda t: (t.split != "val", t.index))
    if workers == 1 or len(tasks) == 1:
        # The caller's process keeps its TensorFlow settings (they are fixed once TensorFlow
        # starts); the command line pins one thread itself, as a worker has.
        results = [write_shard(task) for task in ordered]
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(tasks)), initializer=init_worker) as pool:
            results = list(pool.imap_unordered(write_shard, ordered, chunksize=1))
    return sorted(results, key=lambda r: (r.split != "train", r.index))


def _inputs_table(files: ImageNetFiles, results: list[ShardResult]) -> pa.Table:
    measured = {rel: (size, digest) for r in results for rel, size, digest in r.inputs}
    rows = [*files.train, *files.val]
    return pa.table(
        {
            "path": pa.array([i.rel_path for i in rows], pa.string()),
            "split": pa.array([i.split for i in rows], pa.string()),
            "label": pa.array([i.label for i in rows], pa.int32()),
            "size": pa.array([measured[i.rel_path][0] for i in rows], pa.int64()),
            "sha256": pa.array([measured[i.rel_path][1] for i in rows], pa.string()),
        }
    )


def _sources(files: ImageNetFiles) -> list[dict[str, str]]:
    # Names and hashes, not where the copy lives: the same bytes under another path are the
    # same dataset, and give the same manifest (its sha256 is what each result records).
    listed = [("val_map", files.val_map), ("bounding_boxes", files.bounding_boxes)]
    return [{"name": name, "file": path.name, "sha256": sha256_file(path)} for name, path in listed if path]


def convert(files: ImageNetFiles, out_dir: Path, *, workers: int | None = None) -> dict[str, Any]:
    """Write the dataset directory atomically: nothing at ``out_dir`` until all is written."""
    workers = workers or os.cpu_count() or 1
    with atomic_dir(out_dir) as tmp:
        (tmp / "tfrecords").mkdir()
        (tmp / "preprocessed" / "val").mkdir(parents=True)
        results = run_tasks(plan_shards(files, tmp), workers)
        problems = sorted(p for r in results for p in r.problems)
        if problems:
            raise DatasetError(f"{len(problems)} images cannot be read or decoded: {name_list(problems)}")
        (tmp / "val_map.txt").write_text("".join(f"{Path(i.name).name} {i.label}\n" for i in files.val))
        (tmp / "synsets.txt").write_text("".join(f"{s}\n" for s in files.synsets))
        table = _inputs_table(files, results)
        pq.write_table(table, tmp / INPUTS, compression="zstd")
        manifest = {
            "dataset": "imagenet",
            "subset": files.subset.as_dict() if files.subset else None,
            "classes": len(files.synsets),
            "counts": {"train": len(files.train), "val": len(files.val), "train_with_boxes": files.boxed_images},
            "sources": _sources(files),
            "inputs": {"path": INPUTS, "rows": table.num_rows, "sha256": sha256_file(tmp / INPUTS)},
            "sharding": {"images_per_shard": IMAGES_PER_SHARD, "reference_shards": REFERENCE_SHARDS,
                         "train_shuffle_seed": SHUFFLE_SEED},
            "shards": [
                {"path": r.path, "split": r.split, "records": r.records, "sha256": r.sha256} for r in results
            ],
            "preprocessing": {"resize_short_side": RESIZE_SHORT_SIDE, "interpolation": "area", "crop": CROP,
                              "mean_rgb": list(MEAN_RGB), "dtype": "float32", "layout": "NHWC"},
            "arrays": [{"path": p, "sha256": d} for r in results for p, d in r.arrays],
            "files": [{"path": n, "sha256": sha256_file(tmp / n)} for n in ("val_map.txt", "synsets.txt")],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
