"""Label-match baseline detector (SPEC §4): zero-shot CLIP, no training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deft_lightning.models.text_encoder import encode_token_ids_truncated
from deft_lightning.modules.per_sample import PerSampleDetector
from deft_lightning.modules.registry import register_detector
from deft_lightning.selection.label_match import label_match_selection


@register_detector("label_match", builder="deft_lightning.pipeline.baselines:build_label_match")
class LabelMatchModule(PerSampleDetector):
    """Frozen CLIP with hand-written prompts ("a photo of a {class}."); clean iff prediction == label.

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
        prompt_template: str = "a photo of a {}.",
        logit_scale: float = 100.0,
    ) -> None:
        super().__init__(len(class_names))
        self.clip_model = clip_model
        for parameter in clip_model.parameters():
            parameter.requires_grad_(False)
        prompts = [prompt_template.format(name.replace("_", " ")) for name in class_names]
        self.register_buffer("prompt_token_ids", tokenizer(prompts), persistent=False)
        self.logit_scale = float(logit_scale)
        self._text_features: torch.Tensor | None = None

    def encode_text(self) -> torch.Tensor:
        """Normalised class text features (C, E), computed once on the module's device."""
        if self._text_features is None or self._text_features.device != self.prompt_token_ids.device:
            with torch.no_grad():
                features = encode_token_ids_truncated(self.clip_model, self.prompt_token_ids)
            self._text_features = F.normalize(features.float(), dim=-1)
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
