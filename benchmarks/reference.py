"""The naive reference paths the benchmark compares against (SPEC §2–3), written against our modules.

They reproduce what the reference implementation spends, not its code: the positive and negative
prompts each run through CLIP's text tower at the full context length (77 tokens for ViT-B/16), in two
separate calls, recomputed on every call including evaluation batches; JPEGs are decoded at full size.
Everything else (visual tower, loss, optimiser) is the framework's own, so a measured ratio isolates
the optimisations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from deft_lightning.modules.detector import DetectorModule


class ReferenceDetector(DetectorModule):
    """A :class:`DetectorModule` whose text features are computed as the reference does.

    Shares the CLIP model, the visual PEFT and the prompt learner of the detector it is built from
    (:func:`reference_detector`), so both compute with the very same parameters.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        layout = self.prompt_learner.layout
        embedding = self.clip_model.token_embedding
        with torch.no_grad():  # the reference keeps the frozen token embeddings of the full context
            full = embedding(layout.token_ids.to(embedding.weight.device))
        self.register_buffer("full_token_embeds", full, persistent=False)
        self.register_buffer("full_context_positions", layout.context_positions.clone(), persistent=False)

    def encode_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        learner = self.prompt_learner
        positive = reference_prompt_features(self, learner.pos_ctx)
        negative = reference_prompt_features(self, learner.neg_ctx)
        return F.normalize(positive, dim=-1), F.normalize(negative, dim=-1)


def reference_detector(detector: DetectorModule) -> ReferenceDetector:
    """The reference counterpart of ``detector``, sharing its modules and settings."""
    reference = ReferenceDetector(
        detector.clip_model,
        detector.visual_encoder,
        detector.prompt_learner,
        optimizer=detector.optimizer_factory,
        scheduler=detector.scheduler_factory,
        warmup_epochs=detector.warmup_epochs,
        logit_scale=detector.logit_scale,
        real_noise_variant=detector.real_noise_variant,
        sim_weight=detector.sim_weight,
        dp_weight=detector.dp_weight,
    )
    device = detector.prompt_learner.pos_ctx.device
    return reference.to(device)


def reference_prompt_features(reference: ReferenceDetector, context: torch.Tensor) -> torch.Tensor:
    """One prompt set through the text tower at full context length, as open_clip's ``encode_text`` does."""
    clip_model = reference.clip_model
    embeds = reference.full_token_embeds
    classes, _, width = embeds.shape
    if context.dim() == 2:
        context = context.unsqueeze(0).expand(classes, -1, -1)
    index = reference.full_context_positions.unsqueeze(-1).expand(-1, -1, width)
    prompts = embeds.scatter(1, index, context.to(embeds.dtype))
    cast_dtype = clip_model.transformer.get_cast_dtype()
    x = prompts.to(cast_dtype) + clip_model.positional_embedding.to(cast_dtype)
    x = clip_model.transformer(x, attn_mask=clip_model.attn_mask)
    x = clip_model.ln_final(x)
    eot = reference.prompt_learner.eot_positions.to(x.device)
    x = x[torch.arange(classes, device=x.device), eot]
    projection = clip_model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def decode_full(path: str) -> Image.Image:
    """Full-resolution JPEG decode, as a plain ``Image.open(...).convert("RGB")`` loader does."""
    with Image.open(path) as image:
        return image.convert("RGB")
