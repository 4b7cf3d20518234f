"""The phase's Lightning Trainer from the config: ``trainer`` and ``callbacks`` are instantiated from their
YAML (lightning-hydra-template style); only what depends on the phase or the terminal is given here."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from deft_lightning import interrupts
from deft_lightning import resolvers  # noqa: F401  (registers the config resolvers)
from deft_lightning.pipeline.checkpoints import AtomicCheckpointIO, build_checkpoint_callback
from deft_lightning.pipeline.launch import check_launch
from deft_lightning.pipeline.loggers import build_logger


def build_trainer(cfg: DictConfig, phase: str, run_dir: Path, max_epochs: int, callbacks: list[Callback]) -> L.Trainer:
    """The phase's trainer. Progress: a bar (1-based epochs, no ``v_num``) when stdout is a terminal and
    ``callbacks.progress_bar`` is on; one plain line per epoch (``callbacks.epoch_lines``) in the run's log
    file always, and on stdout whenever no bar is drawn there (batch jobs, redirected output)."""
    from deft_lightning.cli import silence_known_noise
    from deft_lightning.progress import configure_logging, stdout_is_terminal

    interrupts.check()  # SIGTERM/SIGINT since the last phase: stop here (the finished phases are kept)
    check_launch(cfg)
    silence_known_noise()
    configure_logging()
    bar = bool(cfg.callbacks.progress_bar) and stdout_is_terminal()
    phase_callbacks, checkpointing = build_callbacks(cfg, phase, run_dir, bar)
    plugins = list(instantiate(cfg.trainer.get("plugins")) or []) + [AtomicCheckpointIO()]
    return instantiate(
        cfg.trainer,
        max_epochs=max_epochs,
        default_root_dir=str(run_dir),
        logger=build_logger(cfg, phase, run_dir),
        callbacks=list(callbacks) + phase_callbacks,
        plugins=plugins,
        enable_progress_bar=bar,
        enable_checkpointing=checkpointing,
    )


def build_callbacks(cfg: DictConfig, phase: str, run_dir: Path, bar: bool) -> tuple[list[Callback], bool]:
    """``callbacks.*`` instantiated for ``phase``, in the order they must run; and whether it checkpoints.

    After the phase's own callbacks: the user's ``extra``, the signal check, the bar, the epoch line (it
    reads what the others logged this epoch), then the checkpoint with its RNG state and the summary.
    """
    spec = cfg.callbacks
    built = build_extra_callbacks(cfg)
    if spec.stop_on_signal is not None:
        built.append(instantiate(spec.stop_on_signal))
    if bar and spec.bar is not None:
        built.append(instantiate(spec.bar))
    if spec.epoch_lines is not None:
        built.append(instantiate(spec.epoch_lines, phase=phase, console=not bar))
    checkpointing = spec.model_checkpoint is not None
    if checkpointing:
        built.append(build_checkpoint_callback(run_dir, phase, spec.model_checkpoint))
        if spec.rng_state is not None:
            built.append(instantiate(spec.rng_state))
    if spec.model_summary is not None and cfg.trainer.get("enable_model_summary", True):
        built.append(instantiate(spec.model_summary))
    return built, checkpointing


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
