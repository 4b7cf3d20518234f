"""Image decoding: RGB PIL images, with reduced-size JPEG decoding when the transform shrinks them anyway.

Decoding a 500x375 JPEG at 1/2 scale is several times cheaper than at full size, and Clothing1M and
WebVision images are mostly larger than the 256 px the transforms resize to.
"""

from __future__ import annotations

import warnings

from PIL import Image

from deft_lightning.data.base import DatasetError


def load_rgb(path: str, decode_size: int | None = None) -> Image.Image:
    """Open ``path`` as an RGB image.

    With ``decode_size`` a JPEG is decoded at the smallest 1/1, 1/2, 1/4 or 1/8 scale that keeps
    both sides >= ``decode_size`` (``Image.draft``), so no resolution the transform needs is lost. An
    unreadable or corrupt file raises a :class:`DatasetError` naming it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. palette images with transparency
            with Image.open(path) as image:
                if decode_size and image.format == "JPEG":
                    image.draft("RGB", (int(decode_size), int(decode_size)))
                return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetError(
            f"Cannot read image {path}: {err}. Expected a readable image file (JPEG, PNG, ...); "
            "re-download or remove it from the dataset's list."
        ) from None
