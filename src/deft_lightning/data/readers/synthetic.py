"""A tiny synthetic dataset generated in memory: every class is a colour pattern plus noise.

It needs no files, so ``make run`` and the tests exercise the whole pipeline anywhere. It checks
mechanics, not quality (for a world where CLIP's premise holds, see ``dataset=toy``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deft_lightning.data.base import DatasetFiles, Split

COLOUR_WORDS = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "brown", "black", "white", "grey", "cyan"]


def read_synthetic(
    root: str | Path | None = None,
    num_classes: int = 5,
    num_train: int = 200,
    num_test: int = 100,
    image_size: int = 32,
    seed: int = 0,
) -> DatasetFiles:
    """Deterministic images: class prototypes (a random 4x4 colour grid upsampled) plus pixel noise."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, size=(num_classes, 4, 4, 3)).astype(np.float32)
    scale = image_size // 4
    prototypes = prototypes.repeat(scale, axis=1).repeat(scale, axis=2)

    def make(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(count) % num_classes
        rng.shuffle(labels)
        noise = rng.normal(0.0, 40.0, size=(count, image_size, image_size, 3)).astype(np.float32)
        images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels.astype(np.int64)

    train_images, train_labels = make(num_train)
    test_images, test_labels = make(num_test)
    names = [COLOUR_WORDS[i] if i < len(COLOUR_WORDS) else f"class_{i}" for i in range(num_classes)]
    return DatasetFiles(
        name="synthetic",
        class_names=names,
        train=Split(clean_labels=train_labels, images=train_images),
        test={"test": Split(clean_labels=test_labels, images=test_images)},
        family="cifar",
    ).validate()
