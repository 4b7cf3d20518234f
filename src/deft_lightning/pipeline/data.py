"""Building the DataModule from the composed config and reading its files (one place for both entry points)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from deft_lightning.data.datamodule import NoisyLabelDataModule


def build_datamodule(cfg: DictConfig) -> NoisyLabelDataModule:
    """The DataModule of both phases, from its ``data`` node; each phase sets its own batch size
    (detector/backbone) before fitting."""
    return instantiate(cfg.data)


SKIPPED_IMAGES = "skipped_images.json"


def load_datamodule(cfg: DictConfig, run_dir: Path) -> NoisyLabelDataModule:
    """Build the DataModule, read the files and apply the noise; images left out by
    ``data.on_bad_image=skip`` are recorded in ``RUN/skipped_images.json`` (by global rank 0)."""
    dm = build_datamodule(cfg)
    dm.load()
    if dm.skipped_files and rank_zero_only.rank == 0:
        from deft_lightning.io import write_json

        write_json(Path(run_dir) / SKIPPED_IMAGES, {"count": len(dm.skipped_files), "files": dm.skipped_files})
    return dm
