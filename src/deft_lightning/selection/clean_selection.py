"""The per-sample outcome of phase 1: what is handed to phase 2 and to the user's report."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_f1_score, binary_precision, binary_recall

from deft_lightning.errors import SelectionError
from deft_lightning.io import write_csv
from deft_lightning.selection.fingerprint import Fingerprint

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
    ``fingerprint`` says what the selection was made from (written as a constant last column);
    ``source`` is the file it was read from, for error messages.
    """

    index: np.ndarray
    given_label: np.ndarray
    predicted_label: np.ndarray
    p_clean: np.ndarray
    is_clean: np.ndarray
    true_label: np.ndarray | None = None
    sample_id: np.ndarray | None = None
    class_names: list[str] | None = None
    fingerprint: Fingerprint | None = None
    source: str | None = None

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
            where = f"{self.source}: " if self.source else ""
            raise SelectionError(f"{where}a clean selection must hold exactly one row per sample index")

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
            raise SelectionError(
                f"{self.source or 'the selection'} covers {len(self)} samples (indices "
                f"{_index_range(self.index)}) but the training set has {num_samples} (indices 0..{num_samples - 1}): "
                "was it made for another dataset, or is it truncated?"
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
        return (REPORT_COLUMNS + (["true_label"] if self.true_label is not None else [])
                + (["fingerprint"] if self.fingerprint is not None else []))

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
        if self.fingerprint is not None:
            table["fingerprint"] = np.full(len(self), self.fingerprint.token(), dtype=object)
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
        """Read a selection file; any damage (empty, header only, ragged, truncated, bad values) is a
        :class:`SelectionError` naming the file."""
        path = Path(path)
        if not path.is_file():
            raise SelectionError(
                f"no clean selection at {path}: run phase 1 first (phases=[detect]) or pass adapter.selection=PATH"
            )
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise SelectionError(f"{path} is not a readable selection file ({err}).") from None
        if not rows:
            raise SelectionError(
                f"{path} is empty; expected a selection.csv written by phase 1 (a header and one row per sample)."
            )
        header, body = rows[0], rows[1:]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise SelectionError(f"{path} is not a selection file: missing columns {missing} (header {header[:12]}).")
        if not body:
            raise SelectionError(f"{path} has a header but no rows; expected one row per training sample.")
        for line_no, row in enumerate(body, start=2):
            if len(row) != len(header):
                raise SelectionError(
                    f"{path}, line {line_no}: {len(row)} fields where the header has {len(header)} "
                    "(ragged or truncated file); rewrite it with phase 1."
                )
        data = dict(zip(header, zip(*body)))

        def column(name: str, dtype):
            try:
                return np.asarray(data[name], dtype=dtype)
            except ValueError:
                for line_no, value in enumerate(data[name], start=2):
                    try:
                        np.asarray(value, dtype=dtype)
                    except ValueError:
                        raise SelectionError(
                            f"{path}, line {line_no}: column {name!r} holds {value!r}, expected {np.dtype(dtype).name} "
                            "(damaged or truncated file)."
                        ) from None
                raise

        flags = column("is_clean", np.int64)
        if not np.isin(flags, (0, 1)).all():
            raise SelectionError(f"{path}: column 'is_clean' must hold 0 or 1.")
        fingerprint = None
        if "fingerprint" in data:
            tokens = set(data["fingerprint"])
            if len(tokens) != 1:
                raise SelectionError(
                    f"{path}: the fingerprint column holds {len(tokens)} different values; a selection is made from "
                    "one training set (were files concatenated?)."
                )
            fingerprint = Fingerprint.from_token(tokens.pop(), path)
        return cls(
            index=column("index", np.int64),
            given_label=column("given_label", np.int64),
            predicted_label=column("predicted_label", np.int64),
            p_clean=column("p_clean", np.float64),
            is_clean=flags.astype(bool),
            true_label=column("true_label", np.int64) if "true_label" in data else None,
            sample_id=np.asarray(data["sample_id"], dtype=str) if "sample_id" in data else None,
            class_names=_class_names_from_columns(data),
            fingerprint=fingerprint,
            source=str(path),
        )


def _index_range(index: np.ndarray) -> str:
    return f"{int(index.min())}..{int(index.max())}" if len(index) else "none"


def _class_names_from_columns(data: dict[str, tuple]) -> list[str] | None:
    """Rebuild the label → name list from the name columns (classes never seen keep their number)."""
    pairs = {}
    for label_column, name_column in (("given_label", "given_class"), ("predicted_label", "predicted_class")):
        if name_column in data:
            pairs.update(zip((int(v) for v in data[label_column]), data[name_column]))
    if not pairs:
        return None
    return [pairs.get(k, str(k)) for k in range(max(pairs) + 1)]
