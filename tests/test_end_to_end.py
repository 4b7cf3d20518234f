"""The real entry function on CPU with a composed config: files, metrics, selection rule, resume."""

import csv
import json
import math

import numpy as np

from conftest import compose
from deft_lightning.train import train


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_demo_runs_both_phases_and_writes_the_documented_files(demo_overrides, tmp_path):
    cfg = compose(demo_overrides)
    results = train(cfg)
    run = tmp_path / "run"
    for name in ("config.yaml", "detection/selection.csv", "detection/summary.json", "detection/pred_probs.npy",
                 "detection/detector_weights.pt", "adaptation/metrics.json",
                 "checkpoints/detection/last.ckpt", "checkpoints/adaptation/last.ckpt"):
        assert (run / name).is_file(), name

    rows = read_rows(run / "detection" / "selection.csv")
    assert list(rows[0]) == ["index", "sample_id", "given_label", "given_class", "predicted_label", "predicted_class",
                             "p_clean", "is_clean", "is_label_issue", "label_quality", "rank", "online_is_clean",
                             "true_label", "fingerprint"]
    assert [int(r["index"]) for r in rows] == list(range(200))
    # the saved mask is exactly p_clean > 0.5, row by row
    assert all(int(r["is_clean"]) == int(float(r["p_clean"]) > 0.5) for r in rows)

    summary = json.loads((run / "detection" / "summary.json").read_text())
    inference = summary["inference"]
    for key in ("clean_fraction", "precision", "recall", "f1"):
        assert math.isfinite(inference[key])
    # the summary's numbers are those of the CSV
    clean = np.array([int(r["is_clean"]) for r in rows], bool)
    truly_clean = np.array([r["given_label"] == r["true_label"] for r in rows])
    if clean.any():
        assert math.isclose(inference["precision"], (clean & truly_clean).sum() / clean.sum(), abs_tol=1e-5)
    assert math.isclose(inference["recall"], (clean & truly_clean).sum() / truly_clean.sum(), abs_tol=1e-5)

    metrics = json.loads((run / "adaptation" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["last"] <= metrics["test"]["best"] <= 1.0
    assert metrics["num_train_samples"] == int(clean.sum())
    assert results["adaptation"]["test"] == metrics["test"]


def test_adapt_alone_reuses_a_saved_selection(demo_overrides, tmp_path):
    train(compose(demo_overrides + ["phases=[detect]"]))
    selection = tmp_path / "run" / "detection" / "selection.csv"
    assert not (tmp_path / "run" / "adaptation").exists()
    other = [o.replace(str(tmp_path / "run"), str(tmp_path / "run2")) for o in demo_overrides]
    results = train(compose(other + ["phases=[adapt]", f"adapter.selection={selection}"]))
    clean = sum(int(r["is_clean"]) for r in read_rows(selection))
    assert results["adaptation"]["num_train_samples"] == clean
