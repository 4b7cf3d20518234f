"""Users' own data: an image-folder tree or a CSV of ``path,label`` rows.

Without a test folder or split column, ``split_fraction`` holds out a seeded, class-stratified share of
the training images as the test set; with neither, the dataset has no test split (detection only).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, DatasetFiles, Split, require_path
from deft_lightning.data.class_names import with_class_names
from deft_lightning.data.readers._common import missing_files, read_class_folders

log = logging.getLogger(__name__)

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


@with_class_names
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


def _id_ranges(ids: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``: empty class ids, readable even when there are hundreds."""
    parts, start = [], None
    for k, i in enumerate(ids):
        if start is None:
            start = i
        if k + 1 == len(ids) or ids[k + 1] != i + 1:
            parts.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ", ".join(parts)


def _read_text(csv_file: Path, encoding: str) -> str:
    """The CSV's text; a decoding error names the file, the line and the option that sets the encoding."""
    raw = csv_file.read_bytes()
    try:
        return raw.decode(encoding)
    except LookupError:
        raise DatasetError(
            f"dataset.reader.encoding={encoding!r} is not a known text encoding (for {csv_file}); "
            "use e.g. utf-8, utf-8-sig, latin-1 or cp1252."
        ) from None
    except UnicodeDecodeError as err:
        line_no = raw.count(b"\n", 0, err.start) + 1
        raise DatasetError(
            f"{csv_file}, line {line_no}: byte {raw[err.start:err.start + 1]!r} is not valid {encoding} text. "
            "Save the file as UTF-8, or set its encoding with dataset.reader.encoding=latin-1 (or cp1252, ...)."
        ) from None


