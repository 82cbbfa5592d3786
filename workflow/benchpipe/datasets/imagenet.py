"""ImageNet (ILSVRC2012) from the user's own copy: layout check, file list, subset.

ImageNet needs a licence, so it is never downloaded; the config points at::

    train/<synset>/<synset>_<n>.JPEG     1,281,167 images in 1,000 synset directories
    val/ILSVRC2012_val_<n>.JPEG          50,000 images, flat
    val_map.txt                          `ILSVRC2012_val_00000001.JPEG 65` per line (MLPerf)
    LOC_train_solution.csv               optional train boxes, `ImageId,PredictionString`

A label is the index of the synset in sorted synset order (the same numbering as
val_map.txt). A copy that is not the full set is refused unless a subset is asked for,
so that a wrong-size dataset never passes for ImageNet.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from benchpipe.contracts.errors import DatasetError

FULL_TRAIN_IMAGES = 1_281_167
FULL_VAL_IMAGES = 50_000
FULL_SYNSETS = 1000
IMAGE_SUFFIX = ".JPEG"
# Enough names to find the problem; a count says how many more there are.
NAMES_SHOWN = 10

_SYNSET = re.compile(r"n\d{8}")
_BOX_HEADER = ["ImageId", "PredictionString"]


@dataclass(frozen=True)
class Subset:
    """The first ``train_per_class`` images of each synset and ``val_images`` of val, by name.

    A key left out takes that split whole, checked against the full set's count.
    """

    train_per_class: int | None = None
    val_images: int | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in (("train_per_class", self.train_per_class),
                                  ("val_images", self.val_images)) if v is not None}


@dataclass(frozen=True)
class Box:
    """One bounding box in pixels, as the CSV gives it; normalized once the size is known."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True)
class Image:
    split: str  # "train" or "val"
    name: str  # path under the split's directory, "/"-separated
    path: Path
    label: int
    synset: str
    size: int
    boxes: tuple[Box, ...] = ()

    @property
    def rel_path(self) -> str:
        """The image's path in the dataset's own layout: train/<synset>/<file> or val/<file>."""
        return f"{self.split}/{self.name}"


@dataclass(frozen=True)
class ImageNetFiles:
    """The checked layout: which images are used, in name order, with their labels."""

    train_dir: Path
    val_dir: Path
    val_map: Path
    bounding_boxes: Path | None
    synsets: tuple[str, ...]
    train: tuple[Image, ...]
    val: tuple[Image, ...]
    subset: Subset | None
    boxed_images: int = 0


def name_list(names: list[str], limit: int = NAMES_SHOWN) -> str:
    """'a, b, c' or 'a, b, c and 12 more'."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _entries(directory: Path, what: str) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError as exc:
        raise DatasetError(f"{directory}: {what} directory does not exist") from exc
    except NotADirectoryError as exc:
        raise DatasetError(f"{directory}: {what} is not a directory") from exc
    except PermissionError as exc:
        raise DatasetError(f"{directory}: {what} directory is not readable") from exc


def _readable_size(entry: os.DirEntry) -> int | None:
    """The file's size, or None when it cannot be an image: empty or not readable."""
    size = entry.stat().st_size
    return size if size > 0 and os.access(entry.path, os.R_OK) else None


class _Problems:
    """Every problem of one check, grouped by kind, raised as one DatasetError."""

    def __init__(self) -> None:
        self.groups: dict[str, list[str]] = {}

    def add(self, kind: str, name: str) -> None:
        self.groups.setdefault(kind, []).append(name)

    def raise_if_any(self, where: str) -> None:
        if self.groups:
            parts = [f"{kind} ({len(names)}): {name_list(names)}" for kind, names in self.groups.items()]
            raise DatasetError(f"{where}: " + "; ".join(parts))


