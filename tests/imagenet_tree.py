"""A tiny tree in ImageNet's layout (train/<synset>/, flat val/, val_map.txt, boxes CSV).

Shared by the dataset tests and the input-pipeline tests: every quirk the conversion has
to handle is in it (boxes clipped to the image, images outside the subset, odd sizes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from benchpipe.datasets.imagenet import ImageNetFiles, Subset, check_layout

SYNSETS = ["n01440764", "n01443537", "n01484850"]
TRAIN_PER_CLASS = 5  # the subset takes 4: the fifth must stay out
VAL_IMAGES = 7  # the subset takes 6
SUBSET = Subset(train_per_class=4, val_images=6)
# (height, width) of val images in name order: the first two halve exactly to the short side 256.
VAL_SIZES = [(512, 640), (640, 512), (60, 80), (80, 60), (64, 64), (50, 90), (70, 70)]
BOXES = {
    "n01440764_1": [(4, 2, 30, 20)],
    "n01443537_2": [(0, 0, 100, 100), (10, 5, 20, 15)],  # the first is clipped to the image
    "n01443537_5": [(1, 1, 2, 2)],  # outside the subset
}


def jpeg(seed: int, height: int, width: int) -> bytes:
    """A JPEG with structure (a ramp) and noise, so that crops and resizes show."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(height), np.arange(width))[..., None] * rng.uniform(0.2, 1.0, 3)
    pixels = np.clip(ramp + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    return tf.io.encode_jpeg(pixels, quality=90).numpy()


def train_size(n: int) -> tuple[int, int]:
    """(height, width) of the n-th train image of each synset: five shapes, over again."""
    k = (n - 1) % 5 + 1
    return 40 + 4 * k, 60 - 3 * k


def make_tree(root: Path, train_per_class: int = TRAIN_PER_CLASS) -> dict[str, Path]:
    """The tree; more images per synset than the default spread train over several shards."""
    train, val = root / "train", root / "val"
    for label, synset in enumerate(SYNSETS):
        (train / synset).mkdir(parents=True)
        for n in range(1, train_per_class + 1):
            data = jpeg(100 * label + n, *train_size(n))
            (train / synset / f"{synset}_{n}.JPEG").write_bytes(data)
    val.mkdir()
    lines = []
    for n, (height, width) in enumerate(VAL_SIZES, start=1):
        name = f"ILSVRC2012_val_{n:08d}.JPEG"
        (val / name).write_bytes(jpeg(1000 + n, height, width))
        lines.append(f"{name} {n % len(SYNSETS)}\n")
    (root / "val_map.txt").write_text("".join(lines))
    rows = []
    for image, boxes in BOXES.items():
        synset = image.split("_")[0]
        rows.append(f"{image}," + " ".join(f"{synset} {x0} {y0} {x1} {y1}" for x0, y0, x1, y1 in boxes) + "\n")
    (root / "boxes.csv").write_text("ImageId,PredictionString\n" + "".join(rows))
    return {"train_dir": train, "val_dir": val, "val_map": root / "val_map.txt", "bounding_boxes": root / "boxes.csv"}


def layout(tree: dict[str, Path], **overrides) -> ImageNetFiles:
    """The tree checked as the subset it is made for."""
    options = {"subset": SUBSET, "num_synsets": len(SYNSETS), **overrides}
    return check_layout(tree["train_dir"], tree["val_dir"], tree["val_map"],
                        bounding_boxes=tree["bounding_boxes"], **options)
