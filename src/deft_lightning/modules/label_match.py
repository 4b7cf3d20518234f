"""Label-match baseline detector (SPEC §4): zero-shot CLIP, no training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deft_lightning.modules.per_sample import PerSampleDetector
from deft_lightning.modules.registry import register_detector
from deft_lightning.selection.label_match import label_match_selection


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


@register_detector("label_match", builder="deft_lightning.pipeline.baselines:build_label_match")
class LabelMatchModule(PerSampleDetector):
    """Frozen CLIP's zero-shot classifier (``prompt_template``, e.g. "a photo of a {}."); clean iff its
    prediction == the given label.

    Only inference (``trainer.validate`` / ``trainer.predict``) runs: ``trains = False``.
    """

    trains = False
    table_label = "Label-match"
    p_clean_meaning = "zero-shot probability of the given label; is_clean = (zero-shot prediction == given label)"

    def __init__(
        self,
        clip_model: nn.Module,
        class_names: list[str],
        tokenizer,
        prompt_template: str = ZERO_SHOT_TEMPLATE,
        logit_scale: float = 100.0,
    ) -> None:
        super().__init__(len(class_names))
        self.clip_model = clip_model
        for parameter in clip_model.parameters():
            parameter.requires_grad_(False)
        self.class_names = list(class_names)
        self.tokenizer = tokenizer
        self.prompt_template = str(prompt_template)
        self.logit_scale = float(logit_scale)
        self._text_features: torch.Tensor | None = None

    def encode_text(self) -> torch.Tensor:
        """Normalised class text features (C, E), computed once on the module's device."""
        device = next(self.clip_model.parameters()).device
        if self._text_features is None or self._text_features.device != device:
            self._text_features = zero_shot_weights(self.clip_model, self.tokenizer, self.class_names,
                                                    self.prompt_template, device)
        return self._text_features

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip_model.encode_image(images).float(), dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Zero-shot class logits."""
        return self.logit_scale * self.encode_image(images) @ self.encode_text().t()

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        images, labels, indices = batch
        image_features = self.encode_image(images)
        logits = self.logit_scale * image_features @ self.encode_text().t()
        rows = {"index": indices, **label_match_selection(logits, labels)}
        if self.return_features:
            rows["features"] = image_features
        return rows
