"""A candidate ``label_quality`` score, measured but NOT shipped (the shipped score is the geometric mean
in ``deft_lightning/selection/clean_selection.py``); the slow comparison in test_label_quality.py reports it.

``harmonic = 2 / (1 / p_clean + 1 / pred_probs[i, given_i])``: the harmonic mean of two estimates
that the given label is right, DEFT's ``p_clean`` (the negative prompt's verdict at the given class) and the
classifier's self-confidence in the given class against the others. The harmonic mean follows the lower
of the two, so a label is about as doubtful as its more doubtful estimate; where ``p_clean`` already is
the self-confidence (label_match, small_loss) the score is that probability.

Why it was tried instead of the geometric mean: on the toy world at sym 0.4 noise, any
weight on ``p_clean`` lowered the AUROC of ranking the true issues below the self-confidence alone, and the
harmonic mean, which follows the (usually lower) self-confidence, lost less. Chosen on one noise draw, checked
on a second (better than the geometric mean on both) and on asymmetric noise (slightly worse there); it beats
no cleanlab score on any of them, so the shipped score was left as it was (numbers: README, label quality).
"""

from __future__ import annotations

import numpy as np

from deft_lightning.errors import SelectionError

# below this, an estimate counts as zero (and so does the score): no division by zero
_FLOOR = 1e-12


def label_quality_scores(p_clean: np.ndarray, given_label: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Harmonic mean of ``p_clean`` and ``pred_probs[i, given_label[i]]``, in [0, 1]; low = likely label issue."""
    p_clean = np.clip(np.asarray(p_clean, dtype=np.float64), 0.0, 1.0)
    given = np.asarray(given_label, dtype=np.int64)
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(given) or len(p_clean) != len(given):
        raise SelectionError(f"label_quality: {len(p_clean)} p_clean values, {len(given)} labels and pred_probs of shape "
                             f"{probs.shape} do not describe the same samples; take them from one detection run")
    self_confidence = np.clip(probs[np.arange(len(given)), given], 0.0, 1.0)
    both = np.minimum(p_clean, self_confidence) > _FLOOR
    quality = np.zeros(len(given), dtype=np.float64)
    quality[both] = 2.0 / (1.0 / p_clean[both] + 1.0 / self_confidence[both])
    return quality
