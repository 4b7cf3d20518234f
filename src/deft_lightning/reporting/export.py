"""The cleaned dataset as files a user can train on: a ``path,label`` CSV of the kept samples.

The CSV is in the layout ``dataset=csv`` reads (absolute paths, class names as labels, the class list
fixed by ``classes.txt`` beside it), so a cleaned dataset trains without edits. Optionally the
confidently relabelled samples join it with their predicted label, and a folder of symbolic links in
imagefolder layout (``train/<class>/<file>``) mirrors it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deft_lightning.data.base import Split
from deft_lightning.errors import ConfigError
from deft_lightning.io import write_csv, write_text
from deft_lightning.selection.clean_selection import CleanSelection

EXPORT_FILE = "clean_dataset.csv"


def export_clean_dataset(
    out_dir: str | Path,
    selection: CleanSelection,
    split: Split,
    class_names: list[str],
    pred_probs: np.ndarray | None = None,
    relabel_threshold: float | None = None,
    symlink_dir: str | Path | None = None,
    test_splits: dict[str, Split] | None = None,
) -> dict:
    """Write ``<out_dir>/clean_dataset.csv`` (+ ``classes.txt``); return counts for the summary.

    ``relabel_threshold``: also keep a label issue whose predicted class has probability at least this
    (in ``pred_probs``), labelled with that class (a ``relabelled`` column says which rows).
    ``test_splits`` with image files are copied in unchanged (``split`` = their name), so that the
    exported CSV is a whole dataset: the cleaned training set and the original test sets.
    """
    if split.paths is None:
        raise ConfigError(
            "export: this dataset is held in memory (no image files), so there is no path,label CSV to write; "
            "the selection table and pred_probs.npy hold the result."
        )
    out_dir = Path(out_dir)
    keep = selection.is_clean.copy()
    label = selection.given_label.copy()
    relabelled = np.zeros(len(selection), dtype=bool)
    if relabel_threshold is not None:
        if pred_probs is None:
            raise ConfigError("export.relabel_threshold needs pred_probs (the detector's class probabilities).")
        if not 0.0 < float(relabel_threshold) <= 1.0:
            raise ConfigError(f"export.relabel_threshold={relabel_threshold} must be in (0, 1].")
        confident = pred_probs[selection.index, selection.predicted_label] >= float(relabel_threshold)
        relabelled = ~keep & confident & (selection.predicted_label != selection.given_label)
        label[relabelled] = selection.predicted_label[relabelled]
        keep |= relabelled
    rows = [[str(Path(split.paths[i]).resolve()), class_names[label[k]], "train", int(relabelled[k])]
            for k, i in enumerate(selection.index.tolist()) if keep[k]]
    tests = [[str(Path(path).resolve()), class_names[int(y)], name, 0]
             for name, test in (test_splits or {}).items() if test.paths is not None
             for path, y in zip(test.paths, test.best_labels, strict=True)]
    write_csv(out_dir / EXPORT_FILE, ["path", "label", "split", "relabelled"], rows + tests)
    write_text(out_dir / "classes.txt", "".join(f"{name}\n" for name in class_names))
    counts = {"file": str(out_dir / EXPORT_FILE), "kept": int(keep.sum()), "relabelled": int(relabelled.sum()),
              "dropped": int((~keep).sum())}
    if symlink_dir is not None:
        counts["symlink_dir"] = str(_link_tree(Path(symlink_dir), rows))
    return counts


def _link_tree(root: Path, rows: list[list]) -> Path:
    """``root/train/<class>/<index>_<file name>`` → the original image, for imagefolder readers."""
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"export.symlink_dir={root} is not empty: give a new folder, so nothing is overwritten.")
    for k, (path, name, _, _) in enumerate(rows):
        link = root / "train" / name / f"{k:07d}_{Path(path).name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, link)
    return root
