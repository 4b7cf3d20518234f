"""The contract between dataset readers and the rest of the framework.

A reader turns files in a dataset's official layout into a :class:`DatasetFiles`: class names, and per
split either an in-memory uint8 image array or a sorted list of image paths, with labels. Readers never
apply noise and never build transforms; they only describe what is on disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deft_lightning.errors import UserError


class DatasetError(UserError, RuntimeError):
    """Bad or missing dataset input. Its message is shown to the user as is, without a traceback.

    Raised in a DataLoader worker (an image that fails to decode mid-epoch), it reaches the main process
    re-created from a message holding the worker's traceback; the constructor keeps only the original
    message, so the user still reads one paragraph naming the file.
    """

    def __init__(self, *args) -> None:
        text = args[0] if len(args) == 1 and isinstance(args[0], str) else ""
        if text.startswith("Caught ") and "Original Traceback" in text:
            args = (_worker_message(text, type(self).__name__),)
        super().__init__(*args)


def _worker_message(text: str, class_name: str) -> str:
    """The original message inside torch's ``Caught X in DataLoader worker process N. Original Traceback ...``."""
    where = text.split("\n", 1)[0].removeprefix(f"Caught {class_name} ").rstrip(".")
    matches = list(re.finditer(rf"^(?:[\w.]+\.)?{re.escape(class_name)}: ", text, re.M))
    if not matches:
        return text
    message = text[matches[-1].end():].strip()
    return f"{message}\n(raised {where})" if where else message


@dataclass
class Split:
    """One split of a dataset as its files describe it.

    ``clean_labels`` are the labels the files give as correct (None when unknown, e.g. Clothing1M's noisy
    training set); ``noisy_labels`` are a dataset's own real noisy labels (CIFAR-100N, Clothing1M,
    WebVision), used by ``noise=real``.
    """

    clean_labels: np.ndarray | None = None
    noisy_labels: np.ndarray | None = None
    images: np.ndarray | None = None  # (N, H, W, 3) uint8, for datasets held in memory
    paths: list[str] | None = None  # absolute image paths otherwise
    sample_ids: list[str] | None = None  # human-readable id per sample: relative path or array index

    def __post_init__(self) -> None:
        if (self.images is None) == (self.paths is None):
            raise ValueError("a Split holds either in-memory images or image paths, exactly one of them")
        n = len(self)
        for name in ("clean_labels", "noisy_labels"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.int64)
                if value.shape != (n,):
                    raise ValueError(f"{name} has shape {value.shape}, expected ({n},)")
                setattr(self, name, value)
        if self.clean_labels is None and self.noisy_labels is None:
            raise ValueError("a Split needs clean_labels, noisy_labels or both")
        if self.sample_ids is None:
            self.sample_ids = [str(i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.paths)

    @property
    def best_labels(self) -> np.ndarray:
        """Clean labels when known, else the dataset's noisy labels (what a test split evaluates on)."""
        return self.clean_labels if self.clean_labels is not None else self.noisy_labels

    def subset(self, indices: np.ndarray) -> "Split":
        indices = np.asarray(indices, dtype=np.int64)
        pick = lambda a: None if a is None else a[indices]  # noqa: E731
        return Split(
            clean_labels=pick(self.clean_labels),
            noisy_labels=pick(self.noisy_labels),
            images=pick(self.images),
            paths=None if self.paths is None else [self.paths[i] for i in indices],
            sample_ids=[self.sample_ids[i] for i in indices],
        )


@dataclass
class DatasetFiles:
    """Everything a reader found: class names, the training split and one or more test splits.

    ``family`` picks the transform recipe (SPEC §5): ``cifar``, ``fine_grained``, ``clothing1m``,
    ``webvision`` or ``generic``. The first entry of ``test`` is the primary test set.
    """

    name: str
    class_names: list[str]
    train: Split
    test: dict[str, Split] = field(default_factory=dict)
    family: str = "generic"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def validate(self) -> "DatasetFiles":
        """Check labels are within [0, C); raise a DatasetError naming the split otherwise."""
        c = self.num_classes
        for split_name, split in [("train", self.train), *self.test.items()]:
            for kind in ("clean_labels", "noisy_labels"):
                labels = getattr(split, kind)
                if labels is None or len(labels) == 0:
                    continue
                bad = np.flatnonzero((labels < 0) | (labels >= c))
                if len(bad):
                    i = int(bad[0])
                    raise DatasetError(
                        f"{self.name}: {split_name} sample {split.sample_ids[i]!r} has label {int(labels[i])} "
                        f"({kind}), expected an integer in [0, {c}) for {c} classes."
                    )
            if len(split) == 0:
                raise DatasetError(f"{self.name}: the {split_name} split has no samples.")
        return self


def require_path(path: Path, what: str, layout: str) -> Path:
    """Return ``path`` if it exists, else raise a DatasetError naming it and the expected layout."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{what} not found: expected {path}.\nExpected layout:\n{layout.rstrip()}")
    return path
