"""The `gmm` training baseline (SPEC §4): a per-epoch GMM split of the training set into clean and noisy.

DivideMix-style, with one network: after ``warmup_epochs`` of CE on every given label, before each
later epoch the current model scores every training sample (test-time transforms, so augmentation
noise does not blur the two loss modes), a two-component GMM is fitted on the min-max normalised
losses, and the next epoch trains on the low-loss mode only. The selection for epoch e is computed at
the end of epoch e-1 -- the weights are the same as at the start of epoch e -- because the training
loader of epoch e is built before any ``on_train_epoch_start`` hook runs.

The refit only hands a :class:`CleanSelection` to ``datamodule.use_selection``, the same door every
phase-2 selection goes through; the DataModule's ``mask_mode`` decides what it does. The trainer must
rebuild the training loader every epoch (``reload_dataloaders_every_n_epochs=1``, which
``run_adaptation`` sets in the trainer config for this method); the callback checks, and changes nothing.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from deft_lightning.data.datamodule import NoisyLabelDataModule
from deft_lightning.distributed import concat_rows, gather_rows_by_index
from deft_lightning.errors import ConfigError
from deft_lightning.io import write_json
from deft_lightning.selection.clean_selection import CleanSelection
from deft_lightning.selection.gmm import gmm_clean_mask


class GMMRefit(Callback):
    """Refits the GMM selection every epoch after warm-up and hands it to the DataModule.

    Held-out samples (``data.val_fraction``) are neither scored nor selected. The latest selection is
    part of the callback state, so a resumed run continues with the mask it was about to use.
    With ``records_path``, rank 0 rewrites the per-refit records there after every refit, so they
    survive process boundaries (``ddp_spawn`` hands only weights and logged metrics back).
    """

    def __init__(
        self,
        datamodule: NoisyLabelDataModule,
        warmup_epochs: int = 1,
        threshold: float = 0.5,
        seed: int = 0,
        records_path: str | Path | None = None,
    ) -> None:
        if int(warmup_epochs) < 0:
            raise ConfigError(f"method.gmm.warmup_epochs must be >= 0, got {warmup_epochs}")
        self.datamodule = datamodule
        self.warmup_epochs = int(warmup_epochs)
        self.threshold = float(threshold)
        self.seed = int(seed)
        self.mask: torch.Tensor | None = None  # bool (N,), the selection for epoch `mask_epoch`
        self.mask_epoch: int | None = None
        self.records: list[dict[str, Any]] = []  # one per refit: epoch, clean fraction, precision/recall
        self.records_path = None if records_path is None else Path(records_path)

    # ----- Lightning hooks --------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.reload_dataloaders_every_n_epochs != 1:
            raise ConfigError(
                "method=gmm changes the training selection every epoch, so the trainer must rebuild the training "
                f"loader every epoch: trainer.reload_dataloaders_every_n_epochs=1 (got "
                f"{trainer.reload_dataloaders_every_n_epochs})"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after a checkpoint's weights and callback state are restored, before the first loader is built.
        if self.mask is not None:
            self.datamodule.use_selection(self._selection(self.mask.numpy(), self.mask_epoch))
        elif self.warmup_epochs == 0:
            self.refit(trainer, pl_module, epoch=0)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch >= self.warmup_epochs and self.mask_epoch != epoch:
            # only after resuming a finished run with more epochs: no refit ran for this epoch
            rank_zero_warn(f"GMM: epoch {epoch} trains on the selection made for epoch {self.mask_epoch}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        next_epoch = trainer.current_epoch + 1
        max_epochs = trainer.max_epochs
        if next_epoch < self.warmup_epochs or (max_epochs is not None and 0 <= max_epochs <= next_epoch):
            return
        record = self.refit(trainer, pl_module, next_epoch)
        pl_module.log("gmm/clean_fraction", record["clean_fraction"], on_epoch=True, sync_dist=False)
        for key in ("precision", "recall"):
            if key in record:
                pl_module.log(f"gmm/{key}", record[key], on_epoch=True, sync_dist=False)

    def state_dict(self) -> dict[str, Any]:
        return {"mask": self.mask, "mask_epoch": self.mask_epoch, "records": list(self.records)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.mask = state_dict.get("mask")
        self.mask_epoch = state_dict.get("mask_epoch")
        self.records = list(state_dict.get("records", []))

    # ----- the selection ----------------------------------------------------------------------
    def refit(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> dict[str, Any]:
        """Score the training pool with the current weights, fit the GMM, apply the mask for ``epoch``."""
        dm = self.datamodule
        pool = np.flatnonzero(~dm.heldout_mask)
        index, losses = per_sample_losses(trainer, pl_module, dm, pool)
        if not np.array_equal(index, pool):
            raise RuntimeError(f"the GMM loss pass covered {len(index)} of {len(pool)} training samples")
        pool_mask, posterior = gmm_clean_mask(losses, seed=self.seed, threshold=self.threshold)
        if not pool_mask.any():
            warnings.warn(f"GMM selected no sample for epoch {epoch} (threshold {self.threshold}); training on all")
            pool_mask = np.ones_like(pool_mask)
        mask = np.zeros(dm.num_train, dtype=bool)
        mask[pool] = pool_mask
        mask = np.asarray(trainer.strategy.broadcast(mask, src=0), dtype=bool)  # one selection for all ranks
        p_clean = np.zeros(dm.num_train)
        p_clean[pool] = posterior
        dm.use_selection(self._selection(mask, epoch, p_clean))
        self.mask, self.mask_epoch = torch.from_numpy(mask), int(epoch)

        record = {"epoch": int(epoch), **CleanSelection(
            pool, dm.given_labels[pool], dm.given_labels[pool], posterior, mask[pool],
            None if dm.true_labels is None else dm.true_labels[pool],
        ).metrics()}
        self.records.append(record)
        if self.records_path is not None and trainer.is_global_zero:
            write_json(self.records_path, self.records)
        return record

    def load_records(self) -> list[dict[str, Any]]:
        """The refit records of this process, or of the worker processes that wrote ``records_path``."""
        if self.records or self.records_path is None or not self.records_path.is_file():
            return list(self.records)
        return json.loads(self.records_path.read_text())

    def _selection(self, mask: np.ndarray, epoch: int | None, p_clean: np.ndarray | None = None) -> CleanSelection:
        """One row per training sample (held-out rows never clean); the given label stands as the prediction."""
        dm = self.datamodule
        given = dm.given_labels
        return CleanSelection(np.arange(dm.num_train), given, given, mask.astype(float) if p_clean is None else p_clean,
                              mask, dm.true_labels, source=f"the GMM refit for epoch {epoch}")


@torch.no_grad()
def per_sample_losses(
    trainer: L.Trainer, pl_module: L.LightningModule, dm: NoisyLabelDataModule, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted index, CE loss) over ``indices``, each rank scoring a strided share, gathered by index."""
    share = indices[trainer.global_rank :: trainer.world_size]
    was_training = pl_module.training
    pl_module.eval()
    rows: list[dict[str, torch.Tensor]] = []
    try:
        for images, labels, batch_index in dm.inference_dataloader(share):
            images, labels = images.to(pl_module.device), labels.to(pl_module.device)
            with trainer.precision_plugin.forward_context():
                logits = pl_module(images)
            rows.append({"index": batch_index.to(pl_module.device),
                         "loss": F.cross_entropy(logits.float(), labels, reduction="none")})
    finally:
        pl_module.train(was_training)
    if not rows:  # more ranks than samples: this rank contributes nothing, but still joins the gather
        rows = [{"index": torch.empty(0, dtype=torch.long, device=pl_module.device),
                 "loss": torch.empty(0, device=pl_module.device)}]
    gathered = gather_rows_by_index(pl_module, concat_rows(rows))
    return gathered["index"].numpy(), gathered["loss"].double().numpy()
