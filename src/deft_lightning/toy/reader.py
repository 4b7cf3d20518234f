"""The downstream toy datasets as a reader: ``read_toy(root, **options) -> DatasetFiles``.

It lives in the toy package, not in ``deft_lightning.data.readers``, so the core never imports the toy
world: ``conf/dataset/toy.yaml`` and ``toy_v2.yaml`` reach it through ``reader._target_``.

- ``world="toy"`` (v1, the default): label the main object's shape (10 classes) in a domain the toy
  CLIP never saw (background kinds the web split never shows, light clutter, fainter objects, a
  quarter of them in colour–shape pairings held out of the web split).
- ``world="toy_v2"``: label its colour and shape (40 classes, :mod:`deft_lightning.toy.world_v2`),
  with a global hue shift (``hue_shift_deg``).

Generated in memory and deterministic in ``seed``, so there are no files and ``root`` is unused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from deft_lightning.data.base import DatasetError, DatasetFiles, Split

WORLDS = ("toy", "toy_v2")
# The v2 dataset's transform family: no padding or mirroring (pretraining never saw them; the
# generator already randomises position). Needs the "toy" family in deft_lightning.data.transforms.
V2_FAMILY = "toy"


def read_toy(
    root: str | Path | None = None,
    num_train: int = 5000,
    num_test: int = 2000,
    seed: int = 0,
    image_size: int = 32,
    world: str = "toy",
    hue_shift_deg: float | None = None,
    **domain_overrides,
) -> DatasetFiles:
    """Generate a toy dataset. ``domain_overrides`` replace fields of the downstream
    :class:`~deft_lightning.toy.generator.Domain` (e.g. ``distractors=(0, 2)`` for an easier world).
    """
    from deft_lightning.toy.generator import SHAPES, TOY, Domain, generate_labelled

    if world not in WORLDS:
        raise DatasetError(f"toy: unknown world {world!r} (dataset.reader.world); valid worlds are {list(WORLDS)}.")
    valid = {f.name for f in dataclasses.fields(Domain)}
    unknown = sorted(set(domain_overrides) - valid)
    if unknown:
        raise DatasetError(f"toy: unknown option(s) {unknown}; valid options are {sorted(valid)}.")
    if num_train <= 0 or num_test <= 0:
        raise DatasetError(f"toy: num_train and num_test must be positive, got {num_train} and {num_test}.")
    # YAML lists (also OmegaConf ListConfig) become the tuples Domain uses
    overrides = {k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for k, v in domain_overrides.items()}
    if world == "toy":
        if hue_shift_deg is not None:
            raise DatasetError("toy: hue_shift_deg is an option of world=toy_v2 only.")
        domain = dataclasses.replace(TOY, image_size=int(image_size), **overrides)
        train_images, train_labels = generate_labelled(int(num_train), seed=int(seed), domain=domain, stream=0)
        test_images, test_labels = generate_labelled(int(num_test), seed=int(seed), domain=domain, stream=1)
        names, family = list(SHAPES), "cifar"
    else:
        from deft_lightning.toy.world_v2 import V2, generate_labelled_v2

        v2 = dataclasses.replace(
            V2,
            domain=dataclasses.replace(V2.domain, image_size=int(image_size), **overrides),
            hue_shift_deg=V2.hue_shift_deg if hue_shift_deg is None else float(hue_shift_deg),
        )
        train_images, train_labels = generate_labelled_v2(int(num_train), seed=int(seed), world=v2, stream=0)
        test_images, test_labels = generate_labelled_v2(int(num_test), seed=int(seed), world=v2, stream=1)
        names, family = v2.class_names, V2_FAMILY
    return DatasetFiles(
        name=world,
        class_names=names,
        train=Split(clean_labels=train_labels, images=train_images),
        test={"test": Split(clean_labels=test_labels, images=test_images)},
        family=family,
    ).validate()
