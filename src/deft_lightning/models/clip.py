"""Loading CLIP through open_clip: hub tags, local checkpoint files, and the project's own tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import torch
from torch import nn

from deft_lightning.errors import UserError
from deft_lightning.models.inputs import InputConfig

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights could not be loaded; the message says how to provide a local file."""


def register_model_configs() -> None:
    """Make the project's own open_clip configs (e.g. ``deft-tiny-clip``) known to open_clip."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


def create_clip(
    model_name: str = "ViT-B-16",
    pretrained: str | None = "openai",
    weights: str | None = None,
    cache_dir: str | None = None,
) -> tuple[nn.Module, InputConfig]:
    """Build an open_clip CLIP model and say what input it expects.

    ``pretrained`` is an open_clip tag (downloaded through the hub when online), ``None`` for random
    weights, or ``deft-toy`` for the project's offline toy CLIP. ``weights`` is a local checkpoint file
    and wins over the tag; OpenAI weights from a file need the QuickGELU variant of the architecture.
    """
    register_model_configs()
    if pretrained == "deft-toy" and weights is None:
        from deft_lightning.toy.pretrain import ensure_pretrained

        weights = str(ensure_pretrained(cache_dir=cache_dir))
    if weights is not None:
        path = Path(os.path.expanduser(str(weights)))
        if not path.is_file():
            raise WeightsUnavailableError(f"CLIP weights file not found: {path}. Pass an existing file.")
        if pretrained == "openai" and not model_name.endswith("-quickgelu") and _has_config(f"{model_name}-quickgelu"):
            model_name = f"{model_name}-quickgelu"
        model = open_clip.create_model(model_name, pretrained=str(path))
    elif pretrained:
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir)
        except Exception as error:  # hub unreachable, offline mode, unknown tag
            raise WeightsUnavailableError(
                f"Could not load CLIP weights '{pretrained}' for {model_name} ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}).\n"
                "Offline? Download the checkpoint on a machine with internet (open_clip tag "
                f"'{model_name}' / '{pretrained}') and pass it as a local file, e.g. "
                "detector.clip.weights=/path/to/open_clip_pytorch_model.bin "
                "(OpenAI weights from a file use the QuickGELU variant automatically)."
            ) from None
    else:
        model = open_clip.create_model(model_name, pretrained=None)
    return model, clip_input_config(model)


def clip_input_config(model: nn.Module) -> InputConfig:
    """Resolution and normalisation the CLIP visual tower was trained with."""
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else int(visual.image_size)
    mean = tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    std = tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    return InputConfig(image_size=int(size), mean=mean, std=std)


def get_tokenizer(model_name: str):
    register_model_configs()
    return open_clip.get_tokenizer(model_name)


def freeze(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def _has_config(name: str) -> bool:
    return name in open_clip.list_models()


def logit_scale_value(model: nn.Module) -> float:
    """CLIP's learned inverse temperature (100 for the OpenAI models), as a plain float."""
    with torch.no_grad():
        return float(model.logit_scale.exp().clamp(max=100.0))


def resolve_logit_scale(configured: float | None, model: nn.Module) -> float:
    """The frozen 1/τ: the configured number, or (``None``) the model's own learned scale.

    The paper uses 100 because that is OpenAI CLIP's learned value; a model pretrained to another
    temperature (the toy CLIP learns ~19) is mis-calibrated at 100 and its positive-prompt classifier
    degrades while DEFT trains, so ``null`` follows the model.
    """
    return logit_scale_value(model) if configured is None else float(configured)
