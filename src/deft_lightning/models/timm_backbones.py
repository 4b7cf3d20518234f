"""Phase-2 timm backbones (ViT-B/16 augreg, ResNet-50, ConvNeXt-T, MAE ViT-B) with a new linear head.

The returned module is the timm model itself (so `forward`, `forward_features` and checkpoint keys are
timm's), tagged with an `input_config` carrying *that* backbone's pretrained mean/std (SPEC §3 fix:
each backbone is fed images normalised the way it was pretrained, not with dataset statistics), its
interpolation and its crop ratio, all as timm resolves them (`timm.data.resolve_model_data_config`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn
from timm.data import resolve_model_data_config

# One error class for "weights problem the user fixes by passing a file", shared with the CLIP
# loader so train.py reports both backbones' weight errors as user errors, not tracebacks.
from deft_lightning.errors import ConfigError
from deft_lightning.models.clip import WeightsUnavailableError, check_weights_file
from deft_lightning.models.inputs import InputConfig

__all__ = ["WeightsUnavailableError", "WeightsLoadError", "TimmInputConfig", "build_timm_classifier"]


@dataclass(frozen=True)
class TimmInputConfig(InputConfig):
    """What a timm backbone expects beyond size and statistics: how to resize, and the crop ratio
    (centre crop of ``image_size`` out of a resize to ``image_size / crop_pct``)."""

    interpolation: str = "bicubic"
    crop_pct: float = 0.875


class WeightsLoadError(WeightsUnavailableError):
    """A local weights file was given but does not fit the requested architecture."""


def build_timm_classifier(
    num_classes: int,
    model_name: str,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    class_names: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a timm classifier with a fresh `num_classes` head and attach its `input_config`.

    Weights: `weights=PATH` loads a local file (`.pth`/`.safetensors` as a state dict, `.npz` as an
    original JAX checkpoint); otherwise `pretrained=True` fetches the tag from timm's hub and
    `pretrained=False` keeps random init (tests, benchmarks). The head is always new: pretrained heads
    are discarded by timm when their size differs from `num_classes`. `class_names` is accepted so every
    backbone config can be called the same way; timm heads do not use it. `cache_dir=None` keeps
    timm's default download cache (the Hugging Face cache, honouring HF_HOME). Extra `kwargs` go to
    `timm.create_model` (e.g. `drop_path_rate`).
    """
    del class_names  # only the CLIP backbone uses class names (zero-shot head initialisation)
    if cache_dir is not None:
        kwargs = {**kwargs, "cache_dir": str(cache_dir)}
    if not timm.is_model(model_name):
        raise ConfigError(
            f"Unknown timm model {model_name!r} (backbone.model.model_name). Use an 'architecture.tag' name listed by "
            f"timm.list_pretrained(), e.g. 'resnet50.a1_in1k'."
        )
    if weights is not None:
        model = _create_from_file(model_name, Path(weights), num_classes, image_size, kwargs)
    elif pretrained:
        model = _create_from_hub(model_name, num_classes, image_size, kwargs)
    else:
        model = _create(model_name, False, num_classes, image_size, kwargs)

    data = resolve_model_data_config(model)  # the pretrained config, with timm's defaults filled in
    size = image_size if image_size is not None else int(data["input_size"][-1])
    model.input_config = TimmInputConfig(
        image_size=size,
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        interpolation=str(data["interpolation"]),
        crop_pct=float(data["crop_pct"]),
    )
    return model


