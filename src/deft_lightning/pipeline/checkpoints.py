"""What makes a run survive a kill: per-epoch ``last.ckpt`` written atomically, found again by ``resume``,
and refused with a clear message when damaged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from deft_lightning.errors import ArtifactError


LAST_CHECKPOINT = "last.ckpt"


def checkpoint_dir(run_dir: Path, phase: str) -> Path:
    return run_dir / "checkpoints" / phase


def resume_checkpoint(cfg: DictConfig, run_dir: Path, phase: str) -> str | None:
    """The phase's last.ckpt when resuming and one exists (else the phase starts from scratch)."""
    if not cfg.get("resume"):
        return None
    last = checkpoint_dir(run_dir, phase) / LAST_CHECKPOINT
    if last.is_file():
        check_checkpoint_file(last, phase)
        return str(last)
    if rank_zero_only.rank == 0:
        print(f"resume: no {last}; phase '{phase}' starts from its beginning.")
    return None


def check_checkpoint_file(path: Path, phase: str) -> None:
    """Refuse a damaged (truncated, empty, foreign) checkpoint with a message that names it.

    ``torch.save`` writes a zip archive whose directory sits at the end of the file: a truncated file has
    none. Reading the directory is cheap (no tensor is loaded); damage inside a member is left to torch.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
        return
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        reason = f"{type(error).__name__}: {error}"
    size = path.stat().st_size if path.exists() else 0
    raise ArtifactError(
        f"resume: the checkpoint {path} is damaged ({size} bytes; {reason}), e.g. truncated by a full disk or a "
        f"copy that did not finish. Delete it to restart phase '{phase}' from its beginning (finished phases are "
        "kept), or start a new run without resume."
    )


# ----- checkpoints ----------------------------------------------------------------------------------


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its target and renames it into place.

    Lightning writes checkpoints in place, so a kill during the write would leave a truncated
    ``last.ckpt`` that ``resume=true`` could not load; a rename is all-or-nothing on local disks.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path_str = os.fspath(path)
        if "://" in path_str:  # remote storage: keep Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path_str)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()


def build_checkpoint_callback(run_dir: Path, phase: str) -> ModelCheckpoint:
    """``checkpoints/<phase>/last.ckpt``, overwritten after every training epoch (validation included).

    Saved as the single "top-k" checkpoint under the name ``last``: with ``save_top_k=0`` Lightning
    writes ``save_last`` only when training ends, which is useless for resuming a killed run. No
    version counter, so a rerun in the same directory overwrites instead of writing ``last-v1.ckpt``.
    """
    return ModelCheckpoint(
        dirpath=checkpoint_dir(run_dir, phase),
        filename=Path(LAST_CHECKPOINT).stem,
        save_top_k=1,
        save_last=False,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
