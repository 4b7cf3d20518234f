"""The cleaned-dataset export: a path,label CSV of the kept samples that ``dataset=csv`` trains on as it is."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from conftest import compose
from deft_lightning.data.base import Split
from deft_lightning.errors import ConfigError
from deft_lightning.reporting.export import export_clean_dataset
from deft_lightning.selection.clean_selection import CleanSelection
from deft_lightning.train import train
from fixtures.datasets import make_imagefolder

NAMES = ["cat", "dog", "fox"]


def _selection(n: int) -> CleanSelection:
    given = np.arange(n) % 3
    predicted = given.copy()
    predicted[1::4] = (given[1::4] + 1) % 3  # every fourth sample (from 1) is predicted as another class
    is_clean = predicted == given
    return CleanSelection(np.arange(n), given, predicted, is_clean.astype(float), is_clean, class_names=NAMES)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_keeps_clean_samples_and_optionally_relabels(tmp_path):
    paths = [str(tmp_path / f"{i}.png") for i in range(8)]
    split = Split(clean_labels=np.arange(8) % 3, paths=paths)
    selection = _selection(8)
    probs = np.full((8, 3), 0.1)
    probs[np.arange(8), selection.predicted_label] = 0.8
    probs[5] = [0.3, 0.3, 0.4]  # an issue whose predicted class is not confident: dropped, not relabelled

    counts = export_clean_dataset(tmp_path / "plain", selection, split, NAMES)
    rows = _rows(tmp_path / "plain" / "clean_dataset.csv")
    assert counts["kept"] == 6 and [r["path"] for r in rows] == [paths[i] for i in (0, 2, 3, 4, 6, 7)]
    assert all(r["label"] == NAMES[int(i) % 3] and r["relabelled"] == "0" for r, i in zip(rows, (0, 2, 3, 4, 6, 7)))
    assert (tmp_path / "plain" / "classes.txt").read_text().split() == NAMES

    counts = export_clean_dataset(tmp_path / "relabel", selection, split, NAMES, pred_probs=probs,
                                  relabel_threshold=0.5, symlink_dir=tmp_path / "links")
    rows = {r["path"]: r for r in _rows(tmp_path / "relabel" / "clean_dataset.csv")}
    assert counts["relabelled"] == 1 and rows[paths[1]]["label"] == "fox" and rows[paths[1]]["relabelled"] == "1"
    assert paths[5] not in rows
    links = sorted((tmp_path / "links" / "train").rglob("*.png"))
    assert len(links) == 7 and all(os.path.realpath(link) in rows for link in links)
    with pytest.raises(ConfigError, match="not empty"):
        export_clean_dataset(tmp_path / "again", selection, split, NAMES, symlink_dir=tmp_path / "links")


def test_exported_csv_trains_with_dataset_csv_without_edits(tmp_path):
    root = make_imagefolder(tmp_path / "data", per_class=4, test_per_class=2)
    files = __import__("deft_lightning.data.readers.user", fromlist=["read_imagefolder"]).read_imagefolder(root)
    selection = _selection(len(files.train))
    export_clean_dataset(tmp_path / "export", selection, files.train, files.class_names, test_splits=files.test)
    cfg = compose(["experiment=demo", "dataset=csv", f"dataset.root={tmp_path / 'export' / 'clean_dataset.csv'}",
                   "noise=none", "dataset.batch_size=4", "debug=fast", f"paths.output_dir={tmp_path / 'run'}",
                   f"paths.cache_dir={tmp_path / 'cache'}", "callbacks.progress_bar=false"])
    results = train(cfg)
    kept = int(selection.is_clean.sum())
    assert results["detection"]["counts"]["num_samples"] == kept  # the exported training set, nothing else
    assert results["adaptation"]["num_train_samples"] <= kept and 0.0 <= results["adaptation"]["test"]["best"] <= 1.0


def test_the_exported_csv_reads_back_in_its_own_class_order_not_sorted(tmp_path):
    """classes.txt beside the CSV fixes the class order (the reader would sort the names otherwise)."""
    from deft_lightning.data.readers.user import read_csv

    names = ["zebra", "ant", "moth"]  # not alphabetical
    paths = [str(tmp_path / f"{i}.png") for i in range(6)]
    for path in paths:
        __import__("PIL.Image", fromlist=["Image"]).new("RGB", (8, 8)).save(path)
    given = np.arange(6) % 3
    selection = CleanSelection(np.arange(6), given, given, np.ones(6), np.ones(6, bool), class_names=names)
    export_clean_dataset(tmp_path / "export", selection, Split(paths=paths, clean_labels=given), names)
    files = read_csv(tmp_path / "export" / "clean_dataset.csv")
    assert files.class_names == names
    assert list(files.train.best_labels) == list(given)  # the same label numbers as the run that exported it
    (tmp_path / "export" / "classes.txt").unlink()
    assert read_csv(tmp_path / "export" / "clean_dataset.csv").class_names == sorted(names)  # without it: sorted


def test_detect_exports_image_file_datasets_and_notes_the_skip_for_in_memory_ones(tmp_path):
    from deft_lightning.detect import detect

    root = make_imagefolder(tmp_path / "data", per_class=4, test_per_class=2)
    common = ["experiment=demo", "noise=none", "detector=label_match", "callbacks.progress_bar=false",
              f"paths.cache_dir={tmp_path / 'cache'}"]
    summary = detect(compose(common + ["dataset=imagefolder", f"dataset.root={root}",
                                       "report.export.relabel_threshold=0.2",
                                       f"report.export.symlink_dir={tmp_path / 'links'}",
                                       f"paths.output_dir={tmp_path / 'files'}"], config_name="detect"))["detection"]
    export = summary["export"]
    rows = _rows(tmp_path / "files" / "detection" / "clean_dataset.csv")
    train_rows = [r for r in rows if r["split"] == "train"]
    assert export["kept"] == len(train_rows) == summary["counts"]["num_clean"] + export["relabelled"]
    assert export["symlink_dir"] == str(tmp_path / "links") and (tmp_path / "links" / "train").is_dir()
    assert "## Cleaned dataset" in (tmp_path / "files" / "detection" / "report.md").read_text()
    memory = detect(compose(common + [f"paths.output_dir={tmp_path / 'memory'}"], config_name="detect"))["detection"]
    assert "held in memory" in memory["export"]["skipped"]
    assert not (tmp_path / "memory" / "detection" / "clean_dataset.csv").exists()