def _near_duplicates(names: list[str]) -> list[list[str]]:
    """Groups of class names that differ only by letter case or whitespace ("Cat", "cat", "c at" is not one)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(" ".join(name.split()).casefold(), []).append(name)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def _load_class_names(class_names, csv_file: Path) -> list[str] | None:
    """``class_names`` as a list: None, a list, or a path to a text file with one name per line."""
    if class_names is None:
        return None
    if isinstance(class_names, (str, Path)):
        from deft_lightning.data.class_names import read_class_names_file

        return read_class_names_file(class_names)
    names = [str(n) for n in class_names]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(f"dataset class_names for {csv_file} name a class twice: {dup}.")
    return names


def read_csv(
    root: str | Path,
    file: str = "labels.csv",
    class_names: list[str] | str | None = None,
    num_classes: int | None = None,
    split_fraction: float | None = None,
    split_seed: int = 0,
    encoding: str = "utf-8-sig",
) -> DatasetFiles:
    """A CSV with ``path,label`` columns and an optional ``split`` column (``train``; any other value
    names a test set). Labels are class names, or 0-based indices when every label is an integer.

    The class count comes from ``class_names`` (a list, or a text file with one name per line, which
    also fixes the class order) or ``num_classes`` when given. Without them, integer labels give
    ``max + 1`` classes and every class must have a sample (a typo such as ``99`` among ``0, 1, 2``
    is an error listing the empty classes); name labels that differ only by case or whitespace are an
    error (pass ``class_names`` to keep them apart on purpose). ``encoding`` is the file's text
    encoding (default UTF-8, with or without a byte-order mark). Without ``class_names`` and
    ``num_classes``, a ``classes.txt`` beside the CSV (as the cleaned-dataset export writes) fixes them.
    """
    root = Path(root)
    csv_file = root if root.is_file() else root / file
    require_path(csv_file, "Label CSV", CSV_LAYOUT)
    base = csv_file.parent
    if class_names is None and num_classes is None and (base / "classes.txt").is_file():
        class_names = str(base / "classes.txt")  # the exported dataset's class order, not a sorted one
    names_given = _load_class_names(class_names, csv_file)
    if num_classes is not None:
        if int(num_classes) <= 0:
            raise DatasetError(
                f"dataset.num_classes={num_classes} must be a positive number of classes (for {csv_file})."
            )
        num_classes = int(num_classes)
        if names_given is not None and len(names_given) != num_classes:
            raise DatasetError(
                f"dataset.num_classes={num_classes} but class_names lists {len(names_given)} classes (for {csv_file}); "
                "give one of them, or make them agree."
            )
    text = _read_text(csv_file, encoding)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in next(reader, [])]
        if "path" not in header or "label" not in header:
            raise DatasetError(
                f"{csv_file}: header row {header} must name the columns 'path' and 'label'.\n{CSV_LAYOUT}"
            )
        col_path, col_label = header.index("path"), header.index("label")
        col_split = header.index("split") if "split" in header else None
        rows = [(n, r) for n, r in enumerate(reader, 2) if any(cell.strip() for cell in r)]
    except csv.Error as err:
        raise DatasetError(f"{csv_file}: not a readable CSV file ({err}).\n{CSV_LAYOUT}") from None
    if not rows:
        raise DatasetError(f"{csv_file} has no data rows.\n{CSV_LAYOUT}")
    width = max(col_path, col_label, col_split or 0) + 1
    for line_no, row in rows:
        if len(row) < width:
            raise DatasetError(f"{csv_file}, line {line_no}: expected {width} columns, found {row}.")
    raw_labels = [row[col_label].strip() for _, row in rows]

    if all(_is_int(x) for x in raw_labels):
        labels = np.asarray([int(x) for x in raw_labels], dtype=np.int64)
        declared = names_given is not None or num_classes is not None
        count = len(names_given) if names_given is not None else num_classes or int(labels.max()) + 1
        names = names_given if names_given is not None else [str(i) for i in range(count)]
        bad = np.flatnonzero((labels < 0) | (labels >= count))
        if len(bad):
            line_no = rows[int(bad[0])][0]
            raise DatasetError(
                f"{csv_file}, line {line_no}: label {int(labels[bad[0]])} is outside [0, {count - 1}] "
                f"for {count} classes."
            )
        empty = np.flatnonzero(np.bincount(labels, minlength=count) == 0).tolist()
        if empty and not declared:
            raise DatasetError(
                f"{csv_file}: integer labels 0..{count - 1} imply {count} classes, but {len(empty)} of them have no "
                f"sample: class ids {_id_ranges(empty)}. A mistyped label gives a run with empty classes; fix the "
                "labels, or declare the classes with dataset.num_classes=N or dataset.reader.class_names."
            )
        if empty:
            log.warning(
                "%s: %d of %d declared classes have no sample (ids %s).", csv_file, len(empty), count, _id_ranges(empty)
            )
    else:
        if names_given is None:
            names = sorted(set(raw_labels))
            similar = _near_duplicates(names)
            if similar:
                shown = "; ".join(" / ".join(repr(n) for n in g) for g in similar[:5])
                raise DatasetError(
                    f"{csv_file}: {len(similar)} group(s) of labels differ only by letter case or spaces and would "
                    f"become separate classes: {shown}. Make them identical, or list the classes with "
                    "dataset.reader.class_names to keep them apart."
                )
            if num_classes is not None and num_classes != len(names):
                raise DatasetError(
                    f"{csv_file}: the labels name {len(names)} classes but dataset.num_classes={num_classes}."
                )
        else:
            names = names_given
        index = {n: i for i, n in enumerate(names)}
        for (line_no, _), x in zip(rows, raw_labels, strict=True):
            if x not in index:
                raise DatasetError(
                    f"{csv_file}, line {line_no}: label {x!r} is not a known class; expected one of {names}."
                )
        labels = np.asarray([index[x] for x in raw_labels], dtype=np.int64)

    ids, paths = [], []
    for _, row in rows:
        rel = row[col_path].strip()
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        ids.append(rel)
        paths.append(str(path))
    missing = missing_files(paths)
    if missing:
        shown = "\n".join(f"  line {rows[i][0]}: {paths[i]}" for i in missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetError(
            f"{csv_file}: {len(missing)} of {len(paths)} listed images do not exist:\n{shown}{more}\n"
            f"Paths are relative to the CSV's folder {base}."
        )

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
