"""Building Lightning trainers, loggers and the DataModule from the composed config."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from deft_lightning.data.datamodule import NoisyLabelDataModule


def build_datamodule(cfg: DictConfig, batch_size: int | None = None) -> NoisyLabelDataModule:
    return NoisyLabelDataModule(
        reader=instantiate(cfg.dataset.reader),
        root=cfg.dataset.root,
        dataset_name=cfg.dataset.name,
        noise=OmegaConf.to_container(cfg.noise, resolve=True),
        batch_size=batch_size or cfg.dataset.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        cache_dir=cfg.paths.cache_dir,
        pin_memory=cfg.data.pin_memory,
        persistent_workers=cfg.data.persistent_workers,
    )


def checkpoint_dir(run_dir: Path, phase: str) -> Path:
    return run_dir / "checkpoints" / phase


def resume_checkpoint(cfg: DictConfig, run_dir: Path, phase: str) -> str | None:
    """The phase's last.ckpt when resuming and one exists."""
    last = checkpoint_dir(run_dir, phase) / "last.ckpt"
    return str(last) if cfg.get("resume") and last.is_file() else None


def build_logger(cfg: DictConfig, phase: str):
    logger_cfg = cfg.get("logger")
    if not logger_cfg or "_target_" not in logger_cfg:
        return False
    target = str(logger_cfg._target_)
    if target.endswith("WandbLogger"):
        job = _job_name()
        return instantiate(logger_cfg, name=f"{job}-{phase}" if job else phase, job_type=phase)
    return instantiate(logger_cfg, name=phase)


def build_trainer(cfg: DictConfig, phase: str, run_dir: Path, max_epochs: int, callbacks: list[Callback]) -> L.Trainer:
    callbacks = list(callbacks)
    if cfg.callbacks.get("checkpoint", True):
        callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir(run_dir, phase), save_last=True, save_top_k=0))
    return instantiate(
        cfg.trainer,
        max_epochs=max_epochs,
        default_root_dir=str(run_dir),
        logger=build_logger(cfg, phase),
        callbacks=callbacks,
        enable_progress_bar=bool(cfg.callbacks.get("progress_bar", True)),
        enable_checkpointing=bool(cfg.callbacks.get("checkpoint", True)),
    )


def _job_name() -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        return hydra_cfg.job.override_dirname or hydra_cfg.job.name
    except Exception:  # not running under Hydra's main (tests compose the config directly)
        return None
