"""CIFAR-10, CIFAR-100 and CIFAR-100N from the official python pickles, held in memory as uint8 arrays.

The pickles are read with an unpickler that only builds numpy arrays, so a tampered download cannot
run code. CIFAR-100N's ``.pt`` label file is read with ``torch.load(weights_only=True)`` and an
allow-list of the numpy types it needs, for the same reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, DatasetFiles, Split, require_path
from deft_lightning.data.class_names import with_class_names
from deft_lightning.data.readers._common import find_dataset_dir, load_array_pickle

CIFAR10_LAYOUT = """\
<root>/cifar-10-batches-py/
    data_batch_1 ... data_batch_5, test_batch, batches.meta   (official python pickles)"""
CIFAR100_LAYOUT = """\
<root>/cifar-100-python/
    train, test, meta   (official python pickles)"""
CIFAR100N_LAYOUT = (
    CIFAR100_LAYOUT
    + """
<root>/CIFAR-100_human.pt   (CIFAR-N release: clean_label, noisy_label, ...)"""
)


def _images(batch: dict, file: Path) -> np.ndarray:
    """(N, 3072) channel-planar rows -> (N, 32, 32, 3) uint8."""
    data = batch.get(b"data")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DatasetError(f"{file}: b'data' has shape {shape}, expected (N, 3072) uint8 CIFAR rows.")
    return np.ascontiguousarray(data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _labels(batch: dict, key: bytes, file: Path, n: int) -> np.ndarray:
    if key not in batch:
        raise DatasetError(f"{file}: key {key!r} missing; expected the official CIFAR pickle dict.")
    labels = np.asarray(batch[key], dtype=np.int64)
    if labels.shape != (n,):
        raise DatasetError(f"{file}: {key!r} has {labels.size} labels for {n} images.")
    return labels


def _names(meta: dict, key: bytes, file: Path) -> list[str]:
    if key not in meta:
        raise DatasetError(f"{file}: key {key!r} missing; expected the official CIFAR meta pickle.")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[key]]


@with_class_names
def read_cifar10(root: str | Path) -> DatasetFiles:
    """CIFAR-10: 50,000 / 10,000 images of 10 classes, names from ``batches.meta``."""
    folder = find_dataset_dir(Path(root), "cifar-10-batches-py", "batches.meta", CIFAR10_LAYOUT)
    parts_x, parts_y = [], []
    for i in range(1, 6):
        file = folder / f"data_batch_{i}"
        batch = load_array_pickle(file, "CIFAR-10 training batch", CIFAR10_LAYOUT)
        x = _images(batch, file)
        parts_x.append(x)
        parts_y.append(_labels(batch, b"labels", file, len(x)))
    test_file = folder / "test_batch"
    test = load_array_pickle(test_file, "CIFAR-10 test batch", CIFAR10_LAYOUT)
    test_x = _images(test, test_file)
    meta_file = folder / "batches.meta"
    names = _names(load_array_pickle(meta_file, "CIFAR-10 meta", CIFAR10_LAYOUT), b"label_names", meta_file)
    return DatasetFiles(
        name="cifar10",
        class_names=names,
        train=Split(clean_labels=np.concatenate(parts_y), images=np.concatenate(parts_x)),
        test={"test": Split(clean_labels=_labels(test, b"labels", test_file, len(test_x)), images=test_x)},
        family="cifar",
    ).validate()


@with_class_names
def read_cifar100(root: str | Path) -> DatasetFiles:
    """CIFAR-100 with its 100 fine labels; names from ``meta``."""
    folder = find_dataset_dir(Path(root), "cifar-100-python", "meta", CIFAR100_LAYOUT)
    splits = {}
    for part in ("train", "test"):
        file = folder / part
        batch = load_array_pickle(file, f"CIFAR-100 {part}", CIFAR100_LAYOUT)
        x = _images(batch, file)
        splits[part] = Split(clean_labels=_labels(batch, b"fine_labels", file, len(x)), images=x)
    meta_file = folder / "meta"
    names = _names(load_array_pickle(meta_file, "CIFAR-100 meta", CIFAR100_LAYOUT), b"fine_label_names", meta_file)
    return DatasetFiles(
        name="cifar100", class_names=names, train=splits["train"], test={"test": splits["test"]}, family="cifar"
    ).validate()


def load_cifar100n_labels(path: str | Path) -> dict:
    """The CIFAR-N ``CIFAR-100_human.pt`` dict, loaded without executing pickled code."""
    import torch  # deferred: only this reader needs it

    path = require_path(Path(path), "CIFAR-100N label file", CIFAR100N_LAYOUT)
    core = getattr(np, "_core", None) or np.core
    allowed = [
        (core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (core.multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *{type(np.dtype(code)) for code in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8")},
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError/RuntimeError for bad or foreign files
        raise DatasetError(
            f"{path} could not be read as the CIFAR-N label file (a dict of numpy arrays saved with "
            f"torch.save): {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(data, dict) or "noisy_label" not in data or "clean_label" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(f"{path}: expected a dict with 'clean_label' and 'noisy_label', found {keys}.")
    return data


@with_class_names
def read_cifar100n(root: str | Path, human_file: str | Path | None = None) -> DatasetFiles:
    """CIFAR-100 whose training split carries the CIFAR-100N human noisy labels (≈40.2 % noise).

    ``human_file`` defaults to ``<root>/CIFAR-100_human.pt``. Its ``clean_label`` must equal the CIFAR
    fine labels, which proves the label file and the image order belong together.
    """
    files = read_cifar100(root)
    path = Path(human_file) if human_file is not None else Path(root) / "CIFAR-100_human.pt"
    data = load_cifar100n_labels(path)
    clean = np.asarray(data["clean_label"], dtype=np.int64).reshape(-1)
    noisy = np.asarray(data["noisy_label"], dtype=np.int64).reshape(-1)
    n = len(files.train)
    if clean.shape != (n,) or noisy.shape != (n,):
        raise DatasetError(f"{path}: holds {noisy.size} noisy labels, expected {n} (one per CIFAR-100 training image).")
    mismatch = int((clean != files.train.clean_labels).sum())
    if mismatch:
        raise DatasetError(
            f"{path}: its clean_label differs from the CIFAR-100 fine labels for {mismatch} of {n} images; "
            "expected the CIFAR-N file that matches the official cifar-100-python/train order."
        )
    files.train.noisy_labels = noisy
    files.name = "cifar100n"
    return files.validate()
