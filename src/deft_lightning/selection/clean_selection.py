"""The per-sample outcome of phase 1: what is handed to phase 2 and to the user's report."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_f1_score, binary_precision, binary_recall

from deft_lightning.io import write_csv

# What every selection file must hold (older files have only these, plus true_label when known).
COLUMNS = ["index", "given_label", "predicted_label", "p_clean", "is_clean"]
# What we write: the required columns with human-readable ones beside them, cleanlab-style.
REPORT_COLUMNS = ["index", "sample_id", "given_label", "given_class", "predicted_label", "predicted_class",
                  "p_clean", "is_clean", "is_label_issue"]


@dataclass
class CleanSelection:
    """One row per training sample, sorted by dataset index.

    ``sample_id`` (a path or array index, for users to find the file) and ``class_names`` only make the
    files readable; without them ids default to the index and class names to the label number.
    """

    index: np.ndarray
    given_label: np.ndarray
    predicted_label: np.ndarray
    p_clean: np.ndarray
    is_clean: np.ndarray
    true_label: np.ndarray | None = None
    sample_id: np.ndarray | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        order = np.argsort(self.index, kind="stable")
        for name in ("index", "given_label", "predicted_label", "p_clean", "is_clean", "true_label", "sample_id"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value)[order])
        self.is_clean = self.is_clean.astype(bool)
        if self.sample_id is not None:
            self.sample_id = self.sample_id.astype(str)
        if len(np.unique(self.index)) != len(self.index):
            raise ValueError("a clean selection must hold exactly one row per sample index")

    @property
    def is_label_issue(self) -> np.ndarray:
        return ~self.is_clean

    def class_name(self, labels: np.ndarray) -> np.ndarray:
        """Names of ``labels`` (the label number as text where no name is known)."""
        names = list(self.class_names or [])
        return np.asarray([names[k] if 0 <= k < len(names) else str(k) for k in np.asarray(labels).tolist()], dtype=object)

    def __len__(self) -> int:
        return len(self.index)

    def mask(self, num_samples: int) -> np.ndarray:
        """Boolean clean mask over dataset indices 0..num_samples-1."""
        if len(self) != num_samples or not np.array_equal(self.index, np.arange(num_samples)):
            raise ValueError(
                f"the selection covers {len(self)} samples but the training set has {num_samples}: "
                "was it made for another dataset or noise setting?"
            )
        return self.is_clean.copy()

    def metrics(self) -> dict[str, float]:
        """Clean fraction, and global precision/recall/F1 of the mask when the true labels are known."""
        out = {"num_samples": int(len(self)), "num_clean": int(self.is_clean.sum()),
               "clean_fraction": float(self.is_clean.mean()) if len(self) else 0.0}
        if self.true_label is not None:
            preds = torch.as_tensor(self.is_clean)
            target = torch.as_tensor(self.given_label == self.true_label)
            out.update(
                precision=round(float(binary_precision(preds.long(), target.long())), 6),
                recall=round(float(binary_recall(preds.long(), target.long())), 6),
                f1=round(float(binary_f1_score(preds.long(), target.long())), 6),
                actual_noise_rate=round(float(1.0 - target.double().mean()), 6),
            )
        return out

    # ----- files ------------------------------------------------------------------------------
    def columns(self) -> list[str]:
        return REPORT_COLUMNS + (["true_label"] if self.true_label is not None else [])

    def to_columns(self) -> dict[str, np.ndarray]:
        """The table as named columns, in file order (shared by the CSV and Parquet writers)."""
        table = {
            "index": self.index.astype(np.int64),
            "sample_id": self.sample_id if self.sample_id is not None else self.index.astype(str),
            "given_label": self.given_label.astype(np.int64),
            "given_class": self.class_name(self.given_label),
            "predicted_label": self.predicted_label.astype(np.int64),
            "predicted_class": self.class_name(self.predicted_label),
            "p_clean": self.p_clean.astype(np.float64),
            "is_clean": self.is_clean,
            "is_label_issue": self.is_label_issue,
        }
        if self.true_label is not None:
            table["true_label"] = self.true_label.astype(np.int64)
        return table

    def write_csv(self, path: str | Path) -> None:
        table = self.to_columns()
        columns = [table[name].tolist() for name in self.columns()]
        floats = {self.columns().index("p_clean")}
        flags = {self.columns().index("is_clean"), self.columns().index("is_label_issue")}

        def rows():
            for row in zip(*columns):
                yield [repr(float(v)) if j in floats else int(v) if j in flags else v for j, v in enumerate(row)]

        write_csv(path, self.columns(), rows())

    @classmethod
    def read_csv(cls, path: str | Path) -> "CleanSelection":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no clean selection at {path}: run phase 1 first (phases=[detect]) or pass adapter.selection=PATH")
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            columns = list(zip(*reader)) or [()] * len(header)
        data = dict(zip(header, columns))
        missing = [c for c in COLUMNS if c not in data]
        if missing:
            raise ValueError(f"{path} is not a selection file: missing columns {missing}")
        as_int = lambda name: np.asarray(data[name], dtype=np.int64)  # noqa: E731
        return cls(
            index=as_int("index"),
            given_label=as_int("given_label"),
            predicted_label=as_int("predicted_label"),
            p_clean=np.asarray(data["p_clean"], dtype=np.float64),
            is_clean=as_int("is_clean").astype(bool),
            true_label=as_int("true_label") if "true_label" in data else None,
            sample_id=np.asarray(data["sample_id"], dtype=str) if "sample_id" in data else None,
            class_names=_class_names_from_columns(data),
        )


def _class_names_from_columns(data: dict[str, tuple]) -> list[str] | None:
    """Rebuild the label → name list from the name columns (classes never seen keep their number)."""
    pairs = {}
    for label_column, name_column in (("given_label", "given_class"), ("predicted_label", "predicted_class")):
        if name_column in data:
            pairs.update(zip((int(v) for v in data[label_column]), data[name_column]))
    if not pairs:
        return None
    return [pairs.get(k, str(k)) for k in range(max(pairs) + 1)]