def _create(
    model_name: str,
    pretrained: bool,
    num_classes: int,
    image_size: int | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    """timm.create_model, passing `img_size` only to architectures that take one (ViTs, not CNNs)."""
    common = dict(pretrained=pretrained, num_classes=num_classes, **kwargs)
    if image_size is None:
        return timm.create_model(model_name, **common)
    try:
        return timm.create_model(model_name, img_size=image_size, **common)
    except TypeError as err:
        # CNNs are resolution-agnostic and reject the argument before building anything.
        if "img_size" not in str(err):
            raise
        return timm.create_model(model_name, **common)


def _create_from_hub(
    model_name: str, num_classes: int, image_size: int | None, kwargs: dict[str, Any]
) -> nn.Module:
    try:
        return _create(model_name, True, num_classes, image_size, kwargs)
    except OSError as err:  # hub/url download failures and missing cache entries are all OSErrors
        raise WeightsUnavailableError(_unavailable_message(model_name, err)) from err
    except RuntimeError as err:
        if "No pretrained weights exist" not in str(err):
            raise
        raise WeightsUnavailableError(_unavailable_message(model_name, err)) from err


def _create_from_file(
    model_name: str, path: Path, num_classes: int, image_size: int | None, kwargs: dict[str, Any]
) -> nn.Module:
    """Load a local file with ``timm.models.load_checkpoint`` and refuse one that leaves the backbone random.

    The file's head is dropped (the head is always new) and the architecture's own checkpoint filter is
    applied (key remapping, position-embedding resizing), as timm's pretrained loader does. The load is
    non-strict, so a file for another architecture or with prefixed keys would silently leave the backbone
    random: the incompatible keys that ``load_checkpoint`` returns say so, and anything missing outside the
    head is refused. Original JAX ``.npz`` files go to the model's own ``load_pretrained``.
    """
    # a missing, empty, truncated or garbage file is named here, before timm sees it (no code runs:
    # weights_only / safetensors / a zip index for .npz)
    path = check_weights_file(
        path, "backbone.model.weights",
        f"a .pth/.safetensors state dict of {model_name!r} (or an original .npz for augreg ViTs)",
    )
    model = _create(model_name, False, num_classes, image_size, kwargs)
    head_keys = _classifier_prefixes(model)
    architecture_filter = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)

    def filter_fn(state_dict: dict, model: nn.Module) -> dict:
        if architecture_filter is not None:
            state_dict = architecture_filter(state_dict, model)
        return {k: v for k, v in state_dict.items() if not k.startswith(head_keys)}

    try:
        incompatible = timm.models.load_checkpoint(model, str(path), strict=False, filter_fn=filter_fn)
    except (RuntimeError, KeyError, ValueError, OSError, NotImplementedError) as err:
        first = str(err).strip().splitlines()
        raise WeightsLoadError(
            f"Could not load weights file {str(path)!r} (backbone.model.weights) into {model_name!r}: "
            f"{type(err).__name__}: {' '.join(first[:2])[:400]}. Expected a state dict of this architecture."
        ) from None
    missing = [] if incompatible is None else [k for k in incompatible.missing_keys if not k.startswith(head_keys)]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise WeightsLoadError(
            f"Weights file {str(path)!r} does not match {model_name!r}: {len(missing)} backbone "
            f"parameters are missing from it ({shown}). Is it a checkpoint of another architecture, "
            f"or a Lightning checkpoint with prefixed keys? Pass a plain state dict of this model."
        )
    return model


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    classifiers = model.pretrained_cfg.get("classifier") or ()
    if isinstance(classifiers, str):
        classifiers = (classifiers,)
    return tuple(f"{name}." for name in classifiers)


def _unavailable_message(model_name: str, err: BaseException) -> str:
    cfg = timm.models.get_pretrained_cfg(model_name)
    sources = []
    if cfg is not None:
        if cfg.hf_hub_id:
            hub_id = cfg.hf_hub_id + (model_name if cfg.hf_hub_id.endswith("/") else "")
            sources.append(f"https://huggingface.co/{hub_id} (model.safetensors)")
        if cfg.url:
            sources.append(cfg.url)
    where = " or ".join(sources) if sources else "the timm hub"
    return (
        f"Pretrained weights for timm model {model_name!r} could not be fetched ({err}). "
        f"Offline? Download the file from {where} on a machine with internet, then pass "
        f"backbone.model.weights=/path/to/file (or backbone.model.pretrained=false for random init)."
    )
