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
from deft_lightning.io import atomic_path


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
    """Writes a checkpoint beside its target and renames it into place (:func:`deft_lightning.io.atomic_path`).

    Lightning writes checkpoints in place, so a kill during the write would leave a truncated
    ``last.ckpt`` that ``resume=true`` could not load; a rename is all-or-nothing on local disks.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in os.fspath(path):  # remote storage: keep Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def build_checkpoint_callback(run_dir: Path, phase: str, spec: DictConfig | None = None) -> ModelCheckpoint:
    """``checkpoints/<phase>/last.ckpt``, overwritten after every training epoch (validation included).

    ``spec`` is ``callbacks.model_checkpoint`` (its settings and why: ``conf/callbacks/default.yaml``);
    without one, the shipped file's node.
    """
    from hydra.utils import instantiate

    if spec is None:
        spec = shipped_callback("model_checkpoint")
    return instantiate(spec, dirpath=str(checkpoint_dir(run_dir, phase)))


def shipped_callback(name: str) -> DictConfig:
    """A callback node of the shipped ``conf/callbacks/default.yaml``, read without composing the config."""
    from omegaconf import OmegaConf

    return OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "callbacks" / "default.yaml")[name]
