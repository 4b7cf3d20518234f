"""Tiny-ImageNet, Stanford Cars and CUB-200-2011, read from their official layouts.

Tiny-ImageNet's validation images are read through ``val_annotations.txt`` directly, so nobody has to
re-folder them by hand (the reference code required that).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, DatasetFiles, Split, require_path
from deft_lightning.data.class_names import with_class_names
from deft_lightning.data.readers._common import (
    check_label_range,
    find_dataset_dir,
    list_images,
    parse_label,
    read_class_folders,
    read_lines,
    relative_ids,
    require_files,
)

TINY_LAYOUT = """\
<root>/tiny-imagenet-200/
    wnids.txt, words.txt
    train/<wnid>/images/*.JPEG
    val/images/*.JPEG
    val/val_annotations.txt      (file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1)"""
CARS_LAYOUT = """\
<root>/train/<class name>/*.jpg
<root>/test/<class name>/*.jpg"""
CUB_LAYOUT = """\
<root>/CUB_200_2011/
    images.txt               (<image id> <relative path>)
    image_class_labels.txt   (<image id> <class id, 1-based>)
    train_test_split.txt     (<image id> <1 = train, 0 = test>)
    classes.txt              (<class id> <NNN.Class_name>)
    images/<NNN.Class_name>/*.jpg"""


@with_class_names
def read_tiny_imagenet(root: str | Path) -> DatasetFiles:
    """Tiny-ImageNet-200: classes are the sorted wnids, named by the first synonym in ``words.txt``."""
    folder = find_dataset_dir(Path(root), "tiny-imagenet-200", "wnids.txt", TINY_LAYOUT)
    wnids = sorted(set(read_lines(folder / "wnids.txt", "Tiny-ImageNet wnids.txt", TINY_LAYOUT)))
    words = {}
    for line in read_lines(folder / "words.txt", "Tiny-ImageNet words.txt", TINY_LAYOUT):
        wnid, _, text = line.partition("\t")
        words[wnid.strip()] = text.split(",")[0].strip()
    class_names = [words.get(w) or w for w in wnids]
    index = {w: i for i, w in enumerate(wnids)}

    paths: list[str] = []
    labels: list[int] = []
    for wnid in wnids:
        image_dir = require_path(folder / "train" / wnid / "images", f"Training folder of class {wnid}", TINY_LAYOUT)
        images = list_images(image_dir, recursive=False)
        if not images:
            raise DatasetError(f"Class folder {image_dir} contains no images; expected {wnid}_*.JPEG files.")
        paths.extend(str(p) for p in images)
        labels.extend([index[wnid]] * len(images))
    train = Split(clean_labels=np.asarray(labels), paths=paths, sample_ids=relative_ids(paths, folder))

    ann_file = folder / "val" / "val_annotations.txt"
    val_paths, val_labels = [], []
    for line_no, line in enumerate(read_lines(ann_file, "Tiny-ImageNet val annotations", TINY_LAYOUT), 1):
        fields = line.split()
        if len(fields) < 2:
            raise DatasetError(f"{ann_file}, line {line_no}: expected '<file> <wnid> <box>', found {line!r}.")
        if fields[1] not in index:
            raise DatasetError(f"{ann_file}, line {line_no}: wnid {fields[1]!r} is not listed in wnids.txt.")
        val_paths.append(str(folder / "val" / "images" / fields[0]))
        val_labels.append(index[fields[1]])
    require_files(val_paths, "Tiny-ImageNet validation images", ann_file, TINY_LAYOUT)
    test = Split(clean_labels=np.asarray(val_labels), paths=val_paths, sample_ids=relative_ids(val_paths, folder))
    return DatasetFiles(
        name="tiny_imagenet", class_names=class_names, train=train, test={"test": test}, family="fine_grained"
    ).validate()


@with_class_names
def read_stanford_cars(root: str | Path) -> DatasetFiles:
    """Stanford Cars as class-per-folder ``train/`` and ``test/`` trees; classes are the sorted folder names."""
    root = require_path(Path(root), "Dataset root", CARS_LAYOUT)
    paths, labels, ids, names = read_class_folders(root / "train", root, CARS_LAYOUT)
    t_paths, t_labels, t_ids, _ = read_class_folders(root / "test", root, CARS_LAYOUT, class_names=names)
    return DatasetFiles(
        name="stanford_cars",
        class_names=names,
        train=Split(clean_labels=labels, paths=paths, sample_ids=ids),
        test={"test": Split(clean_labels=t_labels, paths=t_paths, sample_ids=t_ids)},
        family="fine_grained",
    ).validate()


def _id_table(path: Path, what: str) -> dict[int, str]:
    """``<int id> <value>`` lines -> {id: value}."""
    table = {}
    for line_no, line in enumerate(read_lines(path, what, CUB_LAYOUT), 1):
        key, _, value = line.partition(" ")
        table[parse_label(key, path, line_no)] = value.strip()
    return table


@with_class_names
def read_cub200(root: str | Path) -> DatasetFiles:
    """CUB-200-2011 from its id-keyed text files (1-based class ids become 0-based labels)."""
    folder = find_dataset_dir(Path(root), "CUB_200_2011", "images.txt", CUB_LAYOUT)
    classes_file = folder / "classes.txt"
    classes = _id_table(classes_file, "CUB classes.txt")
    num_classes = len(classes)
    if sorted(classes) != list(range(1, num_classes + 1)):
        raise DatasetError(f"{classes_file}: class ids must be 1..{num_classes} without gaps.")
    class_names = [re.sub(r"^\d+\.", "", classes[i]) for i in range(1, num_classes + 1)]

    images = _id_table(folder / "images.txt", "CUB images.txt")
    labels_file = folder / "image_class_labels.txt"
    labels = _id_table(labels_file, "CUB image_class_labels.txt")
    split_file = folder / "train_test_split.txt"
    is_train = _id_table(split_file, "CUB train_test_split.txt")

    ids = sorted(images)
    for table, file in ((labels, labels_file), (is_train, split_file)):
        missing = [i for i in ids if i not in table]
        if missing:
            raise DatasetError(f"{file}: no entry for image id {missing[0]} listed in images.txt.")
    label_arr = np.asarray([parse_label(labels[i], labels_file, i) for i in ids], dtype=np.int64)
    rel = [images[i] for i in ids]
    check_label_range(label_arr, 1, num_classes + 1, labels_file, rel)
    label_arr -= 1
    train_mask = np.asarray([is_train[i] == "1" for i in ids])

    abs_paths = [str(folder / "images" / r) for r in rel]
    require_files(abs_paths, "CUB images", folder / "images.txt", CUB_LAYOUT)

    def split(mask: np.ndarray) -> Split:
        pick = np.flatnonzero(mask)
        return Split(
            clean_labels=label_arr[pick],
            paths=[abs_paths[i] for i in pick],
            sample_ids=["images/" + rel[i] for i in pick],
        )

    return DatasetFiles(
        name="cub200",
        class_names=class_names,
        train=split(train_mask),
        test={"test": split(~train_mask)},
        family="fine_grained",
    ).validate()
