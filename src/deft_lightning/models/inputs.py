"""What a model expects of its input images; the DataModule builds its transforms from this."""

from __future__ import annotations

from dataclasses import dataclass

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class InputConfig:
    """Resolution and normalisation of the model that consumes the images (SPEC §3: per backbone)."""

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
