"""Building the DataModule from the composed config and reading its files (one place for both entry points)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from deft_lightning.data.datamodule import NoisyLabelDataModule


def build_datamodule(cfg: DictConfig) -> NoisyLabelDataModule:
    """The DataModule of both phases; each phase sets its own batch size (detector/backbone) before fitting."""
    return NoisyLabelDataModule(
        reader=instantiate(cfg.dataset.reader),
        root=cfg.dataset.root,
        dataset_name=cfg.dataset.name,
        noise=OmegaConf.to_container(cfg.noise, resolve=True),
        batch_size=cfg.dataset.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        cache_dir=cfg.paths.cache_dir,
        pin_memory=cfg.data.pin_memory,
        persistent_workers=cfg.data.persistent_workers,
        val_fraction=float(cfg.data.get("val_fraction", 0.0) or 0.0),
        val_seed=int(cfg.data.get("val_seed", 0)),
        on_bad_image=str(cfg.data.get("on_bad_image", "error")),
        mask_mode=str(cfg.adapter.mask_mode),
    )


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
