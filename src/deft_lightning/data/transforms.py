"""Train and test transforms per dataset family (SPEC §5), at the consuming model's size and statistics."""

from __future__ import annotations

from torchvision import transforms as T

from deft_lightning.models.inputs import InputConfig

FAMILIES = ("cifar", "fine_grained", "clothing1m", "webvision", "generic")


def resize_size(image_size: int) -> int:
    """The pre-crop size: 256 for 224, in proportion otherwise."""
    return int(round(image_size * 256 / 224))


def build_transform(family: str, train: bool, inputs: InputConfig, native_size: int | None = None) -> T.Compose:
    """Reference augmentation for ``family`` with the fixes of SPEC §5.

    ``native_size`` is the stored image size of in-memory datasets (CIFAR: 32), used for their
    random crop with padding before resizing to the model's resolution.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown transform family {family!r}; expected one of {FAMILIES}")
    size = inputs.image_size
    bigger = resize_size(size)
    normalise = [T.ToTensor(), T.Normalize(inputs.mean, inputs.std)]
    if family == "cifar":
        native = native_size or 32
        if train:
            steps = [T.RandomCrop(native, padding=native // 8), T.Resize(size), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize(size)]
    elif family in ("fine_grained", "webvision"):
        # square resize, then crop; the test crop matches the training scale (fix for fine_grained)
        if train:
            steps = [T.Resize((bigger, bigger)), T.RandomCrop(size), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize((bigger, bigger)), T.CenterCrop(size)]
    else:  # clothing1m, generic: shorter side to 256, crop 224
        if train:
            steps = [T.Resize(bigger), T.RandomCrop(size), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize(bigger), T.CenterCrop(size)]
    return T.Compose(steps + normalise)


def decode_size(family: str, inputs: InputConfig) -> int:
    """Smallest shorter side a JPEG must keep for the transform: allows reduced-size decoding."""
    return resize_size(inputs.image_size) if family != "cifar" else inputs.image_size
