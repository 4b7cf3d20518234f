"""Near duplicates and outliers of a detection run with cleanlab's Datalab.

    python -m deft_lightning.detect ... report.features=true
    python examples/datalab_near_duplicates.py RUN/detection [--out datalab_issues.csv] [--label-issues]

Needs ``pip install "cleanlab[datalab]"`` (cleanlab plus Hugging Face ``datasets``). It reads
``selection.csv``, ``pred_probs.npy``, ``features.npy`` and ``classes.txt`` of the run. The labels go to
Datalab as a ``datasets.ClassLabel`` with the names in ``classes.txt`` order: Datalab sorts plain label
values (strings or integers) to number them, which would misalign them with the columns of
``pred_probs`` whenever the class names are not in alphabetical order or a class has no sample.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def detection_dir(path: Path) -> Path:
    """Accept a run directory or its ``detection/`` folder."""
    return path if (path / "selection.csv").is_file() else path / "detection"


def load_run(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    """The selection table (index order), pred_probs, features and the class order of a detection run."""
    out = detection_dir(path)
    missing = [name for name in ("selection.csv", "pred_probs.npy", "classes.txt") if not (out / name).is_file()]
    if missing:
        sys.exit(f"{out}: no {', '.join(missing)}; give a detection run directory (RUN or RUN/detection).")
    if not (out / "features.npy").is_file():
        sys.exit(f"{out}: no features.npy; rerun the detection with report.features=true.")
    table = pd.read_csv(out / "selection.csv").sort_values("index", kind="stable").reset_index(drop=True)
    pred_probs = np.load(out / "pred_probs.npy", allow_pickle=False)
    features = np.load(out / "features.npy", allow_pickle=False)
    classes = [line for line in (out / "classes.txt").read_text().splitlines() if line]
    if not len(table) == len(pred_probs) == len(features) or pred_probs.shape[1] != len(classes):
        sys.exit(f"{out}: selection.csv ({len(table)} rows), pred_probs.npy {pred_probs.shape}, features.npy "
                 f"{features.shape} and classes.txt ({len(classes)} names) do not match; they are from different runs.")
    return table, pred_probs, features, classes


def find_issues(table: pd.DataFrame, pred_probs: np.ndarray, features: np.ndarray, classes: list[str],
                label_issues: bool = False):
    """Run Datalab's near-duplicate and outlier checks (and its label check if asked); returns the Datalab."""
    try:
        from cleanlab import Datalab
        from datasets import ClassLabel, Dataset, Features, Value
    except ImportError as err:
        sys.exit(f"{err}: install Datalab's dependencies with  pip install \"cleanlab[datalab]\"")
    data = Dataset.from_dict(
        {"label": table["given_label"].astype(int).tolist(), "sample_id": table["sample_id"].astype(str).tolist()},
        features=Features({"label": ClassLabel(names=classes), "sample_id": Value("string")}),
    )
    lab = Datalab(data=data, label_name="label")
    issue_types = {"near_duplicate": {}, "outlier": {}, **({"label": {}} if label_issues else {})}
    lab.find_issues(features=features, pred_probs=pred_probs, issue_types=issue_types)
    return lab


def issue_table(lab, table: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per sample: our columns beside Datalab's flags and scores (``datalab_*``)."""
    keep = ["index", "sample_id", "given_class", "predicted_class", "p_clean", "is_label_issue", "label_quality", "rank"]
    if "true_label" in table:
        keep.append("true_label")
    ours = table[[c for c in keep if c in table]].copy()
    if "true_label" in ours:
        ours["true_class"] = [classes[int(i)] for i in ours.pop("true_label")]
    found = lab.get_issues().reset_index(drop=True)
    near = lab.get_issues("near_duplicate").reset_index(drop=True)
    # Datalab names rows by position; give the partners as dataset indices, as in selection.csv
    found["near_duplicate_of"] = [[int(table["index"].iat[r]) for r in rows] for rows in near["near_duplicate_sets"]]
    found["distance_to_nearest_neighbor"] = near["distance_to_nearest_neighbor"]
    return pd.concat([ours, found.add_prefix("datalab_")], axis=1)  # prefixed: Datalab has its own is_label_issue


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a detection run directory (RUN or RUN/detection)")
    parser.add_argument("--out", type=Path, help="also write the per-sample table to this CSV")
    parser.add_argument("--label-issues", action="store_true", help="also run Datalab's own label check")
    parser.add_argument("--show", type=int, default=10, help="rows printed per issue type")
    args = parser.parse_args(argv)

    table, pred_probs, features, classes = load_run(args.run)
    lab = find_issues(table, pred_probs, features, classes, args.label_issues)
    print(lab.get_issue_summary().to_string(index=False))
    rows = issue_table(lab, table, classes)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        duplicates = rows[rows["datalab_is_near_duplicate_issue"]].sort_values("datalab_near_duplicate_score")
        print(f"\nnear duplicates: {len(duplicates)} samples")
        print(duplicates[["index", "sample_id", "given_class", "datalab_near_duplicate_of",
                          "datalab_distance_to_nearest_neighbor", "is_label_issue"]].head(args.show).to_string(index=False))
        outliers = rows[rows["datalab_is_outlier_issue"]].sort_values("datalab_outlier_score")
        print(f"\noutliers: {len(outliers)} samples")
        print(outliers[["index", "sample_id", "given_class", "datalab_outlier_score", "is_label_issue", "label_quality"]]
              .head(args.show).to_string(index=False))
    if args.out:
        rows.to_csv(args.out, index=False)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
