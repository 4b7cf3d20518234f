"""CLIP's zero-shot classifier: one place for the prompt template and the class-name text features.

Used by the label-match detector, the small-loss detector's and the phase-2 CLIP classifier's
text-initialised heads, and the toy world's zero-shot measurements.
"""

from __future__ import annotations

import torch
from torch import nn

ZERO_SHOT_TEMPLATE = "a photo of a {}."  # CLIP's own prompt; the detector YAMLs set prompt_template


def zero_shot_weights(clip_model: nn.Module, tokenizer, class_names: list[str], template: str,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """(C, E) normalised text features of ``template`` per class: open_clip's ``build_zero_shot_classifier``
    with one template, class names with ``_`` read as spaces (folder names such as ``sea_lion``)."""
    from open_clip import build_zero_shot_classifier

    if device is None:
        device = next(clip_model.parameters()).device
    names = [name.replace("_", " ") for name in class_names]
    weights = build_zero_shot_classifier(clip_model, tokenizer, names, [template], device=device)
    return weights.t().float()
