"""Lightning callbacks that turn phase-1 outputs into files every rank can trust."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from deft_lightning.distributed import concat_rows, gather_rows_by_index
from deft_lightning.io import atomic_path
from deft_lightning.selection.clean_selection import CleanSelection


class SelectionWriter(Callback):
    """After the inference pass: gather (index, p_clean, prediction) from all ranks, write once on rank 0.

    The CSV is renamed into place only when complete, and every rank waits for it before going on.
    """

    def __init__(self, output_dir: str | Path, given_labels: np.ndarray, true_labels: np.ndarray | None) -> None:
        self.output_dir = Path(output_dir)
        self.given_labels = np.asarray(given_labels)
        self.true_labels = None if true_labels is None else np.asarray(true_labels)
        self.selection: CleanSelection | None = None
        self.class_probs: np.ndarray | None = None

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = gather_rows_by_index(pl_module, concat_rows(pl_module.predictions))
        index = rows["index"].numpy()
        if len(index) != len(self.given_labels) or not np.array_equal(index, np.arange(len(self.given_labels))):
            raise RuntimeError(
                f"the inference pass covered {len(index)} of {len(self.given_labels)} training samples; "
                "do not limit predict batches"
            )
        self.selection = CleanSelection(
            index=index,
            given_label=self.given_labels[index],
            predicted_label=rows["predicted_label"].numpy(),
            p_clean=rows["p_clean"].double().numpy(),
            is_clean=rows["is_clean"].numpy(),
            true_label=None if self.true_labels is None else self.true_labels[index],
        )
        self.class_probs = rows["class_probs"].float().numpy()
        if trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.output_dir / "pred_probs.npy") as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, self.class_probs)
            self.selection.write_csv(self.output_dir / "selection.csv")
        trainer.strategy.barrier("selection_written")


class OnlineSelectionRecorder(Callback):
    """Saves the decisions made on the fly in the last training epoch (the reference's mask).

    Written as ``online_mask.npy`` (-1 where a sample was not seen) so the two masks can be compared.
    """

    def __init__(self, output_dir: str | Path, num_samples: int) -> None:
        self.output_dir = Path(output_dir)
        self.num_samples = int(num_samples)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not pl_module.online_records or trainer.current_epoch + 1 < (trainer.max_epochs or 0):
            return
        rows = torch.cat(pl_module.online_records)
        gathered = gather_rows_by_index(pl_module, {"index": rows[:, 0], "selected": rows[:, 1]})
        if trainer.is_global_zero:
            mask = np.full(self.num_samples, -1, dtype=np.int8)
            mask[gathered["index"].numpy()] = gathered["selected"].numpy()
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.output_dir / "online_mask.npy") as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, mask)
