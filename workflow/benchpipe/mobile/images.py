"""The Mobile app's image datasets as LoadGen's samples, for the performance runs of its image tasks on
a supplied model on a host: MobileNetEdgeTPUv2-L (ImageNet), SSD-MobileDET (COCO), MOSAIC (ADE20K)
and EDSR (SNU SR).

The folder is the one tasks.pbtxt names for the task's full dataset (``img/``, ``images/``, ``lr/``),
its images in sorted file order, as the app lists them (``GetSortedFileNames``: .jpg, .jpeg, .png).
Each is decoded as RGB and resized to the model's input (bilinear), values 0..255: float32 for a
float input, the integers themselves for an integer input without quantization. That is not each
task's own preprocessing in the app (a centre crop for ImageNet, a normalisation before an int8
input): a performance run times the model, whatever the pixels, and no accuracy is scored from
these samples. Their accuracy is the app's binary's to score, on a phone (runtime adb).
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
