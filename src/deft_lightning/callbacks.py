"""Lightning callbacks that turn phase-1 outputs into files every rank can trust."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback

from deft_lightning.distributed import concat_rows, gather_rows_by_index
from deft_lightning.io import atomic_path
from deft_lightning.selection.clean_selection import CleanSelection, label_quality_scores, set_metrics


ONLINE_STAGING = "online_mask.npy"  # the last epoch's decisions between fit and the inference pass


class SelectionWriter(BasePredictionWriter):
    """Lightning's prediction writer for phase 1: collects every ``predict_step`` output (rows keyed by
    ``index``), gathers them from all ranks after the pass and writes the selection once, on rank 0.

    The CSV is renamed into place only when complete, and every rank waits for it before going on: the
    pipeline reads the file back (``read_selection_files``), the same way in-process and under spawn.
    Rules that need every sample at once (small-loss ranking, GMM) run on the gathered rows through
    the module's ``finalize_selection``; ``sample_ids`` and ``class_names`` make the file readable, and
    ``fingerprint`` ties it to the data it was made from. ``online_decisions`` is the file the
    ``OnlineSelectionRecorder`` left after the last training epoch (None when nothing was trained): it
    becomes the ``online_is_clean`` column. Beside the CSV: ``pred_probs.npy``, ``classes.txt`` (the
    class of each ``pred_probs`` column, one per line) and, when the module returned them
    (``report.features=true``), ``features.npy``: the L2-normalised image features of the pass.
    """

    def __init__(
        self,
        output_dir: str | Path,
        given_labels: np.ndarray,
        true_labels: np.ndarray | None,
        sample_ids: list[str] | None = None,
        class_names: list[str] | None = None,
        fingerprint=None,
        online_decisions: str | Path | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.fingerprint = fingerprint  # what the selection is made from (selection/fingerprint.py)
        self.given_labels = np.asarray(given_labels)
        self.true_labels = None if true_labels is None else np.asarray(true_labels)
        self.sample_ids = None if sample_ids is None else np.asarray(sample_ids, dtype=str)
        self.class_names = None if class_names is None else list(class_names)
        self.online_decisions = None if online_decisions is None else Path(online_decisions)
        self._rows: list[dict[str, torch.Tensor]] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        self._rows.append({name: value.detach() for name, value in prediction.items()})

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = gather_rows_by_index(pl_module, concat_rows(self._rows))
        self._rows = []
        index = rows["index"].numpy()
        if len(index) != len(self.given_labels) or not np.array_equal(index, np.arange(len(self.given_labels))):
            raise RuntimeError(
                f"the inference pass covered {len(index)} of {len(self.given_labels)} training samples; "
                "do not limit predict batches"
            )
        finalize = getattr(pl_module, "finalize_selection", None)
        if finalize is not None:
            rows = finalize(rows)
        class_probs = rows["class_probs"].float().numpy()
        p_clean = rows["p_clean"].double().numpy()
        given = self.given_labels[index]
        online = None
        if self.online_decisions is not None and self.online_decisions.is_file():
            online = np.load(self.online_decisions, allow_pickle=False).astype(np.int8)
        selection = CleanSelection(
            index=index,
            given_label=given,
            predicted_label=rows["predicted_label"].numpy(),
            p_clean=p_clean,
            is_clean=rows["is_clean"].numpy(),
            true_label=None if self.true_labels is None else self.true_labels[index],
            sample_id=None if self.sample_ids is None else self.sample_ids[index],
            class_names=self.class_names,
            fingerprint=self.fingerprint,
            label_quality=label_quality_scores(p_clean, given, class_probs),
            online_is_clean=None if online is None else online[index],
        )
        if trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            _save_npy(self.output_dir / "pred_probs.npy", class_probs)
            if "features" in rows:
                _save_npy(self.output_dir / "features.npy", rows["features"].float().numpy())
            if self.class_names is not None:
                with atomic_path(self.output_dir / "classes.txt") as tmp:
                    tmp.write_text("".join(f"{name}\n" for name in self.class_names), encoding="utf-8")
            selection.write_csv(self.output_dir / "selection.csv")
        trainer.strategy.barrier("selection_written")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


class OnlineSelectionRecorder(Callback):
    """Per-epoch view of the decisions made on the fly, and the reference's last-epoch decisions.

    A detector reports its decisions per training step: ``training_step`` returns
    ``{"loss", "index", "selected"}`` and this callback collects them from ``on_train_batch_end``'s
    outputs; a detector whose step returns the bare loss has no online decisions. Every epoch the rows of all ranks are gathered
    (de-duplicated by index) and logged as ``train/online_clean_fraction`` and, when the true labels are
    known, as ``train/online_{precision,recall,f1}`` among the samples seen that epoch. After the last
    epoch rank 0 stages them as ``online_mask.npy`` (-1 where a sample was not seen): a file because fit
    and the inference pass may run in different spawned processes, and a resumed phase 1 may not train at
    all. The ``SelectionWriter`` turns it into the ``online_is_clean`` column of ``selection.csv``.
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
        self._rows: list[torch.Tensor] = []

    @property
    def staged_path(self) -> Path:
        return self.output_dir / ONLINE_STAGING

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if isinstance(outputs, dict) and "selected" in outputs and "index" in outputs:
            self._rows.append(torch.stack([outputs["index"], outputs["selected"].long()], dim=1).detach())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        records, self._rows = self._rows, []
        if not records:
            return
        rows = torch.cat(records)
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
        _save_npy(self.staged_path, mask)


def online_metrics(selected: np.ndarray, truly_clean: np.ndarray | None) -> dict[str, float]:
    """Clean fraction, and precision/recall/F1 of "selected" as a detector of truly clean samples (the
    same ``set_metrics`` as the selection's own scores)."""
    out = {"clean_fraction": float(selected.mean()) if len(selected) else 0.0}
    if truly_clean is not None:
        out.update(set_metrics(selected, truly_clean))
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
