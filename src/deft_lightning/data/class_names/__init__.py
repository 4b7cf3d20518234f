"""Class names for the prompts: the dataset files' own, a curated list shipped here, or a user's file.

The text prompts are built from class names. Readers take them from the dataset's files (WebVision's
``synsets.txt`` first synonyms, Clothing1M's ``category_names_eng.txt``, CIFAR's ``meta`` ...). The
paper's prompts used curated names for some datasets; those lists ship here as text files, one name
per line, in class-index order, and ``dataset.class_names=curated`` selects them:

- ``webvision.txt`` (50): CLIP-style ImageNet names of the first 50 synsets, e.g. ``hammerhead shark``
  and ``rooster`` where ``synsets.txt`` gives ``hammerhead`` and ``cock``;
- ``clothing1m.txt`` (14): ``Downcoat`` where ``category_names_eng.txt`` has ``Down Coat``;
- ``cifar100.txt`` (100, also for CIFAR-100N): ``computer_keyboard`` where ``meta`` has ``keyboard``;
- ``tiny_imagenet.txt`` (200): the names the reference's configs list for the sorted wnids.

The lists are the class names given in the configs of the authors' repository (HotanLee/DeFT,
``config/PEFT/<dataset>.yaml``). CUB-200 and Stanford Cars are not shipped: the reference's names are
the ones our readers already take from the files (underscores become spaces in the prompts, as there).

``dataset.class_names`` may also be a path to a text file of the same format, or a list.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from deft_lightning.data.base import DatasetError, DatasetFiles

CURATED = {  # dataset name -> shipped list file
    "webvision": "webvision.txt",
    "clothing1m": "clothing1m.txt",
    "cifar100": "cifar100.txt",
    "cifar100n": "cifar100.txt",
    "tiny_imagenet": "tiny_imagenet.txt",
}


def curated_file(dataset: str) -> Path:
    """The shipped curated list of ``dataset``; a DatasetError when none ships."""
    if dataset not in CURATED:
        raise DatasetError(
            f"dataset.class_names=curated: no curated class-name list ships for {dataset!r} (lists ship for "
            f"{', '.join(sorted(CURATED))}); use null for the names in the dataset files, or a path to a text file "
            "with one name per line."
        )
    return Path(str(resources.files(__package__).joinpath(CURATED[dataset])))


def read_class_names_file(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped: one class name per line, in class-index order."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(
            f"Class-name file {path} not found (dataset.class_names): expected a text file with one class name "
            "per line, in class-index order; or null / curated."
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"Class-name file {path} is not UTF-8 text ({err.reason} at byte {err.start}).") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"Class-name file {path} names a class twice: {duplicates}; each line must be one class.")
    if not names:
        raise DatasetError(f"Class-name file {path} is empty; expected one class name per line.")
    return names


def resolve_class_names(spec, dataset: str) -> tuple[list[str] | None, str]:
    """``(names or None, where they come from)`` for ``dataset.class_names`` = null | curated | PATH | list."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "null", "none", "files")):
        return None, "the dataset files"
    if isinstance(spec, (str, Path)):
        path = curated_file(dataset) if str(spec).strip().lower() == "curated" else Path(str(spec))
        return read_class_names_file(path), str(path)
    if isinstance(spec, Sequence):
        names = [str(n) for n in spec]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DatasetError(f"dataset.class_names names a class twice: {duplicates}.")
        return names, "dataset.class_names"
    raise DatasetError(f"dataset.class_names={spec!r}: expected null, curated, a file path or a list of names.")


def apply_class_names(files: DatasetFiles, spec) -> DatasetFiles:
    """Replace the files' class names by ``spec``'s (same count, same index order); a wrong count is refused."""
    names, source = resolve_class_names(spec, files.name)
    if names is None:
        return files
    if len(names) != files.num_classes:
        raise DatasetError(
            f"{source} lists {len(names)} class names, but {files.name} has {files.num_classes} classes; expected "
            f"one name per class, in class-index order (the files' first: {files.class_names[:3]})."
        )
    files.class_names = names
    return files


def with_class_names(reader: Callable[..., DatasetFiles]) -> Callable[..., DatasetFiles]:
    """Give a reader the ``class_names`` option (null | curated | PATH | list), applied after reading."""

    @functools.wraps(reader)
    def read(*args, class_names=None, **kwargs) -> DatasetFiles:
        if class_names is not None:
            resolve_class_names(class_names, _dataset_of(reader))  # a bad option fails before the files are read
        return apply_class_names(reader(*args, **kwargs), class_names)

    return read


def _dataset_of(reader: Callable) -> str:
    return reader.__name__.removeprefix("read_")
