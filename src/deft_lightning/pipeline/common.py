"""Building Lightning trainers, loggers and the DataModule from the composed config.

Also what makes a run survive a kill (atomic per-epoch checkpoints with RNG state, ``resume``) and
what keeps W&B runs apart (one run per job and phase, grouped by sweep, finished after each phase).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from deft_lightning import interrupts
from deft_lightning import resolvers  # noqa: F401  (registers the config resolvers)
from deft_lightning.callbacks import RNGStateCheckpoint
from deft_lightning.data.datamodule import NoisyLabelDataModule
from deft_lightning.errors import ArtifactError, ConfigError


def build_datamodule(cfg: DictConfig, batch_size: int | None = None) -> NoisyLabelDataModule:
    return NoisyLabelDataModule(
        reader=instantiate(cfg.dataset.reader),
        root=cfg.dataset.root,
        dataset_name=cfg.dataset.name,
        noise=OmegaConf.to_container(cfg.noise, resolve=True),
        batch_size=batch_size or cfg.dataset.batch_size,
        eval_batch_size=cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        cache_dir=cfg.paths.cache_dir,
        pin_memory=cfg.data.pin_memory,
        persistent_workers=cfg.data.persistent_workers,
        val_fraction=float(cfg.data.get("val_fraction", 0.0) or 0.0),
        val_seed=int(cfg.data.get("val_seed", 0)),
        on_bad_image=str(cfg.data.get("on_bad_image", "error")),
    )


SKIPPED_IMAGES = "skipped_images.json"


def load_datamodule(cfg: DictConfig, run_dir: Path) -> NoisyLabelDataModule:
    """Build the DataModule, read the files and apply the noise; images left out by
    ``data.on_bad_image=skip`` are recorded in ``RUN/skipped_images.json`` (by global rank 0)."""
    dm = build_datamodule(cfg)
    dm.load()
    if dm.skipped_files and rank_zero_only.rank == 0:
        from deft_lightning.io import write_json

        write_json(Path(run_dir) / SKIPPED_IMAGES, {"count": len(dm.skipped_files), "files": dm.skipped_files})
    return dm


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


# ----- loggers ----------------------------------------------------------------------------------
def build_logger(cfg: DictConfig, phase: str, run_dir: Path | None = None):
    logger_cfg = cfg.get("logger")
    if not logger_cfg or "_target_" not in logger_cfg:
        return False
    target = str(logger_cfg._target_)
    if target.endswith("WandbLogger"):
        require_wandb()
        # partial first: ``config`` (the run's config for W&B) is also the name of instantiate's own argument
        logger = instantiate(logger_cfg, _partial_=True)(**wandb_run_options(cfg, phase, run_dir or Path(cfg.paths.output_dir)))
        # Lightning passes anonymous=None to wandb.init, which then warns that the setting is deprecated
        getattr(logger, "_wandb_init", {}).pop("anonymous", None)
        return logger
    return instantiate(logger_cfg, name=phase)


WANDB_INSTALL = 'pip install "deft_lightning[wandb]" (from a checkout: pip install ".[wandb]")'


def require_wandb() -> None:
    """``logger=wandb`` needs the optional ``wandb`` package: say how to get it, or how to do without."""
    try:
        import wandb  # noqa: F401
    except ImportError as error:
        raise ConfigError(
            f"logger=wandb needs the wandb package, which is not installed ({error}). Install it with "
            f"{WANDB_INSTALL}, or use logger=csv (the default) or logger=none."
        ) from None


def wandb_tags(cfg: DictConfig) -> list[str]:
    """Tags that say what ran: dataset, noise (mode and ratio), detector, backbone, method, the experiment.

    Each is ``key:value`` (W&B tags are at most 64 characters), e.g. ``dataset:cifar100``, ``noise:sym-0.4``.
    """
    def pick(key: str):
        value = OmegaConf.select(cfg, key, default=None)
        return None if value is None or OmegaConf.is_config(value) else value

    noise = pick("noise.mode")
    ratio = pick("noise.ratio")
    backbone = pick("backbone.model.model_name") or pick("backbone.name")
    phases = list(cfg.get("phases") or [])
    pairs = [
        ("dataset", pick("dataset.name")),
        ("noise", None if noise is None else (f"{noise}-{ratio:g}" if isinstance(ratio, (int, float)) and noise not in ("none", "real") else noise)),
        ("detector", pick("detector.name")),
        ("clip", pick("detector.clip.model_name")),
        ("backbone", backbone if "adapt" in phases else None),
        ("method", pick("method.name") if "adapt" in phases else None),
        ("experiment", _choice("experiment")),
    ]
    return [f"{key}:{value}"[:64] for key, value in pairs if value not in (None, "")]


def _choice(group: str) -> str | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        value = HydraConfig.get().runtime.choices.get(group)
    except Exception:  # composed without Hydra's main
        return None
    return None if value in (None, "null", "None") else str(value)


def wandb_run_options(cfg: DictConfig, phase: str, run_dir: Path) -> dict[str, Any]:
    """Name, group, job type, id and config of this job's W&B run for ``phase``.

    One run per job and phase (``job_type`` = phase), grouped by sweep (the sweep directory under
    ``-m``, else the run directory), carrying the resolved config. The id is kept in
    ``logs/wandb_<phase>.id`` so that ``resume=true`` continues the same W&B run, and so that every
    process of a spawn-launched phase (fit, then the inference pass) writes to one run id.
    """
    job, sweep_dir = _hydra_job()
    options: dict[str, Any] = {
        "name": f"{job}-{phase}" if job else f"{run_dir.name}-{phase}",
        "job_type": phase,
        "id": _wandb_run_id(cfg, run_dir, phase),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if not cfg.logger.get("group"):
        options["group"] = Path(sweep_dir).name if sweep_dir else run_dir.name
    extra = cfg.logger.get("tags") or []
    options["tags"] = list(dict.fromkeys([*wandb_tags(cfg), *(str(tag) for tag in extra)]))
    return options


def _wandb_run_id(cfg: DictConfig, run_dir: Path, phase: str) -> str:
    path = run_dir / "logs" / f"wandb_{phase}.id"
    if cfg.get("resume") and path.is_file():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if rank_zero_only.rank == 0:
        from deft_lightning.io import write_text

        write_text(path, run_id + "\n")
    return run_id


def wandb_logger(trainer: L.Trainer):
    """The trainer's WandbLogger on the process that owns the W&B run (global rank 0), else None."""
    if not trainer.is_global_zero:
        return None
    from lightning.pytorch.loggers import WandbLogger

    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


