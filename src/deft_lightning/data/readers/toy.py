"""The downstream ``toy`` dataset: label the main object's shape, in a domain the toy CLIP never saw.

Classes are the shape words the toy CLIP's text tower learned from web captions, but the images
come from a shifted domain (background kinds the web split never shows, light clutter, fainter
objects, a quarter of them in colour–shape pairings held out of the web split), so zero-shot
recognition is good but imperfect (~58 % with the default toy CLIP):
room for DEFT to detect noisy labels and to improve by adaptation. Generated in memory and
deterministic in ``seed``, so there are no files and ``root`` is unused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from deft_lightning.data.base import DatasetError, DatasetFiles, Split


def read_toy(
    root: str | Path | None = None,
    num_train: int = 5000,
    num_test: int = 2000,
    seed: int = 0,
    image_size: int = 32,
    **domain_overrides,
) -> DatasetFiles:
    """Generate the toy dataset. ``domain_overrides`` replace fields of the downstream
    :class:`~deft_lightning.toy.generator.Domain` (e.g. ``distractors=(0, 2)`` for an easier world).
    """
    from deft_lightning.toy.generator import SHAPES, TOY, Domain, generate_labelled

    valid = {f.name for f in dataclasses.fields(Domain)}
    unknown = sorted(set(domain_overrides) - valid)
    if unknown:
        raise DatasetError(f"toy: unknown option(s) {unknown}; valid options are {sorted(valid)}.")
    # YAML lists (also OmegaConf ListConfig) become the tuples Domain uses
    overrides = {k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in domain_overrides.items()}
    domain = dataclasses.replace(TOY, image_size=int(image_size), **overrides)
    if num_train <= 0 or num_test <= 0:
        raise DatasetError(f"toy: num_train and num_test must be positive, got {num_train} and {num_test}.")
    train_images, train_labels = generate_labelled(int(num_train), seed=int(seed), domain=domain, stream=0)
    test_images, test_labels = generate_labelled(int(num_test), seed=int(seed), domain=domain, stream=1)
    return DatasetFiles(
        name="toy",
        class_names=list(SHAPES),
        train=Split(clean_labels=train_labels, images=train_images),
        test={"test": Split(clean_labels=test_labels, images=test_images)},
        family="cifar",
    ).validate()
