"""Mini-WebVision (the first 50 classes, Google subset) with its two test sets.

Test sets: ``webvision_val`` (the official WebVision validation list) and ``imagenet_val`` (ILSVRC2012
validation images of the same 50 classes). ImageNet val is accepted as published, without re-foldering:
either the flat ``val/*.JPEG`` folder with the Kaggle ILSVRC label file ``LOC_val_solution.csv``
(``ImageId,PredictionString`` whose first token is the wnid), or the widespread ``val/<wnid>/*.JPEG``
layout. Class indices follow ``info/synsets.txt`` (ImageNet's sorted wnid order).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, DatasetFiles, Split, require_path
from deft_lightning.data.class_names import with_class_names
from deft_lightning.data.readers._common import (
    check_label_range,
    list_images,
    read_lines,
    read_text,
    relative_ids,
    require_files,
)

log = logging.getLogger(__name__)

WEBVISION_LAYOUT = """\
<root>/info/train_filelist_google.txt   (google/<query>/<name>.jpg <label>)
<root>/info/val_filelist.txt            (<name>.jpg <label>)
<root>/info/synsets.txt                 (<wnid> <names>, 1000 lines in class order)
<root>/google/<query>/*.jpg
<root>/val_images_256/*.jpg"""
IMAGENET_LAYOUT = """\
<imagenet_root>/val/ILSVRC2012_val_00000001.JPEG ...  +  <imagenet_root>/LOC_val_solution.csv
    (Kaggle ILSVRC files: ImageId,PredictionString with the wnid first)
or <imagenet_root>/val/<wnid>/*.JPEG"""


def _read_list(path: Path, what: str) -> tuple[list[str], np.ndarray]:
    """``<path> <label>`` lines via one whole-file split (the Google list has ~1M lines)."""
    tokens = read_text(path, what, WEBVISION_LAYOUT).split()
    if len(tokens) % 2:
        raise DatasetError(f"{path}: expected '<image path> <label>' on every line; found an odd token count.")
    try:
        labels = np.asarray(list(map(int, tokens[1::2])), dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens[1::2] if not t.lstrip("-").isdigit())
        raise DatasetError(f"{path}: label {bad!r} is not an integer.") from None
    keys = tokens[0::2]
    check_label_range(labels, 0, 1000, path, keys)
    return keys, labels


def _imagenet_val(imagenet_root: Path, wnids: list[str]) -> Split:
    index = {w: i for i, w in enumerate(wnids)}
    require_path(imagenet_root, "ImageNet root (imagenet_root)", IMAGENET_LAYOUT)
    val_dir = next(
        (d for d in (imagenet_root / "val", imagenet_root / "ILSVRC" / "Data" / "CLS-LOC" / "val") if d.is_dir()),
        None,
    )
    if val_dir is None:
        raise DatasetError(f"ImageNet validation folder {imagenet_root / 'val'} not found.\n{IMAGENET_LAYOUT}")
    paths: list[str] = []
    labels: list[int] = []
    if any((val_dir / w).is_dir() for w in wnids):
        for wnid in wnids:
            if (val_dir / wnid).is_dir():
                images = list_images(val_dir / wnid)
                paths.extend(str(p) for p in images)
                labels.extend([index[wnid]] * len(images))
    else:
        solution = require_path(imagenet_root / "LOC_val_solution.csv", "ImageNet validation labels", IMAGENET_LAYOUT)
        rows = []
        text = read_text(solution, "ImageNet validation labels", IMAGENET_LAYOUT)
        for line_no, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1):
            if line_no == 1 and row and row[0] == "ImageId":
                continue
            if len(row) < 2 or not row[1].split():
                raise DatasetError(f"{solution}, line {line_no}: expected 'ImageId,<wnid> <box> ...', got {row}.")
            wnid = row[1].split()[0]
            if wnid in index:
                rows.append((row[0], index[wnid]))
        for image_id, label in sorted(rows):
            paths.append(str(val_dir / f"{image_id}.JPEG"))
            labels.append(label)
        require_files(paths, "ImageNet validation images", solution, IMAGENET_LAYOUT)
    if not paths:
        raise DatasetError(f"No ImageNet validation images of the {len(wnids)} WebVision classes under {val_dir}.")
    return Split(clean_labels=np.asarray(labels), paths=paths, sample_ids=relative_ids(paths, imagenet_root))


@with_class_names
def read_webvision(root: str | Path, imagenet_root: str | Path | None = None, num_classes: int = 50) -> DatasetFiles:
    """Mini-WebVision: Google-subset training images with label < ``num_classes`` (their web labels are
    the real noisy labels), tested on WebVision val and, when ``imagenet_root`` is given, ImageNet val.
    """
    root = require_path(Path(root), "Dataset root", WEBVISION_LAYOUT)
    synsets = read_lines(root / "info" / "synsets.txt", "WebVision synsets.txt", WEBVISION_LAYOUT)[:num_classes]
    if len(synsets) < num_classes:
        raise DatasetError(f"{root / 'info' / 'synsets.txt'} lists {len(synsets)} classes, expected {num_classes}.")
    wnids = [line.split()[0] for line in synsets]
    class_names = [(line.split(maxsplit=1)[1:] or [line])[0].split(",")[0].strip() for line in synsets]

    keys, labels = _read_list(root / "info" / "train_filelist_google.txt", "WebVision Google training list")
    keep = np.flatnonzero(labels < num_classes)
    train_keys = [keys[i] for i in keep]
    prefix = str(root) + "/"
    train = Split(noisy_labels=labels[keep], paths=[prefix + k for k in train_keys], sample_ids=train_keys)

    val_keys, val_labels = _read_list(root / "info" / "val_filelist.txt", "WebVision validation list")
    keep = np.flatnonzero(val_labels < num_classes)
    val_ids = ["val_images_256/" + val_keys[i] for i in keep]
    test = {
        "webvision_val": Split(clean_labels=val_labels[keep], paths=[prefix + k for k in val_ids], sample_ids=val_ids)
    }
    info = root / "info"
    require_files(train.paths, "WebVision training images", info / "train_filelist_google.txt", WEBVISION_LAYOUT)
    require_files(test["webvision_val"].paths, "WebVision validation images", info / "val_filelist.txt", WEBVISION_LAYOUT)
    if imagenet_root is not None:
        test["imagenet_val"] = _imagenet_val(Path(imagenet_root), wnids)
    else:
        log.warning("webvision: imagenet_root not set, so the ImageNet val test set is skipped.")
    return DatasetFiles(
        name="webvision", class_names=class_names, train=train, test=test, family="webvision"
    ).validate()
