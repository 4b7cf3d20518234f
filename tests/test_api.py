"""The Python API (``deft_lightning.find_label_issues``): the same run and files as ``detect``, from Python."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import deft_lightning
from cli_runs import FAST_DEMO, run_cli
from deft_lightning.data.base import DatasetError
from deft_lightning.errors import UserError

CLASSES = ("cat", "dog", "fox")
# a trained DEFT detector (one epoch), so that the values compared depend on training, not only zero-shot
DETECTOR = FAST_DEMO + ["detector.epochs=1", "dataset.batch_size=4"]
VALUE_COLUMNS = ["index", "given_label", "predicted_label", "p_clean", "is_clean", "is_label_issue"]


def _png_folder(root, per_class: int = 4):
    """``train/<class>/*.png`` (lossless, so images read back from disk equal the in-memory arrays)."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            (root / "train" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / "train" / name / f"{name}_{i}.png")
            images.append(pixels)
            labels.append(name)
    return root, np.stack(images), labels


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """The real ``python -m deft_lightning.detect`` on a PNG image folder, labels taken as given."""
    tmp = tmp_path_factory.mktemp("api")
    root, images, labels = _png_folder(tmp / "data")
    run_dir = tmp / "cli"
    run_cli(*DETECTOR, "dataset=imagefolder", f"dataset.root={root}", "noise=none",
            f"paths.cache_dir={tmp / 'cache'}", f"hydra.run.dir={run_dir}", module="deft_lightning.detect")
    return tmp, root, images, labels, pd.read_csv(run_dir / "detection" / "selection.csv"), np.load(
        run_dir / "detection" / "pred_probs.npy")


def _same_values(result, selection: pd.DataFrame, pred_probs: np.ndarray) -> None:
    pd.testing.assert_frame_equal(result.issues[VALUE_COLUMNS], selection[VALUE_COLUMNS], check_exact=False, atol=1e-6)
    np.testing.assert_allclose(result.pred_probs, pred_probs, atol=1e-6)


def test_find_label_issues_on_an_image_folder_equals_the_cli(cli_run):
    tmp, root, _, labels, selection, pred_probs = cli_run
    result = deft_lightning.find_label_issues(root, overrides=DETECTOR + [f"paths.cache_dir={tmp / 'cache'}"],
                                              output_dir=tmp / "api_folder")
    assert isinstance(result.issues, pd.DataFrame) and len(result.issues) == len(labels)
    assert result.class_names == list(CLASSES) and result.pred_probs.shape == (len(labels), len(CLASSES))
    assert list(result.issues["given_class"]) == labels  # the labels are taken as given: no noise added
    _same_values(result, selection, pred_probs)
    assert (tmp / "api_folder" / "detection" / "report.md").is_file() and result.run_dir == tmp / "api_folder"


def test_find_label_issues_on_in_memory_images_equals_the_cli(cli_run):
    tmp, _, images, labels, selection, pred_probs = cli_run
    for data in (images, [Image.fromarray(a) for a in images]):
        result = deft_lightning.find_label_issues(data, labels, overrides=DETECTOR + [f"paths.cache_dir={tmp / 'cache'}"],
                                                  output_dir=tmp / f"api_memory_{type(data).__name__}")
        _same_values(result, selection, pred_probs)
        assert result.class_names == list(CLASSES)


def test_find_label_issues_on_path_label_pairs_with_keyword_options(cli_run, tmp_path):
    tmp, root, _, labels, selection, _ = cli_run
    pairs = [(root / "train" / label / f"{label}_{i % 4}.png", label) for i, label in enumerate(labels)]
    result = deft_lightning.find_label_issues(pairs, overrides=FAST_DEMO, detector="label_match",
                                              dataset__batch_size=4, paths__cache_dir=str(tmp / "cache"),
                                              output_dir=tmp_path / "pairs")
    assert result.summary["detector_kind"] == "label_match"
    assert list(result.issues["given_class"]) == labels and len(result.issues) == len(selection)


def test_bad_inputs_raise_user_errors_naming_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="2 images but 3 labels"):
        deft_lightning.find_label_issues(np.zeros((2, 8, 8, 3), np.uint8), ["a", "b", "a"], overrides=FAST_DEMO)
    with pytest.raises(DatasetError, match=r"classes \[1\] without any sample"):
        deft_lightning.find_label_issues(np.zeros((2, 8, 8, 3), np.uint8), [0, 2], overrides=FAST_DEMO)
    with pytest.raises(UserError, match="does-not-exist"):
        deft_lightning.find_label_issues(tmp_path / "does-not-exist", overrides=FAST_DEMO)


# ----- the new outputs of the CLI run and load_detector (issue 15, items 1-3) -------------------------
def test_cli_run_writes_the_ranking_class_order_and_the_cleaned_dataset(cli_run):
    tmp, root, _, labels, selection, pred_probs = cli_run
    out = tmp / "cli" / "detection"
    assert (out / "classes.txt").read_text().splitlines() == list(CLASSES)
    self_confidence = pred_probs[np.arange(len(selection)), selection["given_label"]]
    np.testing.assert_allclose(selection["label_quality"], np.sqrt(selection["p_clean"] * self_confidence), atol=1e-7)
    assert sorted(selection["rank"]) == list(range(1, len(selection) + 1))
    by_rank = selection.sort_values("rank")["label_quality"].to_numpy()
    assert (np.diff(by_rank) >= 0).all()  # rank 1 = lowest label_quality
    exported = pd.read_csv(out / "clean_dataset.csv")
    kept = selection[selection["is_clean"] == 1]
    # sample ids are train/<class>/<file>
    assert list(exported["path"]) == [str((root / sid).resolve()) for sid in kept["sample_id"]]
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["export"]["kept"] == len(kept) and "clean_dataset.csv" in summary["files"]
    assert summary["estimated_noise"]["file"] == "noise_matrix.npy"
    matrix = np.load(out / "noise_matrix.npy")
    assert matrix.shape == (3, 3) and matrix.sum() == int((selection["is_label_issue"] == 1).sum())


def test_load_detector_reproduces_the_cli_p_clean_on_paths_arrays_and_pil_images(cli_run):
    tmp, root, images, labels, selection, pred_probs = cli_run
    detector = deft_lightning.load_detector(tmp / "cli" / "detection" / "detector_weights.pt", cache_dir=tmp / "cache")
    assert detector.class_names == list(CLASSES) and detector.kind == "deft" and detector.family == "generic"
    paths = [root / sid for sid in selection["sample_id"]]
    order = [list(selection["sample_id"]).index(f"train/{lab}/{lab}_{i % 4}.png") for i, lab in enumerate(labels)]
    for data, given, rows in ((paths, list(selection["given_class"]), np.arange(len(selection))),
                              (images, labels, np.asarray(order)),
                              ([Image.fromarray(a) for a in images], labels, np.asarray(order))):
        scores = detector.score(data, given, batch_size=5)  # batches that do not divide the set
        expected = selection.iloc[rows].reset_index(drop=True)
        np.testing.assert_allclose(scores.table["p_clean"], expected["p_clean"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(scores.pred_probs, pred_probs[rows], atol=1e-6, rtol=0)
        np.testing.assert_allclose(scores.table["label_quality"], expected["label_quality"], atol=1e-6, rtol=0)
        assert list(scores.table["is_clean"].astype(int)) == list(expected["is_clean"])
        assert list(scores.table["predicted_label"]) == list(expected["predicted_label"])
    unlabelled = detector.score(paths).table
    assert "p_clean" not in unlabelled and list(unlabelled["predicted_label"]) == list(selection["predicted_label"])
    same = selection["predicted_label"] == selection["given_label"]  # there, p_clean is of the predicted class
    np.testing.assert_allclose(unlabelled["p_clean_predicted"][same], selection["p_clean"][same], atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="not one of the detector's classes"):
        detector.score(paths[:1], ["wolf"])
    with pytest.raises(UserError, match="no such file"):
        deft_lightning.load_detector(tmp / "nowhere.pt")
