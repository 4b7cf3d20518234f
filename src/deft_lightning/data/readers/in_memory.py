"""Data handed over in Python rather than found on disk: for the ``find_label_issues`` API.

The API registers a :class:`DatasetFiles` under a key and points ``dataset.reader`` at
:func:`read_registered` with that key, so the rest of the pipeline (noise, DataModule, report) runs
exactly as for a dataset read from files. The registry lives in this process only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deft_lightning.data.base import DatasetError, DatasetFiles, Split

_REGISTRY: dict[str, DatasetFiles] = {}


def register(files: DatasetFiles) -> str:
    """Keep ``files`` for :func:`read_registered`; return its key."""
    key = uuid.uuid4().hex
    _REGISTRY[key] = files
    return key


def unregister(key: str) -> None:
    _REGISTRY.pop(key, None)


def read_registered(root: str | Path | None = None, key: str = "") -> DatasetFiles:
    """The dataset registered under ``key`` (``root`` is ignored: nothing is read from disk)."""
    if key not in _REGISTRY:
        raise DatasetError(
            f"no in-memory dataset registered under key {key!r}: in-memory data only exists inside the "
            "Python process that called deft_lightning.find_label_issues."
        )
    return _REGISTRY[key]


def label_indices(labels: Sequence[Any], class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """Labels as 0-based indices plus the class names.

    String labels map onto ``class_names`` when given, else onto their sorted set; integer labels
    need ``class_names`` or give classes named by their index, and every class must occur.
    """
    labels = list(labels)
    if not labels:
        raise DatasetError("no samples: the label list is empty.")
    if all(isinstance(x, (int, np.integer)) for x in labels):
        values = np.asarray(labels, dtype=np.int64)
        names = list(class_names) if class_names is not None else [str(i) for i in range(int(values.max()) + 1)]
        bad = np.flatnonzero((values < 0) | (values >= len(names)))
        if len(bad):
            raise DatasetError(
                f"sample {int(bad[0])} has label {int(values[bad[0]])}, outside [0, {len(names) - 1}] "
                f"for {len(names)} classes."
            )
        if class_names is None:
            empty = sorted(set(range(len(names))) - set(values.tolist()))
            if empty:
                raise DatasetError(
                    f"integer labels leave classes {empty[:20]} without any sample; pass class_names=[...] "
                    "to fix the class count, or check the labels for typos."
                )
        return values, names
    text = [str(x).strip() for x in labels]
    names = list(class_names) if class_names is not None else sorted(set(text))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise DatasetError(f"labels {unknown[:10]} are not among the class names {names[:20]}.")
    return np.asarray([index[x] for x in text], dtype=np.int64), names


def files_from_paths(
    paths: Sequence[str | Path], labels: Sequence[Any], class_names: Sequence[str] | None = None,
    name: str = "paths",
) -> DatasetFiles:
    """A training split of image files with their labels (no test split: detection only)."""
    if len(paths) != len(labels):
        raise DatasetError(f"{len(paths)} image paths but {len(labels)} labels: give one label per image.")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(paths)} images do not exist, e.g. {missing[:3]}.")
    values, names = label_indices(labels, class_names)
    train = Split(clean_labels=values, paths=[str(Path(p).resolve()) for p in paths],
                  sample_ids=[str(p) for p in paths])
    return DatasetFiles(name=name, class_names=names, train=train, test={}, family="generic").validate()


def files_from_images(images: Any, labels: Sequence[Any], class_names: Sequence[str] | None = None,
                      name: str = "in_memory") -> DatasetFiles:
    """A training split of in-memory images: an (N, H, W, 3) uint8 array, or a list of PIL images /
    (H, W, 3) arrays of one size."""
    if isinstance(images, np.ndarray):
        array = images
    else:
        arrays = [np.asarray(image.convert("RGB") if hasattr(image, "convert") else image) for image in images]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise DatasetError(
                f"in-memory images must share one size, found {sorted(shapes)[:3]}; resize them first, or save "
                "them as files and pass a list of (path, label) pairs."
            )
        array = np.stack(arrays) if arrays else np.zeros((0, 1, 1, 3), dtype=np.uint8)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise DatasetError(f"in-memory images have shape {array.shape}; expected (N, H, W, 3) RGB.")
    if array.dtype != np.uint8:
        raise DatasetError(f"in-memory images have dtype {array.dtype}; expected uint8 pixel values 0-255.")
    if len(array) != len(labels):
        raise DatasetError(f"{len(array)} images but {len(labels)} labels: give one label per image.")
    values, names = label_indices(labels, class_names)
    train = Split(clean_labels=values, images=np.ascontiguousarray(array))
    return DatasetFiles(name=name, class_names=names, train=train, test={}, family="generic").validate()
