"""Loggers from the config, and what keeps W&B runs apart: one run per job and phase, grouped by sweep,
finished after each phase; the selection logged as a Table and as Artifacts."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from deft_lightning.errors import ConfigError
from deft_lightning.pipeline.launch import hydra_job


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
    job, sweep_dir = hydra_job()
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
