"""One LightningDataModule for both phases: it owns the noisy labels and the clean mask.

Phase 1 trains on every sample with its given (noisy) label; the final inference pass reads the
training set with test-time transforms; phase 2 trains on the clean subset only (or on everything
when a baseline method or the reference loss-masking asks for it). The DataModule never knows about
CLIP: the model that consumes the images tells it the resolution and normalisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from deft_lightning.data.base import DatasetFiles
from deft_lightning.data.datasets import SplitDataset
from deft_lightning.data.noise import NoisyLabels, apply_noise
from deft_lightning.data.transforms import build_transform, decode_size
from deft_lightning.models.inputs import InputConfig


class NoisyLabelDataModule(L.LightningDataModule):
    def __init__(
        self,
        reader: Callable[..., DatasetFiles],
        root: str | None,
        dataset_name: str,
        noise: dict,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool | None = None,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.root = root
        self.dataset_name = dataset_name
        self.noise_options = dict(noise)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or 2 * batch_size)
        self.num_workers = int(num_workers)
        self.cache_dir = cache_dir
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.persistent_workers = (self.num_workers > 0) if persistent_workers is None else bool(persistent_workers)
        self.files: DatasetFiles | None = None
        self.noise: NoisyLabels | None = None
        self.inputs = InputConfig()
        self.clean_mask: np.ndarray | None = None

    # ----- data that every rank must agree on -------------------------------------------------
    def load(self) -> "NoisyLabelDataModule":
        """Read the files and apply the noise, once; deterministic, so every rank gets the same."""
        if self.files is None:
            root = None if self.root is None else str(Path(str(self.root)).expanduser())
            self.files = self.reader(root=root)
            options = self.noise_options
            self.noise = apply_noise(
                self.files.train,
                self.files.num_classes,
                mode=str(options.get("mode", "none")),
                ratio=options.get("ratio", 0.0),  # validated by apply_noise, with a clear message
                seed=int(options.get("seed", 0)),
                dataset_key=f"{self.dataset_name}-{len(self.files.train)}",
                cache_dir=self.cache_dir,
                label_file=options.get("label_file"),
            )
        return self

    def setup(self, stage: str | None = None) -> None:
        self.load()

    @property
    def class_names(self) -> list[str]:
        return self.load().files.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        return len(self.load().files.train)

    @property
    def given_labels(self) -> np.ndarray:
        return self.load().noise.given

    @property
    def true_labels(self) -> np.ndarray | None:
        return self.load().noise.true

    @property
    def eval_set_names(self) -> list[str]:
        return list(self.load().files.test)

    # ----- what the phases change -------------------------------------------------------------
    def configure_inputs(self, inputs: InputConfig) -> None:
        """Resolution and normalisation of the model about to consume the images."""
        self.inputs = inputs

    def set_clean_mask(self, mask: np.ndarray | None) -> None:
        """Restrict the training loader to the clean subset (None: every sample)."""
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (self.num_train,):
                raise ValueError(f"clean mask has shape {mask.shape}, expected ({self.num_train},)")
            if not mask.any():
                raise ValueError("the clean mask selects no sample: phase 2 would have nothing to train on")
        self.clean_mask = mask

    @property
    def train_indices(self) -> np.ndarray:
        if self.clean_mask is None:
            return np.arange(self.num_train)
        return np.flatnonzero(self.clean_mask)

    # ----- datasets and loaders ---------------------------------------------------------------
    def _native_size(self) -> int | None:
        images = self.files.train.images
        return None if images is None else int(images.shape[1])

    def train_dataset(self, train_transforms: bool = True) -> SplitDataset:
        self.load()
        transform = build_transform(self.files.family, train_transforms, self.inputs, self._native_size())
        return SplitDataset(
            self.files.train, self.noise.given, transform, decode_size=decode_size(self.files.family, self.inputs)
        )

    def _loader(self, dataset, batch_size: int, shuffle: bool, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset(train_transforms=True)
        if self.clean_mask is not None:
            dataset = Subset(dataset, self.train_indices.tolist())
        return self._loader(dataset, self.batch_size, shuffle=True)

    def inference_dataloader(self) -> DataLoader:
        """The whole training set with test-time transforms, in index order (the final pass)."""
        return self._loader(self.train_dataset(train_transforms=False), self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> list[DataLoader]:
        self.load()
        transform = build_transform(self.files.family, False, self.inputs, self._native_size())
        size = decode_size(self.files.family, self.inputs)
        return [
            self._loader(SplitDataset(split, split.best_labels, transform, with_index=False, decode_size=size),
                         self.eval_batch_size, shuffle=False)
            for split in self.files.test.values()
        ]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()
