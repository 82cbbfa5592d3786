"""The Mobile app's image datasets as LoadGen's samples, for its image tasks on a supplied model on a
host.

ImageNet (MobileNetEdgeTPUv2-L) is preprocessed as the app does (``AppImageNet``), so that its
top-1 is the app's. For SSD-MobileDET (COCO), MOSAIC (ADE20K) and EDSR (SNU SR), performance runs
only (``ImageFolder``): the folder is the one tasks.pbtxt names for the task's full dataset
(``img/``, ``images/``, ``lr/``), its images in sorted file order, as the app lists them
(``GetSortedFileNames``: .jpg, .jpeg, .png). Each is decoded as RGB and resized to the model's
input (bilinear), values 0..255: float32 for a float input, the integers themselves for an integer
input without quantization. That is not each task's own preprocessing in the app (a normalisation
before an int8 input): a performance run times the model, whatever the pixels, and no accuracy is
scored from these samples. Their accuracy is the app's binary's to score, on a phone (runtime adb).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchpipe.contracts.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ImageFolder:
    """The images of ``folder`` as samples of ``shape`` (height, width, channels) for a model of
    one input: each sample one row, as ``LiteRTOutputsPredictor`` takes it."""

    def __init__(self, folder: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.folder = Path(folder)
        if len(shape) != 3:
            raise DatasetError(f"{folder}: images feed an input of (height, width, channels), not {list(shape)}")
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if self.folder.is_dir() else []
        if not files:
            raise DatasetError(f"{self.folder}: no {', '.join(IMAGE_SUFFIXES)} images: the folder of the task's "
                               "dataset that tasks.pbtxt names, under --data")
        self.files = files
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.total = len(files)
        self.sample_shape = (1, *self.shape)
        self.labels = np.zeros(self.total, np.int32)  # nothing is scored from these samples

    def read(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self._image(self.files[int(i)]) for i in np.asarray(indices).reshape(-1)])

    def _image(self, path: Path) -> np.ndarray:
        import tensorflow as tf

        height, width, channels = self.shape
        try:
            image = tf.io.decode_image(path.read_bytes(), channels=channels, expand_animations=False)
        except (tf.errors.InvalidArgumentError, OSError) as exc:
            raise DatasetError(f"{path}: not an image the app reads: {exc}") from exc
        values = tf.image.resize(image, (height, width)).numpy()
        if np.issubdtype(self.dtype, np.integer):
            values = np.clip(np.rint(values), 0, 255)
        return values.astype(self.dtype)[None]

    def describe(self) -> str:
        height, width, _ = self.shape
        return f"{self.total} images of {self.folder.name}/, resized to {height}x{width}"


# --- ImageNet as the app preprocesses it -----------------------------------------------------------

IMAGENET_SUFFIXES = (".rgb8", ".jpg", ".jpeg")  # imagenet.cc: GetSortedFileNames(image_dir, exts)
CROPPING_FRACTION = 0.875  # imagenet.cc: kCroppingFraction


def _round_half_away(value: float) -> int:
    """C's round(): halves away from zero (Python's round() rounds them to even)."""
    return int(np.floor(value + 0.5)) if value >= 0 else -int(np.floor(-value + 0.5))


def imagenet_preprocess(path: Path, width: int, height: int, dtype: np.dtype) -> np.ndarray:
    """One image as the app's ImageNet dataset feeds it (flutter/cpp/datasets/imagenet.cc, through
    TFLite's evaluation ImagePreprocessingStage):

    1. a JPEG decoded to RGB with the accurate integer DCT (JDCT_ISLOW); a .rgb8 file is raw
       pixels already at the input's size, taken as they are (the stage neither resizes nor crops it);
    2. resized bilinearly (align_corners and half_pixel_centers off), keeping the aspect ratio, so
       that the side with the larger ratio reaches (width, height) / 0.875, truncated to integers;
    3. the central (height, width) cropped, its offsets rounded half away from zero;
    4. normalized for the input's type: float32 (v - 127.5) / 127.5; int8 v - 128; uint8 as it is;
       then cast as C casts a float (towards zero).
    """
    import tensorflow as tf

    dtype = np.dtype(dtype)
    if path.suffix.lower() == ".rgb8":
        raw = np.frombuffer(path.read_bytes(), np.uint8)
        if raw.size != width * height * 3:
            raise DatasetError(f"{path}: {raw.size} bytes, a raw .rgb8 image of {width}x{height}x3 has "
                               f"{width * height * 3}")
        values = raw.reshape(height, width, 3).astype(np.float32)
    else:
        try:
            image = tf.io.decode_jpeg(path.read_bytes(), channels=3, dct_method="INTEGER_ACCURATE")
        except (tf.errors.InvalidArgumentError, OSError) as exc:
            raise DatasetError(f"{path}: not a JPEG image the app reads: {exc}") from exc
        in_h, in_w = int(image.shape[0]), int(image.shape[1])
        target_w, target_h = int(width / CROPPING_FRACTION), int(height / CROPPING_FRACTION)
        ratio_w, ratio_h = np.float32(target_w) / np.float32(in_w), np.float32(target_h) / np.float32(in_h)
        if ratio_w >= ratio_h:
            out_w, out_h = target_w, _round_half_away(float(np.float32(in_h) * ratio_w))
        else:
            out_w, out_h = _round_half_away(float(np.float32(in_w) * ratio_h)), target_h
        resized = tf.raw_ops.ResizeBilinear(images=tf.cast(image[None], tf.float32), size=[out_h, out_w],
                                            align_corners=False, half_pixel_centers=False)[0].numpy()
        if width > out_w or height > out_h:
            raise DatasetError(f"{path}: {in_w}x{in_h} resized to {out_w}x{out_h}, smaller than the {width}x{height} "
                               "crop")
        top, left = _round_half_away((out_h - height) / 2.0), _round_half_away((out_w - width) / 2.0)
        values = resized[top:top + height, left:left + width]
    if dtype == np.float32:
        return ((values - np.float32(127.5)) * np.float32(1.0 / 127.5)).astype(np.float32)
    if dtype == np.int8:
        return np.trunc(values - np.float32(128.0)).astype(np.int8)
    if dtype == np.uint8:
        return np.trunc(values).astype(np.uint8)
    raise DatasetError(f"{path}: the app feeds images to float32, int8 or uint8 inputs, not {dtype}")


class AppImageNet:
    """The app's ImageNet folder (``img/``: .rgb8, .jpg, .jpeg in sorted order) as samples of the
    model's input (height, width, 3) in its dtype, preprocessed as the app does
    (``imagenet_preprocess``), and the labels of ``imagenet_val_full.txt`` (one class per image, in
    that order) where an accuracy run needs them."""

    def __init__(self, folder: Path, shape: tuple[int, ...], dtype: np.dtype, labels_file: Path | None = None):
        self.folder = Path(folder)
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGENET_SUFFIXES) \
            if self.folder.is_dir() else []
        if not files:
            raise DatasetError(f"{self.folder}: no {', '.join(IMAGENET_SUFFIXES)} images: the app's ImageNet folder "
                               "that tasks.pbtxt names, under --data")
        if len(shape) != 3 or shape[2] != 3:
            raise DatasetError(f"{folder}: ImageNet images feed an input of (height, width, 3), not {list(shape)}")
        self.files = files
        self.shape = tuple(int(d) for d in shape)
        self.sample_shape = self.shape
        self.dtype = np.dtype(dtype)
        self.total = len(files)
        self.labels = np.zeros(self.total, np.int32)
        if labels_file is not None:
            self.labels = read_imagenet_labels(labels_file, self.total)

    def read(self, indices: np.ndarray) -> np.ndarray:
        height, width, _ = self.shape
        return np.stack([imagenet_preprocess(self.files[int(i)], width, height, self.dtype)
                         for i in np.asarray(indices).reshape(-1)])

    def describe(self) -> str:
        height, width, _ = self.shape
        return (f"{self.total} images of {self.folder.name}/, resized to {CROPPING_FRACTION:g}^-1 of "
                f"{width}x{height} and centre-cropped as the app does")


def read_imagenet_labels(path: Path, images: int) -> np.ndarray:
    """imagenet_val_full.txt: whitespace-separated integer classes, the n-th that of the n-th image."""
    words = Path(path).read_text().split()
    try:
        labels = np.array([int(w) for w in words], np.int32)
    except ValueError as exc:
        raise DatasetError(f"{path}: not a list of integer classes: {exc}") from None
    if len(labels) < images:
        raise DatasetError(f"{path}: {len(labels)} labels for {images} images")
    return labels[:images]
