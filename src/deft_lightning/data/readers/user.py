"""Users' own data: an image-folder tree or a CSV of ``path,label`` rows.

Without a test folder or split column, ``split_fraction`` holds out a seeded, class-stratified share of
the training images as the test set; with neither, the dataset has no test split (detection only).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, DatasetFiles, Split, require_path
from deft_lightning.data.readers._common import read_class_folders

IMAGEFOLDER_LAYOUT = """\
<root>/train/<class name>/<images>
<root>/test/<class name>/<images>   (optional; else set split_fraction)"""
CSV_LAYOUT = """\
<root>/labels.csv (or root = the CSV file) with a header row:
    path,label[,split]
    images/cat_001.jpg,cat,train      (label: class name or 0-based index; paths relative to the CSV's folder)"""


def _holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-stratified seeded split: (train indices, test indices), both sorted."""
    if not 0.0 < float(fraction) < 1.0:
        raise DatasetError(f"split_fraction={fraction} must be in (0, 1): the share of images held out for testing.")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        pool = rng.permutation(np.flatnonzero(labels == c))
        n_test = min(int(round(fraction * len(pool))), len(pool) - 1)
        test.append(pool[:n_test])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def _with_holdout(train: Split, split_fraction: float | None, split_seed: int) -> tuple[Split, dict[str, Split]]:
    if split_fraction is None:
        return train, {}
    train_idx, test_idx = _holdout(train.clean_labels, split_fraction, split_seed)
    return train.subset(train_idx), {"test": train.subset(test_idx)}


def read_imagefolder(root: str | Path, split_fraction: float | None = None, split_seed: int = 0) -> DatasetFiles:
    """``train/<class>/*`` (classes = sorted folder names) with ``test/<class>/*`` or a seeded holdout."""
    root = require_path(Path(root), "Dataset root", IMAGEFOLDER_LAYOUT)
    paths, labels, ids, names = read_class_folders(root / "train", root, IMAGEFOLDER_LAYOUT)
    train = Split(clean_labels=labels, paths=paths, sample_ids=ids)
    if (root / "test").is_dir():
        t_paths, t_labels, t_ids, _ = read_class_folders(root / "test", root, IMAGEFOLDER_LAYOUT, class_names=names)
        test = {"test": Split(clean_labels=t_labels, paths=t_paths, sample_ids=t_ids)}
    else:
        train, test = _with_holdout(train, split_fraction, split_seed)
    return DatasetFiles(name="imagefolder", class_names=names, train=train, test=test, family="generic").validate()


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def read_csv(
    root: str | Path,
    file: str = "labels.csv",
    class_names: list[str] | None = None,
    split_fraction: float | None = None,
    split_seed: int = 0,
) -> DatasetFiles:
    """A CSV with ``path,label`` columns and an optional ``split`` column (``train``; any other value
    names a test set). Labels are class names, or 0-based indices when every label is an integer;
    ``class_names`` (e.g. from the config) fixes the class order and count.
    """
    root = Path(root)
    csv_file = root if root.is_file() else root / file
    require_path(csv_file, "Label CSV", CSV_LAYOUT)
    base = csv_file.parent
    with open(csv_file, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if "path" not in header or "label" not in header:
            raise DatasetError(
                f"{csv_file}: header row {header} must name the columns 'path' and 'label'.\n{CSV_LAYOUT}"
            )
        col_path, col_label = header.index("path"), header.index("label")
        col_split = header.index("split") if "split" in header else None
        rows = [(n, r) for n, r in enumerate(reader, 2) if any(cell.strip() for cell in r)]
    if not rows:
        raise DatasetError(f"{csv_file} has no data rows.\n{CSV_LAYOUT}")
    width = max(col_path, col_label, col_split or 0) + 1
    for line_no, row in rows:
        if len(row) < width:
            raise DatasetError(f"{csv_file}, line {line_no}: expected {width} columns, found {row}.")
    raw_labels = [row[col_label].strip() for _, row in rows]

    if all(_is_int(x) for x in raw_labels):
        labels = np.asarray([int(x) for x in raw_labels], dtype=np.int64)
        names = list(class_names) if class_names is not None else [str(i) for i in range(int(labels.max()) + 1)]
        bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
        if len(bad):
            line_no = rows[int(bad[0])][0]
            raise DatasetError(
                f"{csv_file}, line {line_no}: label {int(labels[bad[0]])} is outside [0, {len(names) - 1}] "
                f"for {len(names)} classes."
            )
    else:
        names = list(class_names) if class_names is not None else sorted(set(raw_labels))
        index = {n: i for i, n in enumerate(names)}
        for (line_no, _), x in zip(rows, raw_labels, strict=True):
            if x not in index:
                raise DatasetError(
                    f"{csv_file}, line {line_no}: label {x!r} is not a known class; expected one of {names}."
                )
        labels = np.asarray([index[x] for x in raw_labels], dtype=np.int64)

    ids, paths = [], []
    for line_no, row in rows:
        rel = row[col_path].strip()
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        if not path.is_file():
            raise DatasetError(f"{csv_file}, line {line_no}: image {path} does not exist.")
        ids.append(rel)
        paths.append(str(path))

    groups = [row[col_split].strip() or "train" for _, row in rows] if col_split is not None else ["train"] * len(rows)
    group_arr = np.asarray(groups)

    def split(name: str) -> Split:
        pick = np.flatnonzero(group_arr == name)
        return Split(clean_labels=labels[pick], paths=[paths[i] for i in pick], sample_ids=[ids[i] for i in pick])

    train = split("train")
    test_names = sorted(set(groups) - {"train"}, key=lambda g: (g != "test", g))
    if test_names:
        test = {g: split(g) for g in test_names}
    else:
        train, test = _with_holdout(train, split_fraction, split_seed)
    return DatasetFiles(name="csv", class_names=names, train=train, test=test, family="generic").validate()
