"""One reader per dataset family: files in the official layout -> :class:`~deft_lightning.data.base.DatasetFiles`.

``READERS`` maps a dataset name to its reader, ``read_<name>(root, **options) -> DatasetFiles``; configs
reach the same functions through ``dataset.reader._target_``. The toy world's reader lives in the app
(:mod:`deft_lightning.toy.reader`, targeted by ``conf/dataset/toy.yaml``): the core never imports it.
"""

from __future__ import annotations

from collections.abc import Callable

from deft_lightning.data.base import DatasetFiles
from deft_lightning.data.readers.cifar import read_cifar10, read_cifar100, read_cifar100n
from deft_lightning.data.readers.clothing1m import read_clothing1m
from deft_lightning.data.readers.fine_grained import read_cub200, read_stanford_cars, read_tiny_imagenet
from deft_lightning.data.readers.synthetic import read_synthetic
from deft_lightning.data.readers.user import read_csv, read_imagefolder
from deft_lightning.data.readers.webvision import read_webvision

READERS: dict[str, Callable[..., DatasetFiles]] = {
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "cifar100n": read_cifar100n,
    "tiny_imagenet": read_tiny_imagenet,
    "stanford_cars": read_stanford_cars,
    "cub200": read_cub200,
    "clothing1m": read_clothing1m,
    "webvision": read_webvision,
    "imagefolder": read_imagefolder,
    "csv": read_csv,
    "synthetic": read_synthetic,
}

__all__ = ["READERS"]