def finish_wandb() -> None:
    """End the active W&B run, if any: each phase of each multirun job gets its own run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


WANDB_TABLE_ROWS = 1000  # the selection Table holds this many rows: the most likely label issues first


def log_detection_images(trainer: L.Trainer, selection, out_dir: Path, summary: dict | None = None) -> None:
    """To W&B (when it is the logger): the p_clean histogram, the suspects gallery, the final metrics,
    the selection as a Table (the :data:`WANDB_TABLE_ROWS` most likely label issues) and, as Artifacts,
    the selection files and the detector weights."""
    logger = wandb_logger(trainer)
    if logger is None or selection is None:
        return
    log_selection_table(logger, selection)
    log_detection_artifacts(logger, out_dir)
    import matplotlib.pyplot as plt

    from deft_lightning.reporting.plots import p_clean_histogram

    figure = p_clean_histogram(selection.p_clean, selection.given_label, selection.true_label)
    logger.log_image("detection/p_clean_histogram", [figure])
    plt.close(figure)
    suspects = Path(out_dir) / "suspects.png"
    if suspects.is_file():
        logger.log_image("detection/suspects", [str(suspects)])
    inference = (summary or {}).get("inference") or selection.metrics()
    logger.experiment.summary.update(
        {f"detection/{key}": value for key, value in inference.items() if isinstance(value, (int, float))}
    )


def selection_table_rows(selection, limit: int = WANDB_TABLE_ROWS) -> tuple[list[str], list[list]]:
    """(columns, rows) of the selection's ``limit`` most likely label issues: by ``rank`` (lowest
    label_quality first) when the selection has one, else by lowest p_clean."""
    import numpy as np

    table = selection.to_columns()
    columns = [name for name in selection.columns() if name != "fingerprint"]
    key = table["rank"] if "rank" in table else table["p_clean"]
    order = np.argsort(np.asarray(key), kind="stable")[:limit]
    rows = [[_plain(table[name][i]) for name in columns] for i in order.tolist()]
    return columns, rows


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def log_selection_table(logger, selection) -> None:
    import wandb

    columns, rows = selection_table_rows(selection)
    logger.experiment.log({"detection/selection": wandb.Table(columns=columns, data=rows)})
    logger.experiment.summary["detection/selection_table_rows"] = len(rows)


DETECTION_ARTIFACT_FILES = ("selection.csv", "selection.parquet", "pred_probs.npy", "classes.txt", "summary.json",
                            "report.md", "clean_dataset.csv")


def log_detection_artifacts(logger, out_dir: Path) -> None:
    """``selection-<run id>`` (type ``selection``: the selection files, those that exist) and
    ``detector-<run id>`` (type ``detector``: detector_weights.pt, when the detector was trained)."""
    import wandb

    out_dir = Path(out_dir)
    run = logger.experiment
    files = [out_dir / name for name in DETECTION_ARTIFACT_FILES if (out_dir / name).is_file()]
    if files:
        artifact = wandb.Artifact(f"selection-{run.id}", type="selection",
                                  description="DEFT phase-1 selection: selection.csv (one row per training sample)")
        for path in files:
            artifact.add_file(str(path))
        run.log_artifact(artifact)
    weights = out_dir / "detector_weights.pt"
    if weights.is_file():
        artifact = wandb.Artifact(f"detector-{run.id}", type="detector",
                                  description="DEFT detector artefact: reload with detector.weights=PATH or load_detector(PATH)")
        artifact.add_file(str(weights))
        run.log_artifact(artifact)


# ----- trainers -----------------------------------------------------------------------------------
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


def check_launch(cfg: DictConfig) -> None:
    """Refuse a re-executing DDP launch (``ddp``, or ``auto`` on several devices) inside a local Hydra multirun.

    Lightning's ``ddp`` re-executes the command line once per extra device; under ``-m`` each copy would
    run the whole sweep again. The ``auto`` strategy (``trainer=auto``, the default) becomes ``ddp`` as
    soon as it sees more than one device. Spawned processes, or processes started by SLURM or torchrun,
    are fine.
    """
    strategy = str(cfg.trainer.get("strategy", "auto") or "auto")
    re_executes = strategy == "ddp" or strategy.startswith("ddp_find_unused_parameters")
    if strategy == "auto":
        re_executes = _device_count(cfg.trainer) > 1
    if not re_executes or not _in_multirun():
        return
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if SLURMEnvironment.detect() or TorchElasticEnvironment.detect():
        return
    what = "trainer=ddp" if strategy != "auto" else f"trainer.strategy=auto on {_device_count(cfg.trainer)} devices (DDP)"
    raise ConfigError(
        f"{what} cannot run inside a local Hydra multirun (-m): each extra GPU process would rerun the sweep. "
        "Use trainer=ddp_spawn for sweeps on one machine, trainer.devices=1 for one GPU per job, or "
        "hydra/launcher=slurm (one job per allocation); see the README section 'Scale, sweeps, W&B, resume'."
    )


def _device_count(trainer_cfg: DictConfig) -> int:
    """How many devices Lightning would use for this trainer config (as its accelerator connector counts)."""
    devices = trainer_cfg.get("devices", "auto")
    accelerator = str(trainer_cfg.get("accelerator", "auto") or "auto")
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices >= 0:
        return devices
    if not isinstance(devices, (int, str)):  # a list of device ids
        return len(list(devices))
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if accelerator in ("cpu",):
        return 1
    import torch

    return max(1, torch.cuda.device_count()) if accelerator in ("auto", "gpu", "cuda") else 1


def _hydra_job() -> tuple[str | None, str | None]:
    """(job name, sweep dir) of the running Hydra job; (None, None) when composed without Hydra's main."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except Exception:  # not running under Hydra's main (tests compose the config directly)
        return None, None
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = hydra_cfg.job.override_dirname or hydra_cfg.job.name
    if multirun:
        job = f"{hydra_cfg.job.num}_{job}"
    return job, (str(hydra_cfg.sweep.dir) if multirun else None)


def _in_multirun() -> bool:
    return _hydra_job()[1] is not None
