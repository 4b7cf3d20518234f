"""Train and test transforms per dataset family (SPEC §5), at the consuming model's size and statistics.

A timm backbone also says how it resizes and its crop ratio (its ``input_config`` carries timm's resolved
data config): its test transform is timm's own ``create_transform``, and its training augmentation is the
family's recipe below with that interpolation and the pre-crop size ``image_size / crop_pct``. Other
models (CLIP) keep the reference's bilinear resize to 256/224 of the crop.
"""

from __future__ import annotations

import math

from torchvision import transforms as T

from deft_lightning.models.inputs import InputConfig

FAMILIES = ("cifar", "fine_grained", "clothing1m", "webvision", "generic", "toy")
# generated worlds (toy v2): the object is already placed at random, and pretraining never saw padding
# or mirroring, so training only resizes
WHOLE_IMAGE_FAMILIES = ("cifar", "toy")
# how each family's test transform fits the image into the pre-crop size (timm's crop modes)
SQUARE_RESIZE_FAMILIES = ("fine_grained", "webvision")  # resize to a square, then centre-crop


def resize_size(image_size: int) -> int:
    """The pre-crop size: 256 for 224, in proportion otherwise."""
    return int(round(image_size * 256 / 224))


def _backbone_resize(inputs: InputConfig) -> tuple[str, float] | None:
    """(interpolation, crop_pct) when the model states them (timm backbones), else None."""
    interpolation, crop_pct = getattr(inputs, "interpolation", None), getattr(inputs, "crop_pct", None)
    return None if interpolation is None or crop_pct is None else (str(interpolation), float(crop_pct))


def pre_crop_size(inputs: InputConfig) -> int:
    """The size images are resized to before the crop: timm's ``floor(size / crop_pct)`` for a backbone
    that states its crop ratio, the reference's 256/224 of the crop otherwise."""
    stated = _backbone_resize(inputs)
    return resize_size(inputs.image_size) if stated is None else math.floor(inputs.image_size / stated[1])


def build_transform(family: str, train: bool, inputs: InputConfig, native_size: int | None = None) -> T.Compose:
    """Reference augmentation for ``family`` with the fixes of SPEC §5.

    ``native_size`` is the stored image size of in-memory datasets (CIFAR: 32), used for their
    random crop with padding before resizing to the model's resolution.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown transform family {family!r}; expected one of {FAMILIES}")
    stated = _backbone_resize(inputs)
    if stated is not None and not train:
        return _timm_test_transform(family, inputs, *stated)
    size = inputs.image_size
    bigger = pre_crop_size(inputs)
    resize = {} if stated is None else {"interpolation": _interpolation_mode(stated[0])}
    normalise = [T.ToTensor(), T.Normalize(inputs.mean, inputs.std)]
    if family == "toy":
        steps = [T.Resize(size, **resize)]
    elif family == "cifar":
        native = native_size or 32
        if train:
            steps = [T.RandomCrop(native, padding=native // 8), T.Resize(size, **resize), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize(size)]
    elif family in SQUARE_RESIZE_FAMILIES:
        # square resize, then crop; the test crop matches the training scale (fix for fine_grained)
        if train:
            steps = [T.Resize((bigger, bigger), **resize), T.RandomCrop(size), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize((bigger, bigger)), T.CenterCrop(size)]
    else:  # clothing1m, generic: shorter side to 256, crop 224
        if train:
            steps = [T.Resize(bigger, **resize), T.RandomCrop(size), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize(bigger), T.CenterCrop(size)]
    return T.Compose(steps + normalise)


def _timm_test_transform(family: str, inputs: InputConfig, interpolation: str, crop_pct: float):
    """timm's eval transform with the backbone's interpolation and crop ratio; CIFAR's whole (square,
    low-resolution) image is resized without a crop, as the reference does."""
    from timm.data import create_transform

    return create_transform(
        input_size=(3, inputs.image_size, inputs.image_size),
        is_training=False,
        interpolation=interpolation,
        crop_pct=1.0 if family in WHOLE_IMAGE_FAMILIES else crop_pct,
        crop_mode="squash" if family in WHOLE_IMAGE_FAMILIES or family in SQUARE_RESIZE_FAMILIES else "center",
        mean=tuple(inputs.mean),
        std=tuple(inputs.std),
    )


def _interpolation_mode(name: str) -> T.InterpolationMode:
    from timm.data.transforms import str_to_interp_mode

    return str_to_interp_mode(name)


def decode_size(family: str, inputs: InputConfig) -> int:
    """Smallest shorter side a JPEG must keep for the transform: allows reduced-size decoding."""
    return inputs.image_size if family in WHOLE_IMAGE_FAMILIES else pre_crop_size(inputs)
