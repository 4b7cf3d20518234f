"""Label-match baseline (SPEC §4): a label is clean iff zero-shot CLIP predicts it.

No training and no threshold: its recall on truly clean samples *is* CLIP's zero-shot accuracy on
them, which is why the paper's label-match recall tracks zero-shot accuracy (53–64 %).
"""

from __future__ import annotations

import torch

__all__ = ["label_match_selection"]


def label_match_selection(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample decisions from zero-shot class logits (B, C) and the given labels (B,).

    ``p_clean`` is the zero-shot probability of the given label: it ranks suspects (lowest first) but
    is not thresholded — ``is_clean`` is ``argmax == label`` (so p_clean > 0.5 implies clean, not the
    converse).
    """
    probs = logits.float().softmax(dim=1)
    predicted = probs.argmax(dim=1)
    return {
        "p_clean": probs.gather(1, labels.view(-1, 1)).squeeze(1),
        "is_clean": predicted == labels,
        "predicted_label": predicted,
        "class_probs": probs,
    }
