"""Torch datasets over a :class:`~deft_lightning.data.base.Split` with the labels chosen by the noise model."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from deft_lightning.data.base import Split


class SplitDataset(Dataset):
    """Yields ``(image, label, index)`` for training and inference, ``(image, label)`` for test sets."""

    def __init__(
        self,
        split: Split,
        labels: np.ndarray,
        transform: Callable,
        with_index: bool = True,
        decode_size: int | None = None,
    ) -> None:
        self.split = split
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.transform = transform
        self.with_index = with_index
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.split)

    def image(self, index: int) -> Image.Image:
        if self.split.images is not None:
            return Image.fromarray(self.split.images[index])
        from deft_lightning.data.image_io import load_rgb

        return load_rgb(self.split.paths[index], self.decode_size)

    def __getitem__(self, index: int):
        image = self.transform(self.image(index))
        label = self.labels[index]
        if self.with_index:
            return image, label, index
        return image, label
