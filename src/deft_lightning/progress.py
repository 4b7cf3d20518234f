"""What a run reports while it trains: one plain line per epoch, and a progress bar that reads right.

Batch jobs redirect stdout to a file, where a progress bar is a stream of carriage returns and
nothing else; ``EpochLines`` writes one line per epoch instead (phase, epoch k/n, mean loss, online
precision / recall / F1, accuracy) through the ``deft_lightning`` logger, so it reaches stdout and the
run's log file alike. ``ProgressBar`` counts epochs from 1 and drops Lightning's ``v_num``.
"""

from __future__ import annotations

import logging
import math
import sys

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

LOGGER = logging.getLogger("deft_lightning")
# (label, metric) shown in the epoch line when the metric was logged this epoch
_SHOWN = (("kept", "train/online_clean_fraction"), ("P", "train/online_precision"),
          ("R", "train/online_recall"), ("F1", "train/online_f1"))


def stdout_is_terminal() -> bool:
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class EpochLines(Callback):
    """One line per finished training epoch, on global rank 0.

    ``console=False`` (a progress bar is drawn on the terminal) keeps the line out of the console
    handler (:class:`deft_lightning.cli.ConsoleFilter`) but still in the run's log file.
    """

    def __init__(self, phase: str, console: bool = True) -> None:
        self.phase = phase
        self.console = console
        self._loss_sum = 0.0
        self._batches = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss_sum, self._batches = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
            if math.isfinite(value):
                self._loss_sum += value
                self._batches += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            LOGGER.info(self.format(trainer), extra={"deft_console": self.console})

    def format(self, trainer: L.Trainer) -> str:
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if value.numel() == 1}
        parts = [f"{self.phase} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if self._batches:
            parts.append(f"loss {self._loss_sum / self._batches:.4f}")
        online = [f"{label} {100 * metrics[key]:.2f}" for label, key in _SHOWN if key in metrics]
        if online:
            parts.append("online clean set: " + " ".join(online))
        accuracy = [f"{key[4:-4]} {100 * value:.2f}%" for key, value in sorted(metrics.items())
                    if key.startswith("val/") and key.endswith("_acc")]
        if accuracy:
            parts.append("acc " + " ".join(accuracy))
        return " | ".join(parts)


class ProgressBar(TQDMProgressBar):
    """Lightning's bar with 1-based epochs ("Epoch 1/10") and without the meaningless ``v_num``."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


def configure_logging() -> None:
    """Let the epoch lines through: the root logger is kept at WARNING (open_clip is chatty at INFO)."""
    from deft_lightning.cli import ConsoleFilter

    if LOGGER.level == logging.NOTSET or LOGGER.level > logging.INFO:
        LOGGER.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not LOGGER.handlers:  # composed without Hydra's main: no handlers
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(ConsoleFilter())
        LOGGER.addHandler(handler)


def log_to_files(text: str) -> None:
    """Write ``text`` (e.g. the final summary, printed on stdout) into the run's log file(s) as well."""
    handlers = [h for logger in (LOGGER, logging.getLogger()) for h in logger.handlers
                if isinstance(h, logging.FileHandler)]
    if not handlers:
        return
    record = LOGGER.makeRecord(LOGGER.name, logging.INFO, __file__, 0, text, None, None)
    for handler in dict.fromkeys(handlers):  # once each
        handler.handle(record)
