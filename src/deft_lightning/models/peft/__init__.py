"""Parameter-efficient fine-tuning of CLIP's visual tower (SPEC §2).

Every variant is an ``nn.Module`` built as ``Variant(visual, **options)`` from a ``peft/*.yaml`` config.
It freezes the open_clip ``VisionTransformer`` it wraps, owns the only trainable parameters, and its
``forward(images)`` returns the projected image features, like ``visual(images)``.
"""

from deft_lightning.models.peft.base import VisualPEFT, count_parameters, resolve_blocks

__all__ = ["VisualPEFT", "count_parameters", "resolve_blocks"]
