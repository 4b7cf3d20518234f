"""One LightningDataModule for both phases: it owns the noisy labels and the clean mask.

Phase 1 trains on every sample with its given (noisy) label; the final inference pass reads the
training set with test-time transforms; phase 2 starts from :meth:`NoisyLabelDataModule.use_selection`,
the one way a clean selection reaches training (in-process, under spawn, on resume, from a file, and for
the per-epoch GMM refit). ``mask_mode`` says how the mask acts: ``subset`` trains on the clean indices
only; ``loss_mask`` (the reference) sees every sample and its batches carry ``is_clean`` for the loss.
The DataModule never knows about CLIP: the model that consumes the images tells it the resolution and
normalisation.

``val_fraction`` holds out a seeded part of the noisy training set, scored on its *given* labels, for
honest model selection (the paper selects on the test set). Held-out samples are excluded from the
training loaders of both phases, so neither the detector nor the adapted model has fitted them; the
final inference pass still covers every sample, so the selection file keeps one row per sample.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Subset

from deft_lightning.data.base import DatasetError, DatasetFiles
from deft_lightning.data.datasets import SplitDataset
from deft_lightning.data.image_io import find_bad_images
from deft_lightning.data.noise import NoisyLabels, apply_noise
from deft_lightning.data.transforms import build_transform, decode_size
from deft_lightning.distributed import unpadded_eval_sampler
from deft_lightning.errors import ConfigError, SelectionError
from deft_lightning.models.inputs import InputConfig

if TYPE_CHECKING:
    from deft_lightning.selection.clean_selection import CleanSelection

log = logging.getLogger(__name__)

HELDOUT_SET = "heldout"  # eval-set name of the held-out part of the noisy training set
MASK_MODES = ("subset", "loss_mask")  # adapter.mask_mode
SELECTION_SOURCES = ("inference", "online")  # detector.selection_source: which column of the selection is used


class WithCleanFlag(Dataset):
    """``(image, label, index, is_clean)``: the batch says which of its samples the loss counts."""

    def __init__(self, dataset: Dataset, is_clean: np.ndarray) -> None:
        self.dataset = dataset
        self.is_clean = torch.as_tensor(np.asarray(is_clean, dtype=bool))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int):
        image, label, index = self.dataset[position]
        return image, label, index, self.is_clean[index]


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
        val_fraction: float = 0.0,
        val_seed: int = 0,
        on_bad_image: str = "error",
        mask_mode: str = "subset",
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
        if str(mask_mode) not in MASK_MODES:
            raise ConfigError(f"adapter.mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        self.mask_mode = str(mask_mode)
        self.clean_mask: np.ndarray | None = None  # set by use_selection; None: every sample
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.val_seed = int(val_seed)
        if str(on_bad_image) not in ("error", "skip"):
            raise ConfigError(f"data.on_bad_image={on_bad_image!r} must be 'error' or 'skip'.")
        self.on_bad_image = str(on_bad_image)  # error | skip: what an unreadable image found before training does
        # images left out by on_bad_image=skip: {split, sample_id, path, reason}, for the run directory
        self.skipped_files: list[dict] = []
        self._heldout_mask: np.ndarray | None = None

    # ----- data that every rank must agree on -------------------------------------------------
    def load(self) -> "NoisyLabelDataModule":
        """Read the files and apply the noise, once; deterministic, so every rank gets the same."""
        if self.files is None:
            root = None if self.root is None else str(Path(str(self.root)).expanduser())
            self.files = self._screen_images(self.reader(root=root))
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

    def _screen_images(self, files: DatasetFiles) -> DatasetFiles:
        """The cheap image checks, before any noise or training: exists, not empty, a header PIL reads.

        ``on_bad_image=error`` stops here naming the files; ``skip`` leaves them out of their split and
        lists them in :attr:`skipped_files`. The checks depend only on the files, so every rank drops the
        same samples, and the noise is applied to what remains. A file that is damaged after its header
        (truncated) passes them and fails when decoded; ``inspect_data --verify-images`` finds those.
        """
        splits = [("train", files.train), *files.test.items()]
        found = []
        for name, split in splits:
            if split.paths is None:
                continue
            # 80-190 us a file (measured): a progress bar, on rank 0, once it takes seconds
            bar = len(split.paths) >= 20000 and rank_zero_only.rank == 0
            for i, reason in find_bad_images(split.paths, decode=False, workers=1, progress=bar, desc=name):
                found.append((name, i, split, reason))
        self.skipped_files = [
            {"split": name, "sample_id": split.sample_ids[i], "path": split.paths[i], "reason": reason}
            for name, i, split, reason in found
        ]
        if not found:
            return files
        if self.on_bad_image == "error":
            shown = "\n".join(f"  {f['path']}: {f['reason']}" for f in self.skipped_files[:5])
            more = f"\n  ... and {len(found) - 5} more" if len(found) > 5 else ""
            raise DatasetError(
                f"{files.name}: {len(found)} unreadable image(s), found before training:\n{shown}{more}\n"
                "Replace or remove them, or set data.on_bad_image=skip to leave them out (they are then listed "
                "in the run)."
            )
        if self.noise_options.get("label_file") and any(name == "train" for name, *_ in found):
            raise DatasetError(
                f"data.on_bad_image=skip would drop {sum(name == 'train' for name, *_ in found)} training image(s), "
                f"but noise.label_file={self.noise_options['label_file']} gives one label per original sample "
                "index; fix or replace the images instead (first: " + self.skipped_files[0]["path"] + ")."
            )
        for name, split in splits:
            drop = {i for n, i, _, _ in found if n == name}
            if not drop:
                continue
            kept = np.asarray([i for i in range(len(split)) if i not in drop], dtype=np.int64)
            if len(kept) == 0:
                raise DatasetError(
                    f"{files.name}: every image of the {name} split is unreadable (first: {split.paths[0]})."
                )
            if name == "train":
                files.train = split.subset(kept)
            else:
                files.test[name] = split.subset(kept)
        log.warning(
            "%s: data.on_bad_image=skip left out %d unreadable image(s), e.g. %s (%s)",
            files.name, len(found), self.skipped_files[0]["path"], self.skipped_files[0]["reason"],
        )
        return files

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
        """Test sets in reader order, then ``heldout`` (given labels) when ``val_fraction > 0``."""
        names = list(self.load().files.test)
        if self.val_fraction > 0:
            if HELDOUT_SET in names:
                raise ValueError(f"a test set is named {HELDOUT_SET!r}, which the held-out split needs")
            names.append(HELDOUT_SET)
        return names

    @property
    def heldout_mask(self) -> np.ndarray:
        """Training samples held out for model selection (all False when ``val_fraction == 0``).

        A pure function of (N, fraction, seed), so every rank and every phase holds out the same samples.
        """
        if self._heldout_mask is None:
            n = self.num_train
            mask = np.zeros(n, dtype=bool)
            if self.val_fraction > 0:
                count = min(max(1, int(round(self.val_fraction * n))), n - 1)
                mask[np.random.default_rng(self.val_seed).permutation(n)[:count]] = True
            self._heldout_mask = mask
        return self._heldout_mask

    @property
    def heldout_indices(self) -> np.ndarray:
        return np.flatnonzero(self.heldout_mask)

    # ----- what the phases change -------------------------------------------------------------
    def configure_inputs(self, inputs: InputConfig) -> None:
        """Resolution and normalisation of the model about to consume the images."""
        self.inputs = inputs

    def use_selection(self, selection: "CleanSelection | None", source: str = "inference") -> np.ndarray | None:
        """Train on ``selection``'s clean samples from now on (None: every sample, as phase 1 does).

        ``source="inference"`` reads ``is_clean`` (the final inference pass); ``"online"`` reads the
        selection's ``online_is_clean`` column (the last epoch's online decisions, as the reference).
        ``mask_mode`` decides what the mask does: ``subset`` restricts the training loader to the clean
        indices; ``loss_mask`` keeps every sample and batches carry ``is_clean``. The next
        ``train_dataloader`` call reflects the selection; returns the mask in use.
        """
        if source not in SELECTION_SOURCES:
            raise ConfigError(f"detector.selection_source must be one of {SELECTION_SOURCES}, got {source!r}")
        if selection is None:
            self._set_mask(None, "every sample")
            return None
        # one row per training sample, or a SelectionError naming the file (and the missing online column)
        mask = selection.online_mask(self.num_train) if source == "online" else selection.mask(self.num_train)
        where = selection.source or "the selection"
        self._set_mask(mask, where)
        return self.clean_mask

    def _set_mask(self, mask: np.ndarray | None, where: str) -> None:
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (self.num_train,):
                raise SelectionError(f"{where}: clean mask has shape {mask.shape}, expected ({self.num_train},)")
            if not (mask & ~self.heldout_mask).any():
                raise SelectionError(
                    f"{where} selects no (non-held-out) sample as clean: phase 2 would have nothing to train on"
                )
        self.clean_mask = mask

    @property
    def train_indices(self) -> np.ndarray:
        """Indices the training loader visits, minus the held-out split: the clean subset (``subset``) or
        every sample (no selection, or ``loss_mask``, where the batches carry ``is_clean`` instead)."""
        keep = ~self.heldout_mask
        if self.clean_mask is not None and self.mask_mode == "subset":
            keep = keep & self.clean_mask
        return np.flatnonzero(keep)

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

    def _loader(self, dataset, batch_size: int, shuffle: bool, drop_last: bool = False, sampler=None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset(train_transforms=True)
        indices = self.train_indices
        if len(indices) < self.num_train:
            dataset = Subset(dataset, indices.tolist())
        if self.clean_mask is not None and self.mask_mode == "loss_mask":
            dataset = WithCleanFlag(dataset, self.clean_mask)
        return self._loader(dataset, self.batch_size, shuffle=True)

    def inference_dataloader(self, indices: np.ndarray | None = None) -> DataLoader:
        """The training set with test-time transforms, in index order (the final pass).

        ``indices`` restricts it to some samples, e.g. one rank's share of a per-epoch loss pass;
        batches still carry the dataset indices.
        """
        dataset = self.train_dataset(train_transforms=False)
        if indices is not None:
            dataset = Subset(dataset, np.asarray(indices, dtype=np.int64).tolist())
        return self._loader(dataset, self.eval_batch_size, shuffle=False)

    def _eval_loader(self, dataset) -> DataLoader:
        """An evaluation loader; under DDP each rank reads an unpadded slice, so no sample counts twice."""
        return self._loader(dataset, self.eval_batch_size, shuffle=False, sampler=unpadded_eval_sampler(dataset))

    def val_dataloader(self) -> list[DataLoader]:
        self.load()
        transform = build_transform(self.files.family, False, self.inputs, self._native_size())
        size = decode_size(self.files.family, self.inputs)
        loaders = [
            self._eval_loader(SplitDataset(split, split.best_labels, transform, with_index=False, decode_size=size))
            for split in self.files.test.values()
        ]
        if self.val_fraction > 0:  # scored on the given labels: all a user with noisy data has
            heldout = SplitDataset(self.files.train, self.noise.given, transform, with_index=False, decode_size=size)
            loaders.append(self._eval_loader(Subset(heldout, self.heldout_indices.tolist())))
        return loaders

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()
