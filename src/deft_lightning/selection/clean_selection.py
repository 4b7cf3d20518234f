"""The per-sample outcome of phase 1: what is handed to phase 2 and to the user's report."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_f1_score, binary_precision, binary_recall

from deft_lightning.io import write_csv

COLUMNS = ["index", "given_label", "predicted_label", "p_clean", "is_clean"]


@dataclass
class CleanSelection:
    """One row per training sample, sorted by dataset index."""

    index: np.ndarray
    given_label: np.ndarray
    predicted_label: np.ndarray
    p_clean: np.ndarray
    is_clean: np.ndarray
    true_label: np.ndarray | None = None

    def __post_init__(self) -> None:
        order = np.argsort(self.index, kind="stable")
        for name in ("index", "given_label", "predicted_label", "p_clean", "is_clean", "true_label"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value)[order])
        self.is_clean = self.is_clean.astype(bool)
        if len(np.unique(self.index)) != len(self.index):
            raise ValueError("a clean selection must hold exactly one row per sample index")

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
        return COLUMNS + (["true_label"] if self.true_label is not None else [])

    def write_csv(self, path: str | Path) -> None:
        def rows():
            for i in range(len(self)):
                row = [int(self.index[i]), int(self.given_label[i]), int(self.predicted_label[i]),
                       repr(float(self.p_clean[i])), int(self.is_clean[i])]
                if self.true_label is not None:
                    row.append(int(self.true_label[i]))
                yield row

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
        )
