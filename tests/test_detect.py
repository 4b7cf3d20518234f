"""``python -m deft_lightning.detect``: the label-issue report and the reusable detector artefact (issue 4)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compose
from deft_lightning.detect import detect
from deft_lightning.errors import ArtifactError
from deft_lightning.selection.clean_selection import CleanSelection

COLUMNS = ["index", "sample_id", "given_label", "given_class", "predicted_label", "predicted_class",
           "p_clean", "is_clean", "is_label_issue", "label_quality", "rank", "online_is_clean", "true_label",
           "fingerprint"]
CLASS_NAMES = ["red", "green", "blue", "yellow", "purple"]  # dataset=synthetic, 5 classes


def overrides(root, name: str, *extra: str) -> list[str]:
    return ["experiment=demo", f"paths.output_dir={root / name}", f"paths.cache_dir={root / 'cache'}",
            "callbacks.progress_bar=false", "detector.epochs=2", *extra]


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def deft_run(tmp_path_factory):
    """One DEFT detection run on the demo, shared by the report tests."""
    root = tmp_path_factory.mktemp("detect")
    results = detect(compose(overrides(root, "run"), config_name="detect"))
    return root, root / "run" / "detection", results["detection"]


def test_report_files_exist(deft_run):
    _, out, _ = deft_run
    for name in ("selection.csv", "selection.parquet", "pred_probs.npy", "summary.json", "suspects.png",
                 "report.md", "detector_weights.pt", "online_mask.npy"):
        assert (out / name).is_file(), name


def test_selection_csv_columns_and_flags(deft_run):
    _, out, _ = deft_run
    rows = read_rows(out / "selection.csv")
    assert list(rows[0]) == COLUMNS
    assert [int(r["index"]) for r in rows] == list(range(200))
    for r in rows:
        assert int(r["is_label_issue"]) == 1 - int(r["is_clean"])
        assert int(r["is_clean"]) == int(float(r["p_clean"]) > 0.5)  # DEFT's rule
        assert r["given_class"] == CLASS_NAMES[int(r["given_label"])]
        assert r["predicted_class"] == CLASS_NAMES[int(r["predicted_label"])]
        assert r["sample_id"] == r["index"]  # in-memory dataset: the array index
    parquet = pytest.importorskip("pyarrow.parquet").read_table(out / "selection.parquet").to_pydict()
    assert list(parquet) == COLUMNS
    assert parquet["p_clean"] == [float(r["p_clean"]) for r in rows]
    assert parquet["given_class"] == [r["given_class"] for r in rows]


def test_summary_agrees_with_the_csv(deft_run):
    _, out, returned = deft_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(returned))
    rows = read_rows(out / "selection.csv")
    clean = np.array([int(r["is_clean"]) for r in rows], bool)
    given = np.array([int(r["given_label"]) for r in rows])
    truly_clean = given == np.array([int(r["true_label"]) for r in rows])
    tp = (clean & truly_clean).sum()
    precision = tp / clean.sum() if clean.any() else 0.0
    recall = tp / truly_clean.sum()
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    inference = summary["inference"]
    assert inference["precision"] == pytest.approx(precision, abs=1e-6)
    assert inference["recall"] == pytest.approx(recall, abs=1e-6)
    assert inference["f1"] == pytest.approx(f1, abs=1e-6)
    assert summary["counts"] == {"num_samples": 200, "num_clean": int(clean.sum()), "num_label_issues": int((~clean).sum())}
    for entry in summary["per_class"]:
        of_class = given == entry["label"]
        assert entry["class"] == CLASS_NAMES[entry["label"]]
        assert entry["num_samples"] == of_class.sum() and entry["num_clean"] == (clean & of_class).sum()
        assert entry["clean_fraction"] == pytest.approx(clean[of_class].mean(), abs=1e-6)
    # both selections are logged so they can be compared (SPEC §2): the inference pass and the last epoch
    for source in ("inference", "online_last_epoch"):
        assert all(math.isfinite(summary[source][k]) for k in ("precision", "recall", "f1"))
    assert summary["selection_source"] == "inference" and summary["detector"] == "deft"


def test_pred_probs_are_the_classifier_probabilities(deft_run):
    _, out, _ = deft_run
    probs = np.load(out / "pred_probs.npy")
    rows = read_rows(out / "selection.csv")
    assert probs.shape == (200, len(CLASS_NAMES))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(axis=1), [int(r["predicted_label"]) for r in rows])


def test_suspects_png_and_report_md(deft_run):
    _, out, summary = deft_run
    with Image.open(out / "suspects.png") as image:
        image.verify()
    with Image.open(out / "suspects.png") as image:
        assert image.format == "PNG" and min(image.size) > 100
    rows = read_rows(out / "selection.csv")
    # the flagged issues are listed by rank (lowest label_quality first; issue 15 changed it from p_clean)
    issues = sorted((int(r["rank"]), int(r["index"])) for r in rows if r["is_label_issue"] == "1")
    report = (out / "report.md").read_text()
    assert "suspects.png" in report and f"{summary['counts']['num_label_issues']}" in report
    first_row = next(line for line in report.splitlines() if line.startswith(f"| {issues[0][0]} |"))
    assert first_row.startswith(f"| {issues[0][0]} | {issues[0][1]} |")  # the most likely issue heads the table
    assert "p_clean_hist.png" in report and "in-sample" in report and "label_quality = sqrt" in report


def test_saved_detector_reloads_and_reproduces_p_clean(deft_run):
    root, out, _ = deft_run
    results = detect(compose(overrides(root, "reload", f"detector.weights={out / 'detector_weights.pt'}"),
                             config_name="detect"))
    first = CleanSelection.read_csv(out / "selection.csv")
    again = CleanSelection.read_csv(root / "reload" / "detection" / "selection.csv")
    assert np.abs(first.p_clean - again.p_clean).max() <= 1e-6
    assert np.array_equal(first.is_clean, again.is_clean)
    assert np.array_equal(np.load(out / "pred_probs.npy"), np.load(root / "reload" / "detection" / "pred_probs.npy"))
    assert results["detection"]["detector_weights_from"] == str(out / "detector_weights.pt")
    assert not (root / "reload" / "detection" / "online_mask.npy").exists()  # no training happened
    saved = torch.load(out / "detector_weights.pt", weights_only=True)
    assert set(saved["state_dict"]) == {"visual_encoder.prompts", "prompt_learner.pos_ctx", "prompt_learner.neg_ctx"}


def test_an_artefact_that_does_not_fit_is_refused(deft_run, tmp_path):
    from deft_lightning.pipeline.detection import build_detector, load_detector_weights, read_detector_weights

    _, out, _ = deft_run
    artefact = read_detector_weights(out / "detector_weights.pt")
    cfg = compose(overrides(tmp_path, "x", "detector.prompt.class_specific=true"), config_name="detect")
    module, _ = build_detector(cfg, CLASS_NAMES)  # contexts (C, n_ctx, D), the artefact's are (n_ctx, D)
    with pytest.raises(ArtifactError, match="does not fit"):
        load_detector_weights(module, artefact, out / "detector_weights.pt")
    with pytest.raises(ArtifactError, match="no such file"):
        read_detector_weights(tmp_path / "missing.pt")


def test_selection_files_old_and_new_read_back(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("index,given_label,predicted_label,p_clean,is_clean\n1,2,2,0.9,1\n0,1,0,0.2,0\n")
    selection = CleanSelection.read_csv(old)
    assert selection.index.tolist() == [0, 1] and selection.mask(2).tolist() == [False, True]
    assert selection.true_label is None and selection.sample_id is None

    selection = CleanSelection(np.arange(3), np.array([0, 1, 2]), np.array([0, 2, 2]), np.array([0.9, 0.1, 0.7]),
                               np.array([True, False, True]), np.array([0, 0, 2]),
                               sample_id=np.array(["a.jpg", "b.jpg", "c.jpg"]), class_names=["cat", "dog", "fox"])
    selection.write_csv(tmp_path / "new.csv")
    back = CleanSelection.read_csv(tmp_path / "new.csv")
    assert back.sample_id.tolist() == ["a.jpg", "b.jpg", "c.jpg"] and back.class_names == ["cat", "dog", "fox"]
    assert np.array_equal(back.p_clean, selection.p_clean) and np.array_equal(back.true_label, selection.true_label)
    assert list(read_rows(tmp_path / "new.csv")[1].values()) == ["1", "b.jpg", "1", "dog", "2", "fox", "0.1", "0", "1", "0"]


def test_detect_command_on_an_image_folder(tmp_path):
    """The real command line: Hydra's run dir for detect, image files in the gallery, relative sample ids."""
    from fixtures.datasets import make_imagefolder

    root = make_imagefolder(tmp_path / "data", per_class=4)
    result = subprocess.run(
        [sys.executable, "-m", "deft_lightning.detect", "experiment=demo", "dataset=imagefolder",
         f"dataset.root={root}", "dataset.batch_size=4", "detector=label_match", "noise.ratio=0.25",
         f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'cache'}", "callbacks.progress_bar=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = list((tmp_path / "logs" / "detect").glob("imagefolder-sym0.25-label_match-deft-tiny-clip/*/detection/report.md"))  # the folder names the model that ran
    assert len(reports) == 1, result.stdout[-2000:]
    out = reports[0].parent
    rows = read_rows(out / "selection.csv")
    assert len(rows) == 12 and rows[0]["sample_id"] == "train/cat/cat_0.jpg" and rows[0]["given_class"] in ("cat", "dog", "fox")
    with Image.open(out / "suspects.png") as image:
        image.verify()
    assert str(out / "report.md") in result.stdout


def test_report_without_true_labels_or_label_issues(tmp_path):
    """Real-noise data without clean labels: no precision/recall, no truth column; an empty gallery still renders."""
    from deft_lightning.reporting.report import write_report

    def selection(is_clean):
        return CleanSelection(np.arange(4), np.array([0, 1, 1, 0]), np.array([0, 0, 1, 0]), np.array([0.8, 0.3, 0.6, 0.9]),
                              np.asarray(is_clean), class_names=["shirt", "coat"])

    for name, flags in (("some", [True, False, True, True]), ("none", [True] * 4)):
        out = tmp_path / name
        summary = write_report(out, selection(flags), {"detector": "deft"}, split=None, num_classes=2)
        assert "precision" not in summary.get("inference", {}) and summary["counts"]["num_samples"] == 4
        assert json.loads((out / "summary.json").read_text())["per_class"][1]["class"] == "coat"
        with Image.open(out / "suspects.png") as image:
            image.verify()
        report = (out / "report.md").read_text()
        assert "| true |" not in report
        assert ("No label issues found." in report) == (name == "none")


def test_detect_on_a_folder_with_noise_none_keeps_the_labels_and_claims_no_truth(tmp_path):
    """noise=none: the folder labels are what is examined, not ground truth (issue 14, item 1)."""
    from fixtures.datasets import make_imagefolder

    root = make_imagefolder(tmp_path / "data", per_class=4)
    cfg = compose(["experiment=demo", "dataset=imagefolder", f"dataset.root={root}", "dataset.batch_size=4",
                   "noise=none", "detector=label_match", "detector.clip.model_name=deft-tiny-clip",
                   "detector.clip.pretrained=null", f"paths.output_dir={tmp_path / 'run'}",
                   f"paths.cache_dir={tmp_path / 'cache'}", "callbacks.progress_bar=false", "logger=none"],
                  config_name="detect")
    summary = detect(cfg)["detection"]
    out = tmp_path / "run" / "detection"
    rows = read_rows(out / "selection.csv")
    assert len(rows) == 12 and "true_label" not in rows[0]
    folder_names = ["cat", "dog", "fox"]
    for r in rows:  # train/<class>/<file>: the given label is the folder's, unchanged
        folder = r["sample_id"].split("/")[1]
        assert r["given_class"] == folder and int(r["given_label"]) == folder_names.index(folder)
    written = json.loads((out / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary))
    for section in ("inference", "online_last_epoch"):
        assert not {"precision", "recall", "f1", "actual_noise_rate"} & set(written.get(section) or {})
    assert written["true_labels_known"] is False and written["noise"]["true_labels_known"] is False
    assert written["noise"]["realised_rate"] is None and written["fingerprint"]["noise_mode"] == "none"
    assert [c["class"] for c in written["per_class"]] == folder_names
    report = (out / "report.md").read_text()
    assert "true labels: unknown" in report and "against the true labels" not in report
    assert "precision" not in report.replace("no precision or recall", "") and "| true |" not in report
    assert "## Class health: estimated clean fraction per given class" in report and all(f"| {name} |" in report for name in folder_names)
    assert "## Most likely label issues" in report or "No label issues found." in report
