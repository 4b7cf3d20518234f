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
# The ranking, when the class probabilities were known at writing time (see ``label_quality_scores``).
QUALITY_COLUMNS = ["label_quality", "rank"]
# The detector's own decisions during its last training epoch (the reference's mask), when it trained:
# 1 selected, 0 not, -1 not seen in that epoch. ``detector.selection_source=online`` hands these to phase 2.
ONLINE_COLUMN = "online_is_clean"
SCORED_SETS = ("precision/recall/f1: the clean set (is_clean against given == true label); "
               "issue_precision/issue_recall/issue_f1: the issue set (is_label_issue against given != true label)")


def label_quality_scores(p_clean: np.ndarray, given_label: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``label_quality = sqrt(p_clean · pred_probs[i, given_i])`` in [0, 1]; low = likely label issue.

    Two estimates of "the given label is right" from different parts of the detector: DEFT's ``p_clean``
    (the negative-prompt threshold at the given class) and the self-confidence (the positive-prompt
    classifier's probability of the given class against the other classes), combined by their geometric
    mean. Where ``p_clean`` already is the self-confidence (label_match, small_loss rank) it reduces to it.
    """
    p_clean = np.clip(np.asarray(p_clean, dtype=np.float64), 0.0, 1.0)
    given = np.asarray(given_label, dtype=np.int64)
    self_confidence = np.clip(np.asarray(pred_probs, dtype=np.float64)[np.arange(len(given)), given], 0.0, 1.0)
    return np.sqrt(p_clean * self_confidence)


def quality_rank(label_quality: np.ndarray, index: np.ndarray) -> np.ndarray:
    """1 = most likely label issue (lowest ``label_quality``; ties by dataset index)."""
    order = np.lexsort((np.asarray(index), np.asarray(label_quality)))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def set_metrics(selected: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Precision / recall / F1 of a boolean ``selected`` set against the boolean ``target`` set."""
    preds = torch.as_tensor(np.asarray(selected, dtype=bool)).long()
    target = torch.as_tensor(np.asarray(target, dtype=bool)).long()
    return {"precision": round(float(binary_precision(preds, target)), 6),
            "recall": round(float(binary_recall(preds, target)), 6),
            "f1": round(float(binary_f1_score(preds, target)), 6)}


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
    label_quality: np.ndarray | None = None  # see label_quality_scores; the rank follows from it
    online_is_clean: np.ndarray | None = None  # last training epoch's decisions: 1, 0, or -1 (not seen)

    def __post_init__(self) -> None:
        order = np.argsort(self.index, kind="stable")
        for name in ("index", "given_label", "predicted_label", "p_clean", "is_clean", "true_label", "sample_id",
                     "label_quality", "online_is_clean"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value)[order])
        self.is_clean = self.is_clean.astype(bool)
        if self.online_is_clean is not None:
            self.online_is_clean = self.online_is_clean.astype(np.int8)
        if self.sample_id is not None:
            self.sample_id = self.sample_id.astype(str)
        if len(np.unique(self.index)) != len(self.index):
            where = f"{self.source}: " if self.source else ""
            raise SelectionError(f"{where}a clean selection must hold exactly one row per sample index")

    @property
    def is_label_issue(self) -> np.ndarray:
        return ~self.is_clean

    @property
    def rank(self) -> np.ndarray | None:
        """1 = most likely label issue (lowest label_quality); None without a label_quality."""
        return None if self.label_quality is None else quality_rank(self.label_quality, self.index)

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

    def online_mask(self, num_samples: int) -> np.ndarray:
        """Boolean mask of the last training epoch's decisions (unseen samples count as not selected)."""
        if self.online_is_clean is None:
            raise SelectionError(
                f"{self.source or 'the selection'} has no {ONLINE_COLUMN!r} column: its detector did not train in "
                "that run (or the file predates the column); rerun phase 1 or use detector.selection_source=inference"
            )
        self.mask(num_samples)  # validates coverage
        return self.online_is_clean == 1

    def metrics(self) -> dict:
        """Clean fraction and, when the true labels are known, precision/recall/F1 of both sets.

        ``precision`` / ``recall`` / ``f1`` (the names older readers know) are those of the *clean set*
        (is_clean against given == true); ``issue_precision`` / ``issue_recall`` / ``issue_f1`` score the
        *issue set* (is_label_issue against given != true), which is what cleanlab's figures mean.
        """
        out = {"num_samples": int(len(self)), "num_clean": int(self.is_clean.sum()),
               "clean_fraction": float(self.is_clean.mean()) if len(self) else 0.0}
        if self.true_label is not None:
            truly_clean = self.given_label == self.true_label
            out.update(set_metrics(self.is_clean, truly_clean))
            out["actual_noise_rate"] = round(float(1.0 - truly_clean.mean()), 6) if len(self) else 0.0
            out.update({f"issue_{k}": v for k, v in set_metrics(self.is_label_issue, ~truly_clean).items()})
            out["scored_sets"] = SCORED_SETS
        return out

    # ----- files ------------------------------------------------------------------------------
    def columns(self) -> list[str]:
        return (REPORT_COLUMNS + (QUALITY_COLUMNS if self.label_quality is not None else [])
                + ([ONLINE_COLUMN] if self.online_is_clean is not None else [])
                + (["true_label"] if self.true_label is not None else [])
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
        if self.label_quality is not None:
            table["label_quality"] = self.label_quality.astype(np.float64)
            table["rank"] = self.rank
        if self.online_is_clean is not None:
            table[ONLINE_COLUMN] = self.online_is_clean.astype(np.int64)
        if self.true_label is not None:
            table["true_label"] = self.true_label.astype(np.int64)
        if self.fingerprint is not None:
            table["fingerprint"] = np.full(len(self), self.fingerprint.token(), dtype=object)
        return table

    def write_csv(self, path: str | Path) -> None:
        table = self.to_columns()
        columns = [table[name].tolist() for name in self.columns()]
        floats = {self.columns().index(name) for name in ("p_clean", "label_quality") if name in self.columns()}
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
        online = None
        if ONLINE_COLUMN in data:  # optional: files of detectors that did not train, and older files, lack it
            online = column(ONLINE_COLUMN, np.int64)
            if not np.isin(online, (-1, 0, 1)).all():
                raise SelectionError(f"{path}: column {ONLINE_COLUMN!r} must hold 1, 0 or -1 (not seen).")
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
            label_quality=column("label_quality", np.float64) if "label_quality" in data else None,
            online_is_clean=online,
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
