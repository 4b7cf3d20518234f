"""Label-match baseline detector (SPEC §4): zero-shot CLIP, no training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deft_lightning.models.zero_shot import ZERO_SHOT_TEMPLATE, zero_shot_weights  # noqa: F401  (re-exported)
from deft_lightning.modules.per_sample import PerSampleDetector
from deft_lightning.modules.registry import register_detector
from deft_lightning.selection.label_match import label_match_selection


@register_detector("label_match")
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