def list_synsets(train_dir: Path, num_synsets: int = FULL_SYNSETS) -> tuple[str, ...]:
    entries = _entries(train_dir, "train")
    problems = _Problems()
    synsets = []
    for entry in entries:
        if entry.is_dir() and _SYNSET.fullmatch(entry.name):
            synsets.append(entry.name)
        else:
            problems.add("not a synset directory (n########)", str(train_dir / entry.name))
    problems.raise_if_any(f"{train_dir}: ImageNet train layout")
    if len(synsets) != num_synsets:
        raise DatasetError(
            f"{train_dir}: {len(synsets)} synset directories, ImageNet has {num_synsets}"
            + (f" (found {name_list(synsets)})" if synsets else "")
        )
    return tuple(synsets)


def read_val_map(path: Path, num_classes: int) -> dict[str, int]:
    """val_map.txt as {file name: label}, each line checked."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: val_map file does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: val_map file is not readable: {exc}") from exc
    labels: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise DatasetError(f"{path}:{number}: expected '<file> <label>', got {line!r}")
        name, label = fields[0], int(fields[1])
        if not 0 <= label < num_classes:
            raise DatasetError(f"{path}:{number}: label {label} of {name} is outside 0..{num_classes - 1}")
        if name in labels:
            raise DatasetError(f"{path}:{number}: {name} is listed twice")
        labels[name] = label
    if not labels:
        raise DatasetError(f"{path}: val_map file lists no images")
    return labels


def _train_images(train_dir: Path, synsets: tuple[str, ...], subset: Subset | None) -> list[Image]:
    problems = _Problems()
    per_class = subset.train_per_class if subset else None
    images = []
    for label, synset in enumerate(synsets):
        chosen = []
        for entry in _entries(train_dir / synset, "synset"):
            path = train_dir / synset / entry.name
            if not entry.is_file() or not entry.name.endswith(IMAGE_SUFFIX):
                problems.add(f"not a {IMAGE_SUFFIX} file", str(path))
                continue
            size = _readable_size(entry)
            if size is None:
                problems.add("empty or unreadable", str(path))
                continue
            chosen.append(Image("train", f"{synset}/{entry.name}", path, label, synset, size))
        if per_class is not None:
            if len(chosen) < per_class:
                problems.add(f"fewer than train_per_class={per_class} images", f"{train_dir / synset} ({len(chosen)})")
            chosen = chosen[:per_class]
        images += chosen
    problems.raise_if_any(f"{train_dir}: ImageNet train layout")
    return images


def _val_images(
    val_dir: Path, val_map: Path, labels: dict[str, int], synsets: tuple[str, ...], subset: Subset | None
) -> list[Image]:
    problems = _Problems()
    present: dict[str, int] = {}
    seen = set()
    for entry in _entries(val_dir, "val"):
        path = val_dir / entry.name
        seen.add(entry.name)
        if not entry.is_file():
            problems.add("not a file", str(path))
        elif entry.name not in labels:
            problems.add(f"not listed in {val_map}", str(path))
        elif (size := _readable_size(entry)) is None:
            problems.add("empty or unreadable", str(path))
        else:
            present[entry.name] = size
    for name in sorted(set(labels) - seen):
        problems.add(f"listed in {val_map} but missing", str(val_dir / name))
    problems.raise_if_any(f"{val_dir}: ImageNet val layout")
    names = sorted(labels)
    if subset and subset.val_images is not None:
        if len(names) < subset.val_images:
            raise DatasetError(f"{val_dir}: {len(names)} val images, fewer than val_images={subset.val_images}")
        names = names[: subset.val_images]
    return [Image("val", n, val_dir / n, labels[n], synsets[labels[n]], present[n]) for n in names]


def _check_full_counts(files: ImageNetFiles) -> None:
    subset = files.subset or Subset()
    wrong = []
    if subset.train_per_class is None and len(files.train) != FULL_TRAIN_IMAGES:
        wrong.append(f"{files.train_dir} has {len(files.train):,} train images, ILSVRC2012 has {FULL_TRAIN_IMAGES:,}")
    if subset.val_images is None and len(files.val) != FULL_VAL_IMAGES:
        wrong.append(f"{files.val_dir} has {len(files.val):,} val images, ILSVRC2012 has {FULL_VAL_IMAGES:,}")
    if wrong:
        raise DatasetError(
            "; ".join(wrong) + ": not the full ImageNet; for a development subset set "
            "datasets.imagenet.subset (--train-per-class / --val-images)"
        )


def read_bounding_boxes(path: Path, train: list[Image], *, full: bool) -> list[Image]:
    """The train images with their boxes from a LOC_train_solution.csv.

    Rows for images outside a subset are skipped; with the full set, a row naming an image
    that is not in train/ means the CSV belongs to another copy, and fails.
    """
    by_stem = {Path(image.name).stem: i for i, image in enumerate(train)}
    boxes: dict[int, tuple[Box, ...]] = {}
    unknown = []
    try:
        with open(path, newline="") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header != _BOX_HEADER:
                raise DatasetError(f"{path}:1: expected the header {','.join(_BOX_HEADER)}, got {header}")
            for number, row in enumerate(rows, start=2):
                if len(row) != 2:
                    raise DatasetError(f"{path}:{number}: expected 2 fields, got {len(row)}")
                image_id, prediction = row
                index = by_stem.get(image_id)
                if index is None:
                    unknown.append(image_id)
                    continue
                if index in boxes:
                    raise DatasetError(f"{path}:{number}: {image_id} is listed twice")
                boxes[index] = _parse_boxes(prediction, train[index].synset, f"{path}:{number}")
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: bounding boxes file does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: bounding boxes file is not readable: {exc}") from exc
    if full and unknown:
        raise DatasetError(f"{path}: boxes for images not in train/: {name_list(unknown)}")
    return [
        Image(i.split, i.name, i.path, i.label, i.synset, i.size, boxes.get(n, ())) for n, i in enumerate(train)
    ]


def _parse_boxes(prediction: str, synset: str, where: str) -> tuple[Box, ...]:
    tokens = prediction.split()
    if not tokens or len(tokens) % 5:
        raise DatasetError(f"{where}: expected groups of '<synset> xmin ymin xmax ymax', got {prediction!r}")
    result = []
    for k in range(0, len(tokens), 5):
        if tokens[k] != synset:
            raise DatasetError(f"{where}: box synset {tokens[k]} differs from the image's {synset}")
        try:
            xmin, ymin, xmax, ymax = (float(t) for t in tokens[k + 1 : k + 5])
        except ValueError as exc:
            raise DatasetError(f"{where}: box coordinates are not numbers: {' '.join(tokens[k:k + 5])}") from exc
        result.append(Box(xmin, ymin, xmax, ymax))
    return tuple(result)


def check_layout(
    train_dir: Path,
    val_dir: Path,
    val_map: Path,
    *,
    bounding_boxes: Path | None = None,
    subset: Subset | None = None,
    num_synsets: int = FULL_SYNSETS,
) -> ImageNetFiles:
    """Check the directories against ILSVRC2012 (or the subset) and list the images used.

    Names every file that is missing, unlisted, empty or unreadable. Whether each JPEG
    decodes is checked when it is converted (that reads every byte anyway).
    """
    if subset is not None and not subset.as_dict():
        raise DatasetError("datasets.imagenet.subset: give train_per_class and/or val_images")
    synsets = list_synsets(train_dir, num_synsets)
    labels = read_val_map(val_map, len(synsets))
    train = _train_images(train_dir, synsets, subset)
    val = _val_images(val_dir, val_map, labels, synsets, subset)
    if bounding_boxes is not None:
        train = read_bounding_boxes(bounding_boxes, train, full=subset is None or subset.train_per_class is None)
    files = ImageNetFiles(
        train_dir=train_dir, val_dir=val_dir, val_map=val_map, bounding_boxes=bounding_boxes,
        synsets=synsets, train=tuple(train), val=tuple(val), subset=subset,
        boxed_images=sum(1 for image in train if image.boxes),
    )
    _check_full_counts(files)
    return files
