"""Lightning callbacks that turn phase-1 outputs into files every rank can trust."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from deft_lightning.distributed import concat_rows, gather_rows_by_index
from deft_lightning.io import atomic_path
from deft_lightning.selection.clean_selection import CleanSelection, label_quality_scores


class SelectionWriter(Callback):
    """After the inference pass: gather (index, p_clean, prediction) from all ranks, write once on rank 0.

    The CSV is renamed into place only when complete, and every rank waits for it before going on.
    Rules that need every sample at once (small-loss ranking, GMM) run on the gathered rows through
    the module's ``finalize_selection``; ``sample_ids`` and ``class_names`` make the file readable, and
    ``fingerprint`` ties it to the data it was made from. Beside the CSV: ``pred_probs.npy``,
    ``classes.txt`` (the class of each ``pred_probs`` column, one per line) and, when the module returned
    them (``report.features=true``), ``features.npy``: the L2-normalised image features of the pass.
    """

    def __init__(
        self,
        output_dir: str | Path,
        given_labels: np.ndarray,
        true_labels: np.ndarray | None,
        sample_ids: list[str] | None = None,
        class_names: list[str] | None = None,
        fingerprint=None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.fingerprint = fingerprint  # what the selection is made from (selection/fingerprint.py)
        self.given_labels = np.asarray(given_labels)
        self.true_labels = None if true_labels is None else np.asarray(true_labels)
        self.sample_ids = None if sample_ids is None else np.asarray(sample_ids, dtype=str)
        self.class_names = None if class_names is None else list(class_names)
        self.selection: CleanSelection | None = None
        self.class_probs: np.ndarray | None = None
        self.features: np.ndarray | None = None

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = gather_rows_by_index(pl_module, concat_rows(pl_module.predictions))
        index = rows["index"].numpy()
        if len(index) != len(self.given_labels) or not np.array_equal(index, np.arange(len(self.given_labels))):
            raise RuntimeError(
                f"the inference pass covered {len(index)} of {len(self.given_labels)} training samples; "
                "do not limit predict batches"
            )
        finalize = getattr(pl_module, "finalize_selection", None)
        if finalize is not None:
            rows = finalize(rows)
        self.class_probs = rows["class_probs"].float().numpy()
        p_clean = rows["p_clean"].double().numpy()
        given = self.given_labels[index]
        self.selection = CleanSelection(
            index=index,
            given_label=self.given_labels[index],
            predicted_label=rows["predicted_label"].numpy(),
            p_clean=p_clean,
            is_clean=rows["is_clean"].numpy(),
            true_label=None if self.true_labels is None else self.true_labels[index],
            sample_id=None if self.sample_ids is None else self.sample_ids[index],
            class_names=self.class_names,
            fingerprint=self.fingerprint,
            label_quality=label_quality_scores(p_clean, given, self.class_probs),
        )
        if "features" in rows:
            self.features = rows["features"].float().numpy()
        if trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            _save_npy(self.output_dir / "pred_probs.npy", self.class_probs)
            if self.features is not None:
                _save_npy(self.output_dir / "features.npy", self.features)
            if self.class_names is not None:
                with atomic_path(self.output_dir / "classes.txt") as tmp:
                    tmp.write_text("".join(f"{name}\n" for name in self.class_names), encoding="utf-8")
            self.selection.write_csv(self.output_dir / "selection.csv")
        trainer.strategy.barrier("selection_written")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


class OnlineSelectionRecorder(Callback):
    """Per-epoch view of the decisions made on the fly, and the reference's last-epoch mask.

    Every epoch the (index, selected) records of all ranks are gathered (de-duplicated by index) and
    logged as ``train/online_clean_fraction`` and, when the true labels are known, as
    ``train/online_{precision,recall,f1}`` of the selection among the samples seen that epoch. The
    module only keeps records; the labels come from the DataModule through this callback.
    After the last epoch the mask is written as ``online_mask.npy`` (-1 where a sample was not seen),
    so that it can be compared with the inference-pass selection.
    """

    def __init__(
        self,
        output_dir: str | Path,
        num_samples: int,
        given_labels: np.ndarray | None = None,
        true_labels: np.ndarray | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.num_samples = int(num_samples)
        known = given_labels is not None and true_labels is not None
        self.truly_clean = (np.asarray(given_labels) == np.asarray(true_labels)) if known else None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not pl_module.online_records:
            return
        rows = torch.cat(pl_module.online_records)
        gathered = gather_rows_by_index(pl_module, {"index": rows[:, 0], "selected": rows[:, 1]})
        index = gathered["index"].numpy()
        selected = gathered["selected"].numpy().astype(bool)
        for name, value in online_metrics(selected, None if self.truly_clean is None else self.truly_clean[index]).items():
            pl_module.log(f"train/online_{name}", value, on_step=False, on_epoch=True, sync_dist=False)
        if trainer.current_epoch + 1 < (trainer.max_epochs or 0) or not trainer.is_global_zero:
            return
        mask = np.full(self.num_samples, -1, dtype=np.int8)
        mask[index] = selected
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.output_dir / "online_mask.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, mask)


def online_metrics(selected: np.ndarray, truly_clean: np.ndarray | None) -> dict[str, float]:
    """Clean fraction, and precision/recall/F1 of "selected" as a detector of truly clean samples."""
    out = {"clean_fraction": float(selected.mean()) if len(selected) else 0.0}
    if truly_clean is not None:
        hits = float(np.sum(selected & truly_clean))
        precision = hits / max(float(selected.sum()), 1.0)
        recall = hits / max(float(truly_clean.sum()), 1.0)
        out.update(precision=precision, recall=recall,
                   f1=2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return out


class RNGStateCheckpoint(Callback):
    """Puts the random generators' states into every checkpoint and restores them on resume.

    Lightning restores weights, optimiser, schedulers and loop counters but not the RNGs; without
    them the epochs after a resume would shuffle, augment and draw complementary labels differently
    from an uninterrupted run. Restored at load time, i.e. just before the next epoch starts. Under
    DDP every rank starts from the same seed and draws in lockstep, so rank 0's states serve all.
    Stored as tensors and plain values only, so checkpoints load with ``weights_only=True``.
    """

    def state_dict(self) -> dict:
        import random

        keys, pos, has_gauss, cached = np.random.get_state()[1:]
        state = {
            "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        import random

        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy = state_dict["numpy"]
        np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                             numpy["has_gauss"], numpy["cached_gaussian"]))
        torch.set_rng_state(state_dict["torch"])
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
