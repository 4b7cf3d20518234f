"""Loading CLIP through open_clip: hub tags, local checkpoint files, and the project's own tiny configs.

Besides open_clip's hub tags, ``pretrained`` may name a *local pretrained tag*: a name that resolves
to a checkpoint file on this machine (e.g. ``deft-toy``, the toy world's shipped CLIP). Applications
register such tags with :func:`register_pretrained_tag`, or declare them as entry points in the group
``deft_lightning.pretrained`` (``tag = "package.module:resolver"``); a resolver takes the cache
directory and returns a file path, which is then loaded like any ``weights=`` file. This module knows
no tag itself.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import open_clip
import torch
from torch import nn

from deft_lightning.errors import UserError
from deft_lightning.models.inputs import InputConfig

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
ENTRY_POINT_GROUP = "deft_lightning.pretrained"
_registered = False
# tag -> resolver(cache_dir) -> path of a local checkpoint file
PRETRAINED_TAGS: dict[str, Callable[[str | None], str | os.PathLike[str]]] = {}


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights could not be loaded; the message says how to provide a local file."""


class WeightsFileNotFoundError(WeightsUnavailableError, FileNotFoundError):
    """A weights file named in the config does not exist (still a ``FileNotFoundError`` for callers)."""


def register_pretrained_tag(tag: str, resolve: Callable[[str | None], str | os.PathLike[str]]) -> None:
    """Let ``pretrained=<tag>`` load the file that ``resolve(cache_dir)`` returns (replaces an earlier one)."""
    PRETRAINED_TAGS[tag] = resolve


def _local_tag_resolver(tag: str) -> Callable[[str | None], str | os.PathLike[str]] | None:
    """The registered resolver of ``tag``, else one declared by an installed entry point, else None."""
    if tag in PRETRAINED_TAGS:
        return PRETRAINED_TAGS[tag]
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == tag:
            PRETRAINED_TAGS[tag] = entry.load()
            return PRETRAINED_TAGS[tag]
    return None


def check_weights_file(path: str | os.PathLike[str], key: str, expected: str) -> Path:
    """Open a user-supplied weights file without running code; a damaged one is a WeightsUnavailableError.

    Reads the safetensors header (``.safetensors``), the array index (``.npz``) or the whole file with
    ``torch.load(weights_only=True, mmap=True)`` (anything else), and checks that it holds a mapping of
    tensors. ``key`` is the config key that named the file and ``expected`` what it should contain; both
    go into the message, so the user sees which file is wrong and what to pass instead.
    """
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise WeightsFileNotFoundError(f"Weights file not found: {path} ({key}). Expected {expected}.")

    def fail(reason: str) -> WeightsUnavailableError:
        return WeightsUnavailableError(
            f"Weights file {path} ({key}) cannot be read: {reason}. Expected {expected}. Is the file complete "
            "(a download that was cut off, a copy still running) and of the right kind?"
        )

    size = path.stat().st_size
    if size == 0:
        raise fail("it is empty (0 bytes)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
            if not keys:
                raise fail("it holds no tensors")
            return path
        if suffix == ".npz":
            if not zipfile.is_zipfile(path):
                raise fail("it is not a complete .npz (zip) archive")
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                raise fail(f"its member {bad!r} is damaged")
            return path
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except RuntimeError as error:
            if zipfile.is_zipfile(path) or "zip" not in str(error).lower():
                raise
            raise fail("it looks like a cut-off torch checkpoint (its zip archive is incomplete)") from None
    except WeightsUnavailableError:
        raise
    except Exception as error:  # pickle, zip, safetensors and OS errors all mean: not a readable weights file
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise fail(f"{type(error).__name__}: {first[:300]}") from None
    if not isinstance(state, Mapping) or not state:
        raise fail(f"it holds a {type(state).__name__}, not a state dict of named tensors")
    return path


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
    weights, or a local pretrained tag (see :func:`register_pretrained_tag`; e.g. ``deft-toy``, the toy
    world's shipped CLIP). ``weights`` is a local checkpoint file and wins over the tag; OpenAI weights
    from a file need the QuickGELU variant of the architecture. A missing, damaged or mismatched file is
    a :class:`WeightsUnavailableError` naming the file.
    """
    register_model_configs()
    key = "detector.clip.weights / backbone.model.weights"
    if weights is None and pretrained:
        resolve = _local_tag_resolver(str(pretrained))
        if resolve is not None:
            weights = str(resolve(cache_dir))
            key = f"the file that pretrained={pretrained!r} resolves to"
    if weights is not None:
        path = check_weights_file(
            weights, key, f"an open_clip state dict for {model_name} (.pt/.bin/.pth, or .safetensors)"
        )
        if pretrained == "openai" and not model_name.endswith("-quickgelu") and _has_config(f"{model_name}-quickgelu"):
            model_name = f"{model_name}-quickgelu"
        try:
            model = open_clip.create_model(model_name, pretrained=str(path))
        except (RuntimeError, KeyError) as error:  # missing/unexpected keys or size mismatches (strict load)
            if isinstance(error, RuntimeError) and "state_dict" not in str(error) and "size mismatch" not in str(error):
                raise  # not about the file: an internal error keeps its traceback
            first = str(error).strip().splitlines()
            raise WeightsUnavailableError(
                f"Weights file {path} ({key}) does not fit CLIP {model_name}: "
                f"{type(error).__name__}: {' '.join(first[:2])[:400]}. Pass a checkpoint of this architecture "
                "(detector.clip.model_name / backbone.model.model_name names it), as a plain open_clip state dict."
            ) from None
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
