"""The phase's Lightning Trainer from the config: progress output, signal handling, checkpointing, loggers."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from deft_lightning import interrupts
from deft_lightning import resolvers  # noqa: F401  (registers the config resolvers)
from deft_lightning.callbacks import RNGStateCheckpoint
from deft_lightning.pipeline.checkpoints import AtomicCheckpointIO, build_checkpoint_callback
from deft_lightning.pipeline.launch import check_launch
from deft_lightning.pipeline.loggers import build_logger


def build_trainer(cfg: DictConfig, phase: str, run_dir: Path, max_epochs: int, callbacks: list[Callback]) -> L.Trainer:
    """The phase's trainer. Progress: a bar (1-based epochs, no ``v_num``) when stdout is a terminal and
    ``callbacks.progress_bar`` is on; one plain line per epoch (``progress.EpochLines``) in the run's log
    file always, and on stdout whenever no bar is drawn there (batch jobs, redirected output)."""
    from deft_lightning.cli import silence_known_noise
    from deft_lightning.progress import EpochLines, ProgressBar, configure_logging, stdout_is_terminal

    interrupts.check()  # SIGTERM/SIGINT since the last phase: stop here (the finished phases are kept)
    check_launch(cfg)
    silence_known_noise()
    configure_logging()
    bar = bool(cfg.callbacks.get("progress_bar", True)) and stdout_is_terminal()
    # the epoch line last: it reads what the other callbacks (online selection metrics) logged this epoch
    callbacks = list(callbacks) + build_extra_callbacks(cfg) + [StopOnSignal()]
    if bar:
        callbacks.append(ProgressBar())
    callbacks.append(EpochLines(phase, console=not bar))
    checkpointing = bool(cfg.callbacks.get("checkpoint", True))
    if checkpointing:
        callbacks += [build_checkpoint_callback(run_dir, phase), RNGStateCheckpoint()]
    plugins = list(instantiate(cfg.trainer.get("plugins")) or []) + [AtomicCheckpointIO()]
    return instantiate(
        cfg.trainer,
        max_epochs=max_epochs,
        default_root_dir=str(run_dir),
        logger=build_logger(cfg, phase, run_dir),
        callbacks=callbacks,
        plugins=plugins,
        enable_progress_bar=bar,
        enable_checkpointing=checkpointing,
    )


class StopOnSignal(Callback):
    """Ends validation and the inference pass at the next batch after SIGTERM/SIGINT in a single process.

    Training needs nothing: Lightning's loops already stop there on SIGTERM (and tell the other ranks).
    Evaluation under DDP is left alone: one rank leaving early would hang the others' next collective.
    """

    def _check(self, trainer: L.Trainer) -> None:
        if trainer.world_size == 1:
            interrupts.check()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._check(trainer)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._check(trainer)


def build_extra_callbacks(cfg: DictConfig) -> list[Callback]:
    """``callbacks.extra``: named Lightning callbacks added to both phases (null entries are skipped)."""
    extra = cfg.callbacks.get("extra") or {}
    return [instantiate(spec) for spec in extra.values() if spec]
