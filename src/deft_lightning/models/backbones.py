"""Phase-2 classifiers built on CLIP's visual tower (the reference "full fine-tuning")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deft_lightning.errors import ConfigError
from deft_lightning.models.clip import create_clip, get_tokenizer
from deft_lightning.models.inputs import InputConfig
from deft_lightning.models.zero_shot import ZERO_SHOT_TEMPLATE, zero_shot_weights


class ClipVisualClassifier(nn.Module):
    """CLIP visual tower + linear head on ln_post(CLS) (width → C), SPEC §3.

    By default, as the reference, the residual blocks and the head train while the embeddings, ln_pre,
    ln_post and the projection stay frozen; ``train_all`` trains every visual parameter.
    """

    def __init__(self, visual: nn.Module, num_classes: int, input_config: InputConfig, train_all: bool = False) -> None:
        super().__init__()
        self.visual = visual
        self.input_config = input_config
        width = visual.conv1.out_channels
        self.head = nn.Linear(width, num_classes)
        for name, parameter in visual.named_parameters():
            parameter.requires_grad_(train_all or name.startswith("transformer."))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.visual.transformer(self.visual._embeds(images))
        pooled, _ = self.visual._pool(tokens)
        return pooled

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(images))

    @torch.no_grad()
    def init_head_from_text(self, text_features: torch.Tensor) -> None:
        """Zero-shot head: argmax of ``head(ln_post(CLS))`` equals argmax of cos(proj·CLS, text).

        Normalising the image feature scales all class scores by one positive number, so dropping it
        keeps the predictions; the head weight is text @ projᵀ and the bias zero.
        """
        text = F.normalize(text_features.float(), dim=-1)
        proj = self.visual.proj
        self.head.weight.copy_(text @ proj.t().float() if proj is not None else text)
        self.head.bias.zero_()


def build_clip_classifier(
    num_classes: int,
    class_names: list[str] | None = None,
    model_name: str = "ViT-B-16",
    pretrained: str | None = "openai",
    weights: str | None = None,
    cache_dir: str | None = None,
    train_all: bool = False,
    head_init: str = "random",
    prompt_template: str = ZERO_SHOT_TEMPLATE,
) -> ClipVisualClassifier:
    """Phase-2 CLIP classifier; ``head_init="text"`` starts from the zero-shot classifier."""
    clip_model, input_config = create_clip(model_name, pretrained, weights, cache_dir)
    classifier = ClipVisualClassifier(clip_model.visual, num_classes, input_config, train_all)
    if head_init == "text":
        if not class_names:
            raise ValueError("head_init=text needs the class names")
        with torch.no_grad():
            classifier.init_head_from_text(zero_shot_weights(clip_model, get_tokenizer(model_name), class_names,
                                                             prompt_template))
    elif head_init != "random":
        raise ConfigError(f"backbone.model.head_init must be 'random' or 'text', got {head_init!r}")
    return classifier
