"""Clothing1M from its key/label list files; the 1M-entry lists are parsed with plain splits in seconds.

Training uses a class-balanced subset of the noisy list (reference: 1000 batches x 32 = 32,000 images,
drawn once per run); :func:`balanced_subset` is public so a DataModule can redraw it per epoch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetError, DatasetFiles, Split, require_path
from deft_lightning.data.class_names import with_class_names
from deft_lightning.data.readers._common import check_label_range, read_lines, read_text, require_files

CLOTHING1M_LAYOUT = """\
<root>/noisy_label_kv.txt        (images/<d>/<dd>/<name>.jpg <label 0-13>)
<root>/clean_label_kv.txt
<root>/noisy_train_key_list.txt  (images/<d>/<dd>/<name>.jpg)
<root>/clean_val_key_list.txt
<root>/clean_test_key_list.txt
<root>/category_names_eng.txt    (14 lines, one class name each)
<root>/images/<d>/<dd>/<name>.jpg"""


def _read_tokens(path: Path, what: str) -> list[str]:
    return read_text(path, what, CLOTHING1M_LAYOUT).split()


def read_label_kv(path: Path, what: str) -> dict[str, int]:
    """``<key> <label>`` lines -> {key: label}, one whole-file split (fast for 1M lines)."""
    tokens = _read_tokens(path, what)
    if len(tokens) % 2:
        raise DatasetError(f"{path}: expected '<image key> <label>' on every line; found an odd token count.")
    keys = tokens[0::2]
    try:
        labels = list(map(int, tokens[1::2]))
    except ValueError:
        bad = next(t for t in tokens[1::2] if not t.lstrip("-").isdigit())
        raise DatasetError(f"{path}: label {bad!r} is not an integer; expected '<image key> <label>' lines.") from None
    return dict(zip(keys, labels, strict=True))


def _labels_for(keys: list[str], kv: dict[str, int], list_file: Path, kv_file: Path) -> np.ndarray:
    try:
        return np.fromiter((kv[k] for k in keys), dtype=np.int64, count=len(keys))
    except KeyError as err:
        raise DatasetError(f"{list_file}: key {err.args[0]!r} has no label in {kv_file}.") from None


def balanced_subset(labels: np.ndarray, size: int, num_classes: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``size / num_classes`` random samples per class (all of a smaller class);
    the first ``size % num_classes`` classes take one more, so big pools give exactly ``size``.

    Drawn with a private generator, so the subset depends only on (labels, size, seed).
    """
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        quota = size // num_classes + (1 if c < size % num_classes else 0)
        picks.append(rng.permutation(pool)[:quota])
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


@with_class_names
def read_clothing1m(
    root: str | Path, subset_size: int | None = 32000, subset_seed: int = 0, with_val: bool = False
) -> DatasetFiles:
    """Clothing1M: noisy training list (balanced subset of ``subset_size``; None = all) and clean test.

    Training labels are the web labels (``noisy_labels``); clean labels are attached only if the clean
    key/label file knows every chosen training image, which is never the case for the real data.
    ``with_val`` adds the clean validation list as a second test set named ``val``.
    """
    root = require_path(Path(root), "Dataset root", CLOTHING1M_LAYOUT)
    names = read_lines(root / "category_names_eng.txt", "Clothing1M category names", CLOTHING1M_LAYOUT)
    num_classes = len(names)
    noisy_file, clean_file = root / "noisy_label_kv.txt", root / "clean_label_kv.txt"
    noisy_kv = read_label_kv(noisy_file, "Clothing1M noisy labels")
    clean_kv = read_label_kv(clean_file, "Clothing1M clean labels")

    train_file = root / "noisy_train_key_list.txt"
    train_keys = _read_tokens(train_file, "Clothing1M noisy training list")
    train_noisy = _labels_for(train_keys, noisy_kv, train_file, noisy_file)
    check_label_range(train_noisy, 0, num_classes, noisy_file, train_keys)
    prefix = str(root) + "/"
    # every listed image, not only the subset drawn below (a redraw may pick any of them)
    require_files([prefix + k for k in train_keys], "Clothing1M images", train_file, CLOTHING1M_LAYOUT)
    if subset_size is not None:
        if int(subset_size) <= 0:
            raise DatasetError(f"subset_size={subset_size} must be a positive number of images, or null for all.")
        keep = balanced_subset(train_noisy, int(subset_size), num_classes, subset_seed)
        train_keys = [train_keys[i] for i in keep]
        train_noisy = train_noisy[keep]
    known = all(k in clean_kv for k in train_keys)
    train_clean = _labels_for(train_keys, clean_kv, train_file, clean_file) if known and train_keys else None

    def paths(keys: list[str]) -> list[str]:
        return [prefix + k for k in keys]

    def clean_split(list_name: str, what: str) -> Split:
        file = root / list_name
        keys = _read_tokens(file, what)
        labels = _labels_for(keys, clean_kv, file, clean_file)
        check_label_range(labels, 0, num_classes, clean_file, keys)
        require_files(paths(keys), "Clothing1M images", file, CLOTHING1M_LAYOUT)
        return Split(clean_labels=labels, paths=paths(keys), sample_ids=keys)

    test = {"test": clean_split("clean_test_key_list.txt", "Clothing1M clean test list")}
    if with_val:
        test["val"] = clean_split("clean_val_key_list.txt", "Clothing1M clean validation list")
    train = Split(clean_labels=train_clean, noisy_labels=train_noisy, paths=paths(train_keys), sample_ids=train_keys)
    return DatasetFiles(name="clothing1m", class_names=names, train=train, test=test, family="clothing1m").validate()
