"""Phase 2: full fine-tuning of a pretrained backbone on the clean subset (or with a baseline loss)."""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from deft_lightning.errors import ConfigError


class AdapterModule(L.LightningModule):
    """Cross-entropy (or a robust loss) on a classifier; test accuracy every epoch, best and last.

    The DataModule owns the clean mask (``NoisyLabelDataModule.use_selection``). The configured criterion
    always gives per-sample losses, averaged over the samples the batch marks clean: a batch
    ``(images, labels, indices, is_clean)`` (``mask_mode=loss_mask``) counts the clean ones, and a batch
    without ``is_clean`` (``mask_mode=subset``, where the loader already holds only clean samples, or no
    selection) counts all. A batch with no clean sample contributes 0 instead of NaN.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        criterion: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        eval_set_names: list[str] | None = None,
        channels_last: bool = False,
        selection_set: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.num_classes = int(num_classes)
        self.criterion = criterion
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.eval_set_names = list(eval_set_names or ["test"])
        self.accuracy = nn.ModuleList(MulticlassAccuracy(num_classes=num_classes, average="micro") for _ in self.eval_set_names)
        self.best_accuracy = nn.ModuleList(MaxMetric() for _ in self.eval_set_names)
        for best in self.best_accuracy:
            best.persistent(True)  # in checkpoints: a resumed run keeps the best accuracy of earlier epochs
        if not hasattr(criterion, "reduction"):
            raise ConfigError(
                f"phase 2 needs a criterion with a `reduction` option (per-sample losses, weighted by the batch's "
                f"clean mask); {type(criterion).__name__} has none: give it reduction='mean'|'sum'|'none'"
            )
        criterion.reduction = "none"  # per-sample losses, averaged over the batch's clean samples below
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # accuracy of every eval set per epoch: model selection on a held-out split (`selection_set`) needs
        # the test accuracy *at* the epoch the held-out accuracy peaked, not just each set's own max
        if selection_set is not None and selection_set not in self.eval_set_names:
            raise ValueError(f"selection_set {selection_set!r} is not one of the eval sets {self.eval_set_names}")
        self.selection_set = selection_set
        self.history: list[dict[str, float]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, indices = batch[0], batch[1], batch[2]
        is_clean = batch[3] if len(batch) > 3 else None
        logits = self(images)
        per_sample = self.criterion(logits, labels, indices)
        if is_clean is None:  # every sample of the batch counts
            loss = per_sample.mean()
        else:
            weights = is_clean.to(device=per_sample.device, dtype=per_sample.dtype)
            loss = (per_sample * weights).sum() / weights.sum().clamp(min=1.0)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        images, labels = batch[0], batch[1]
        self.accuracy[dataloader_idx].update(self(images).argmax(dim=1), labels)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # a few batches, not an epoch's result: keep best and history clean
            for accuracy in self.accuracy:
                accuracy.reset()
            return
        self.history.append({"epoch": int(self.current_epoch)})
        for name, accuracy, best in zip(self.eval_set_names, self.accuracy, self.best_accuracy):
            value = accuracy.compute()
            self.history[-1][name] = float(value)
            best.update(value)
            self.log(f"val/{name}_acc", value, prog_bar=True, sync_dist=False)
            self.log(f"val/{name}_acc_best", best.compute(), sync_dist=False)
            accuracy.reset()
        if self.selection_set is not None:  # logged, so it also reaches the main process under ddp_spawn
            chosen = max(self.history, key=lambda row: row[self.selection_set])  # first epoch at the max
            self.log("val/val_selected_epoch", float(chosen["epoch"]), sync_dist=False)
            for name in self.eval_set_names:
                self.log(f"val/{name}_acc_val_selected", chosen[name], sync_dist=False)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["adapter_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("adapter_history", []))
